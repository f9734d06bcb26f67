"""Keycloak accounts through python-keycloak's ``KeycloakAdmin`` (Admin REST API), errors classified.

The admin authenticates in realm ``master`` (client ``admin-cli``) and manages one realm. Every
call maps python-keycloak's exceptions onto three kinds the engine acts on:

- :class:`KeycloakUnavailableError` - connection refused, timeout, 5xx: retry with back-off
  (``status`` is the 5xx, None for a connection failure; ``maybe_applied`` tells whether the
  request may have been processed, so that a non-idempotent create is not repeated blindly);
- :class:`KeycloakRejectedError` - any other 4xx, with the status and Keycloak's own message
  (:class:`KeycloakUserExistsError` for 409, :class:`KeycloakNotFoundError` for 404). A user
  refused by the declarative user profile (Keycloak 24+) answers 400 with one
  ``{"field", "errorMessage", "params"}`` object, or ``{"errors": [...]}`` of them
  (``UserResource.validateUserProfile``, ``ErrorResponse.errors``): ``field_errors`` holds
  them, without the ``params`` that are not numbers (Keycloak puts the refused value there for
  some validators).
- :class:`KeycloakConfigError` - unknown realm, bad admin credentials, unreachable at
  :meth:`KeycloakAccounts.check` (worker start).

Tokens: python-keycloak renews the admin token at 90% of its lifetime and, on a 401, refreshes
it and retries once (``KeycloakOpenIDConnection.raw_*``). When that refresh itself is refused
(refresh token expired or unknown, e.g. after a Keycloak restart with new keys), this module
re-authenticates with the admin password once and retries the call.

No password is ever put into an exception message or a log: messages carry Keycloak's error
text only, and Keycloak never echoes a credential.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from keycloak import KeycloakAdmin, KeycloakOpenID
from keycloak import exceptions as kc

from streams.core.errors import PlatSyncError, RetryableError
from streams.runtime.settings import Settings

T = TypeVar("T")
ADMIN_REALM = "master"
ADMIN_CLIENT = "admin-cli"


class KeycloakError(PlatSyncError):
    """Base class of the connector's Keycloak errors."""


