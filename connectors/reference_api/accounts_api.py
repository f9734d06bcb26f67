"""The Keycloak halves of the reference APIs: PRV_STF_003's account and PRV_ATH_001.

The password goes only to the side's own Keycloak, which hashes it; it is never stored in
META, logged or returned. Each change is one Admin API request, so Keycloak applies it in one
transaction (the capture then sees a whole account, never half of one).

Errors say what happened without payload values (no username, no name, no e-mail):

- Keycloak refused the request (4xx): "Keycloak refused the account (HTTP 400): firstName:
  error-invalid-length-too-long (limits 255)" -- the field and Keycloak's message key only;
- Keycloak could not be reached, or answered 5xx: the request is retried a few times within a
  couple of seconds (:data:`KEYCLOAK_BACKOFF`, :data:`KEYCLOAK_ATTEMPTS`); only if that persists is the side's Keycloak
  reported unreachable. A create whose first attempt may have been processed (no answer after
  the request was sent) is not repeated: the account may exist, and the error says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from connectors.keycloak.admin import (
    KeycloakAccounts,
    KeycloakConfigError,
    KeycloakError,
    KeycloakRejectedError,
    KeycloakUnavailableError,
    KeycloakUserExistsError,
)
from connectors.reference_api import payloads as p
from connectors.reference_api.errors import ApiError
from streams.runtime.retry import Backoff, retry

T = TypeVar("T")

#: Pauses between attempts while Keycloak is unreachable or answers 5xx: 0.2, 0.6, 1.2 s (~2 s in all).
KEYCLOAK_BACKOFF = Backoff(initial_s=0.2, max_s=1.2, factor=3.0)
KEYCLOAK_ATTEMPTS = 4


def _attempts(fn: Callable[[], T], *, repeatable: bool) -> T:
    """Run ``fn`` up to :data:`KEYCLOAK_ATTEMPTS` times while Keycloak is unavailable (streams/runtime/retry.py).

    A non-``repeatable`` request (a create) is only repeated when Keycloak certainly did not
    process it (:attr:`KeycloakUnavailableError.maybe_applied` is False).
    """
    return retry(fn, "Keycloak", retry_on=(KeycloakUnavailableError,), backoff=KEYCLOAK_BACKOFF,
                 max_attempts=KEYCLOAK_ATTEMPTS,
                 retry_if=lambda exc: repeatable or not getattr(exc, "maybe_applied", False))


def _unavailable(api: str, side: str, exc: KeycloakUnavailableError, outcome: str) -> ApiError:
    answer = f"HTTP {exc.status}" if exc.status else "no answer"
    return ApiError(f"{api}: the {side} Keycloak is unreachable or failing ({answer}, {KEYCLOAK_ATTEMPTS} "
                    f"attempts in {sum(KEYCLOAK_BACKOFF.waits(KEYCLOAK_ATTEMPTS)):.0f} s); {outcome}")


def _refused(api: str, what: str, exc: KeycloakRejectedError, outcome: str) -> ApiError:
    detail = "; ".join(map(str, exc.field_errors)) if exc.field_errors else exc.message
    return ApiError(f"{api}: Keycloak refused {what} (HTTP {exc.status}): {detail}; {outcome}")


def create_staff_account(accounts: KeycloakAccounts, side: str, s: p.StaffCredentialsPayload) -> str:
    """Create the PRV_STF_003 account with its password; return its Keycloak id."""
    rep = {"username": s.username, "enabled": True, "email": s.email,
           "firstName": s.given_name or s.display_name, "lastName": s.family_name or s.display_name,
           "attributes": {"staff_code": [s.staff_code], "role": [s.role]},
           "credentials": [{"type": "password", "value": s.password, "temporary": False}]}
    api, nothing = "PRV_STF_003", "nothing written"
    try:
        return _attempts(lambda: accounts.create_user(rep), repeatable=False)
    except KeycloakUserExistsError:
        raise ApiError(f"{api}: the username (or e-mail) already has a Keycloak account on the {side} side; "
                       f"{nothing}") from None
    except KeycloakUnavailableError as exc:
        if exc.maybe_applied:
            raise ApiError(f"{api}: the {side} Keycloak did not answer the account creation; the account may "
                           "or may not exist now (look it up before repeating the call); nothing written to "
                           "META") from None
        raise _unavailable(api, side, exc, nothing) from None
    except KeycloakConfigError as exc:
        raise ApiError(f"{api}: the {side} Keycloak cannot be used as configured: {exc}; {nothing}") from None
    except KeycloakRejectedError as exc:
        raise _refused(api, "the account", exc, nothing) from None
    except KeycloakError as exc:
        raise ApiError(f"{api}: Keycloak refused the account ({type(exc).__name__}); {nothing}") from None


def update_account(accounts: KeycloakAccounts, side: str, a: p.AuthUpdatePayload) -> None:
    """Apply a PRV_ATH_001 change (password, enabled, required actions) in one request."""
    api, nothing = "PRV_ATH_001", "nothing changed"
    try:
        user = _attempts(lambda: accounts.find_user(a.username), repeatable=True)
    except KeycloakUnavailableError as exc:
        raise _unavailable(api, side, exc, nothing) from None
    except KeycloakRejectedError as exc:
        raise _refused(api, "the account lookup", exc, nothing) from None
    except KeycloakConfigError as exc:
        raise ApiError(f"{api}: the {side} Keycloak cannot be used as configured: {exc}; {nothing}") from None
    if user is None:
        raise ApiError(f"{api}: no Keycloak account with that username on the {side} side; {nothing}")
    rep: dict[str, Any] = {}
    if a.enabled is not None:
        rep["enabled"] = a.enabled
    if a.required_actions is not None:
        rep["requiredActions"] = list(a.required_actions)
    if a.password is not None:
        rep["credentials"] = [{"type": "password", "value": a.password, "temporary": a.temporary}]
    try:  # a PUT of the same representation is idempotent: repeatable
        _attempts(lambda: accounts.update_user(user["id"], rep), repeatable=True)
    except KeycloakUnavailableError as exc:
        raise _unavailable(api, side, exc, nothing) from None
    except KeycloakRejectedError as exc:
        raise _refused(api, "the change", exc, nothing) from None
    except KeycloakConfigError as exc:
        raise ApiError(f"{api}: the {side} Keycloak cannot be used as configured: {exc}; {nothing}") from None
    except KeycloakError as exc:
        raise ApiError(f"{api}: Keycloak refused the change ({type(exc).__name__}); {nothing}") from None