class KeycloakConfigError(KeycloakError):
    """Keycloak cannot be used as configured; ``retryable`` is True when it was only unreachable."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class KeycloakUnavailableError(KeycloakError, RetryableError):
    """Keycloak is unreachable, timed out or failed (5xx): retry later.

    ``status`` is the HTTP status of a 5xx answer (None: no answer); ``maybe_applied`` is False
    when Keycloak certainly did not process the request (no connection, or Keycloak's own 5xx: it
    rolls a failed request's transaction back), True when it may have (no answer after sending,
    or a gateway's 504).
    """

    def __init__(self, message: str, status: int | None = None, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.maybe_applied = maybe_applied


@dataclass(frozen=True)
class FieldError:
    """One user-profile refusal: the field, Keycloak's message key, and its numeric parameters."""

    field: str
    message: str
    limits: tuple[int, ...] = ()

    def __str__(self) -> str:
        limits = f" (limits {', '.join(map(str, self.limits))})" if self.limits else ""
        return f"{self.field}: {self.message}{limits}"


class KeycloakRejectedError(KeycloakError):
    """Keycloak refused the request (4xx other than an expired token)."""

    def __init__(self, status: int, message: str, what: str = "",
                 field_errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(f"{what}: {status} {message}" if what else f"{status} {message}")
        self.status = status
        self.message = message
        self.field_errors = field_errors


class KeycloakUserExistsError(KeycloakRejectedError):
    """409: a user with the same username (or e-mail) exists."""


class KeycloakNotFoundError(KeycloakRejectedError):
    """404: the user (or credential) does not exist."""


class KeycloakAuthError(KeycloakError):
    """A login was refused (bad credentials, disabled account, pending required action)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description


def field_errors(exc: kc.KeycloakError) -> tuple[FieldError, ...]:
    """The user-profile refusals of an error body (``{"field", ...}`` or ``{"errors": [...]}``)."""
    try:
        doc = json.loads(exc.response_body or b"")
    except ValueError:
        return ()
    items = doc.get("errors") if isinstance(doc, dict) and isinstance(doc.get("errors"), list) else [doc]
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("field") and item.get("errorMessage"):
            params = item.get("params") if isinstance(item.get("params"), list) else []
            limits = tuple(p for p in params if isinstance(p, int) and not isinstance(p, bool))
            out.append(FieldError(str(item["field"]), str(item["errorMessage"]), limits))
    return tuple(out)


def error_message(exc: kc.KeycloakError) -> str:
    """Keycloak's own message from an error body (``errorMessage``, ``error_description`` or ``error``).

    User-profile refusals are given as ``field: message`` (never their ``params``, which may hold
    the refused value); an unknown JSON body is named by its keys only, for the same reason.
    """
    body = exc.response_body or b""
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200] or str(exc.error_message)
    fields = field_errors(exc)
    if fields:
        return "; ".join(map(str, fields))
    if isinstance(doc, dict):
        for key in ("errorMessage", "error_description", "error"):
            if doc.get(key):
                return str(doc[key])
        return f"a JSON object with keys {', '.join(sorted(map(str, doc)))}"
    return f"a JSON {type(doc).__name__}"


def _error_code(exc: kc.KeycloakError) -> str:
    try:
        doc = json.loads(exc.response_body or b"")
    except ValueError:
        return ""
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""


def _token_problem(exc: kc.KeycloakError) -> bool:
    """A 401, or the token endpoint refusing the refresh token python-keycloak sent after one."""
    return exc.response_code == 401 or (exc.response_code == 400 and _error_code(exc) == "invalid_grant")


def _never_sent(exc: BaseException) -> bool:
    """True if the request behind ``exc`` never reached Keycloak (no connection could be made)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.ConnectTimeout):
            return True
        if isinstance(seen, requests.exceptions.ConnectionError) and not isinstance(seen, requests.exceptions.Timeout):
            text = str(seen)
            return "NewConnectionError" in text or "Failed to establish a new connection" in text
        seen = seen.__cause__ or seen.__context__
    return False


def classify(exc: kc.KeycloakError, what: str) -> KeycloakError:
    """Map a python-keycloak exception onto the connector's error kinds."""
    status = exc.response_code
    if isinstance(exc, kc.KeycloakConnectionError) or status is None or status >= 500:
        detail = f"HTTP {status}" if status else str(exc.__cause__ or exc.error_message)
        answered = status is not None and not isinstance(exc, kc.KeycloakConnectionError)
        # Keycloak rolls a failed request back; a gateway's 504, or no answer after sending, may hide
        # a request Keycloak did process.
        maybe_applied = (not answered and not _never_sent(exc)) or status == 504
        return KeycloakUnavailableError(f"{what}: Keycloak unavailable ({detail})", status if answered else None,
                                        maybe_applied=maybe_applied)
    message = error_message(exc)
    if status == 409:
        return KeycloakUserExistsError(status, message, what)
    if status == 404:
        return KeycloakNotFoundError(status, message, what)
    return KeycloakRejectedError(status, message, what, field_errors(exc))


class KeycloakAccounts:
    """Users of one realm, managed by an admin of the master realm."""

    def __init__(self, url: str, realm: str, admin_user: str, admin_password: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.realm = realm
        self.admin_user = admin_user
        self.admin = KeycloakAdmin(server_url=self.url, username=admin_user, password=admin_password,
                                   realm_name=realm, user_realm_name=ADMIN_REALM, client_id=ADMIN_CLIENT,
                                   timeout=timeout_s)  # type: ignore[arg-type]  # requests accepts floats

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; on a token problem re-authenticate once and retry; classify errors."""
        try:
            return fn()
        except kc.KeycloakError as exc:
            if isinstance(exc, kc.KeycloakConnectionError) or not _token_problem(exc):
                raise classify(exc, what) from exc
        try:
            self.admin.connection.get_token()
        except kc.KeycloakError as exc:
            if exc.response_code in (400, 401):
                raise KeycloakConfigError(self._bad_admin(exc)) from exc
            raise classify(exc, f"{what} (re-authenticating)") from exc
        try:
            return fn()
        except kc.KeycloakError as exc:
            raise classify(exc, what) from exc

    def _bad_admin(self, exc: kc.KeycloakError) -> str:
        return (f"Keycloak at {self.url} refused the admin credentials of {self.admin_user!r} in realm "
                f"{ADMIN_REALM!r} ({exc.response_code} {error_message(exc)}); check keycloak_admin_user/password")

    def check(self) -> None:
        """Authenticate and read the managed realm; :class:`KeycloakConfigError` says what is wrong."""
        try:
            self.admin.connection.get_token()
        except kc.KeycloakConnectionError as exc:
            raise KeycloakConfigError(f"Keycloak at {self.url} is unreachable ({exc.__cause__ or exc})",
                                      retryable=True) from exc
        except kc.KeycloakError as exc:
            if exc.response_code in (400, 401):
                raise KeycloakConfigError(self._bad_admin(exc)) from exc
            if exc.response_code == 404:
                raise KeycloakConfigError(f"Keycloak at {self.url} has no realm {ADMIN_REALM!r} "
                                          f"({error_message(exc)}); is the URL right?") from exc
            raise KeycloakConfigError(f"Keycloak at {self.url} failed the admin login ({exc.response_code} "
                                      f"{error_message(exc)})", retryable=(exc.response_code or 500) >= 500) from exc
        try:
            self._call("check", lambda: self.admin.get_realm(self.realm))
        except KeycloakNotFoundError as exc:
            raise KeycloakConfigError(f"realm {self.realm!r} does not exist on Keycloak at {self.url} "
                                      f"({exc.message})") from exc
        except KeycloakUnavailableError as exc:
            raise KeycloakConfigError(str(exc), retryable=True) from exc
        except KeycloakRejectedError as exc:
            raise KeycloakConfigError(f"admin {self.admin_user!r} cannot read realm {self.realm!r} on "
                                      f"{self.url} ({exc.status} {exc.message})") from exc

    def find_user(self, username: str) -> dict[str, Any] | None:
        """The user named ``username`` (exact, case-insensitive like Keycloak), or None."""
        users = self._call(f"find user {username!r}", lambda: self.admin.get_users(
            {"username": username, "exact": "true", "max": 2}))
        matches = [u for u in users if str(u.get("username", "")).lower() == username.lower()]
        return matches[0] if matches else None

    def list_users(self) -> list[dict[str, Any]]:
        """Every user of the realm (paged by python-keycloak)."""
        return self._call("list users", lambda: self.admin.get_users({}))

    def get_user(self, user_id: str) -> dict[str, Any]:
        """The UserRepresentation of ``user_id`` (:class:`KeycloakNotFoundError` if absent)."""
        return self._call(f"get user {user_id}", lambda: self.admin.get_user(user_id))

    def create_user(self, rep: dict[str, Any]) -> str:
        """Create a user from a UserRepresentation; return its id (409 -> :class:`KeycloakUserExistsError`)."""
        return self._call(f"create user {rep.get('username')!r}",
                          lambda: self.admin.create_user(rep, exist_ok=False))

    def update_user(self, user_id: str, rep: dict[str, Any]) -> None:
        """``PUT /users/{id}``: update the fields present in ``rep`` (credentials included)."""
        self._call(f"update user {user_id}", lambda: self.admin.update_user(user_id, rep))

    def set_password(self, user_id: str, password: str, temporary: bool = False) -> None:
        """``PUT reset-password`` (a temporary password makes Keycloak require UPDATE_PASSWORD)."""
        self._call(f"set password of {user_id}", lambda: self.admin.set_user_password(user_id, password, temporary))

    def import_password_hash(self, user_id: str, secret_data: str, credential_data: str) -> None:
        """Store a password credential exactly as hashed elsewhere (Keycloak's hashed import)."""
        cred = {"type": "password", "secretData": secret_data, "credentialData": credential_data}
        self._call(f"import password of {user_id}", lambda: self.admin.update_user(user_id, {"credentials": [cred]}))

    def disable_user(self, user_id: str) -> None:
        """Set ``enabled`` to false (the user can no longer log in)."""
        self.update_user(user_id, {"enabled": False})

    def delete_user(self, user_id: str) -> None:
        """Delete the user (:class:`KeycloakNotFoundError` if absent)."""
        self._call(f"delete user {user_id}", lambda: self.admin.delete_user(user_id))

    def password_credentials(self, user_id: str) -> list[dict[str, Any]]:
        """The user's password credentials (Keycloak returns them without ``secretData``)."""
        creds = self._call(f"credentials of {user_id}", lambda: self.admin.get_credentials(user_id))
        return [c for c in creds if c.get("type") == "password"]


def login(url: str, realm: str, username: str, password: str, client_id: str = ADMIN_CLIENT,
          timeout_s: float = 10.0) -> dict[str, Any]:
    """Direct-grant login (``grant_type=password``); the token response, or :class:`KeycloakAuthError`."""
    oidc = KeycloakOpenID(server_url=url.rstrip("/") + "/", realm_name=realm, client_id=client_id,
                          timeout=timeout_s)  # type: ignore[arg-type]
    try:
        return oidc.token(username, password)
    except kc.KeycloakError as exc:
        status = exc.response_code
        if status in (400, 401) and _error_code(exc) in ("invalid_grant", "invalid_request", "invalid_client"):
            raise KeycloakAuthError(status or 0, _error_code(exc), error_message(exc)) from exc
        if status == 404:
            raise KeycloakConfigError(f"Keycloak at {url} has no realm {realm!r} ({error_message(exc)})") from exc
        raise classify(exc, f"login of {username!r}") from exc


def accounts_for(settings: Settings, side: str) -> KeycloakAccounts:
    """An admin client of a side's Keycloak realm, as configured."""
    return KeycloakAccounts(settings.keycloak_url(side), settings.keycloak_realm, settings.keycloak_admin_user,
                            settings.keycloak_admin_password, settings.keycloak_timeout_s)
