"""The stand-in's browser login: OpenID Connect authorization code flow with PKCE, and RP-initiated logout.

Endpoints (Keycloak 26, "Securing applications: OpenID Connect"; sources ``AuthorizationEndpoint``,
``AuthorizationEndpointChecker``, ``AuthorizationCodeGrantType``, ``PkceUtils``, ``LogoutEndpoint``):

- ``GET|POST /realms/{realm}/protocol/openid-connect/auth``: checks the request and shows the login
  form. A missing ``client_id`` or an unacceptable ``redirect_uri`` is a 400 error page (never a
  redirect); every other refusal redirects to ``redirect_uri`` with ``error``, ``error_description``,
  ``state`` and ``iss``: ``invalid_request`` (missing ``response_type``, bad ``response_mode``, PKCE
  parameters), ``unsupported_response_type``, ``unauthorized_client`` (implicit/hybrid
  ``response_type``; ``admin-cli``, whose standard flow Keycloak disables), ``invalid_scope``,
  ``login_required`` (``prompt=none``: the stand-in keeps no browser session, so there is never one to reuse).
- ``POST /realms/{realm}/login-actions/authenticate?session_code=...``: the form's target. The password is
  checked as the direct grant checks it (:func:`infra.local.keycloak_standin.grants.check_login`); a refusal
  shows the form again (HTTP 200) with Keycloak's message. Success issues a one-time code (60 s, Keycloak's
  default) bound to the client, redirect URI, PKCE challenge, nonce, a new session and the user, and
  redirects to ``redirect_uri?code=...&state=...&session_state=...&iss=...``.
- ``grant_type=authorization_code`` at the token endpoint (:func:`authorization_code_grant`).
- ``GET|POST /realms/{realm}/protocol/openid-connect/logout``: ends the session of ``id_token_hint``, then
  redirects to ``post_logout_redirect_uri`` (with ``state``) or shows "You are logged out".

What differs from Keycloak, because the stand-in has no client registry and no browser session:

- any ``client_id`` is a public client with PKCE optional (Keycloak's default), and the redirect URIs it
  accepts are http(s) URIs on a loopback host (127.0.0.1, ::1, localhost), any port and path, no fragment
  or user info; real Keycloak accepts only the client's registered URIs;
- the login form is always shown (``prompt=login`` changes nothing); an account with a pending required
  action or an incomplete profile is refused on the form with the message of the page Keycloak would show
  next (e.g. "You need to change your password to activate your account."), which the stand-in does not serve;
- only ``response_mode=query``; the login session lives in the form's URL, not in cookies;
- ended sessions and codes are kept in memory: a restart forgets them (tokens of a session ended before
  the restart are accepted again until they expire).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from infra.local.keycloak_standin import tokens
from infra.local.keycloak_standin.common import CONFIG, REALM_MISSING, STORE, db, issuer, oauth_error, realm_id
from infra.local.keycloak_standin.grants import ACCOUNT_DISABLED, INVALID_CREDENTIALS, Refused, check_login
from infra.local.keycloak_standin.login_pages import HEADERS, error_page, logged_out_page, login_page
from infra.local.keycloak_standin.storage import LoginUser

CODE_TTL_S = 60  # Keycloak's "Client login timeout" (accessCodeLifespan)
LOGIN_TTL_S = 1800  # Keycloak's "Login timeout" (accessCodeLifespanLogin)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# "openid" and the client scopes of a new Keycloak 26 client (default and optional), but offline_access:
# the stand-in issues no offline tokens.
KNOWN_SCOPES = frozenset({"openid", "profile", "email", "roles", "web-origins", "acr", "basic", "address",
                          "phone", "microprofile-jwt", "organization"})
PKCE_PATTERN = re.compile(r"[0-9A-Za-z\-._~]{43,128}")  # RFC 7636 4.1/4.2, Keycloak's length limits
LOGIN_MESSAGES = {INVALID_CREDENTIALS: "Invalid username or password.",  # Keycloak's messages_en.properties
                  ACCOUNT_DISABLED: "Account is disabled, contact your administrator."}
# The message of the page Keycloak would show next for a pending required action.
ACTION_MESSAGES = {"UPDATE_PASSWORD": "You need to change your password to activate your account.",
                   "VERIFY_EMAIL": "You need to verify your email address to activate your account.",
                   "CONFIGURE_TOTP": "You need to set up Mobile Authenticator to activate your account.",
                   "UPDATE_EMAIL": "You need to update your email address to activate your account."}
PROFILE_MESSAGE = "You need to update your user profile to activate your account."  # UPDATE_PROFILE, VERIFY_PROFILE
TIMED_OUT = "Your login attempt timed out. Login will start from the beginning."


def refusal_message(refused: Refused) -> str:
    """What the login form shows for a refused login."""
    if refused.reason in LOGIN_MESSAGES:
        return LOGIN_MESSAGES[refused.reason]
    return ACTION_MESSAGES.get(refused.action or "", PROFILE_MESSAGE)


@dataclass(frozen=True)
class AuthRequest:
    """An accepted authorization request."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None


@dataclass(frozen=True)
class Code:
    """What a one-time code stands for."""

    request: AuthRequest
    user_id: str
    session_id: str
    expires: float


class LoginState:
    """Login sessions, codes and ended sessions of one stand-in (in memory); ``now`` is monotonic seconds."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self.logins: dict[str, tuple[AuthRequest, float]] = {}
        self.codes: dict[str, Code] = {}
        self.used: dict[str, tuple[str, float]] = {}  # code -> (session id, forget after)
        self.ended: set[str] = set()

    def _purge(self) -> None:
        now = self.now()
        for login_id in [k for k, (_, expires) in self.logins.items() if expires <= now]:
            del self.logins[login_id]
        for code in [k for k, c in self.codes.items() if c.expires + CODE_TTL_S <= now]:
            del self.codes[code]
        for code in [k for k, (_, forget) in self.used.items() if forget <= now]:
            del self.used[code]

    def start_login(self, request: AuthRequest) -> str:
        self._purge()
        login_id = secrets.token_urlsafe(24)
        self.logins[login_id] = (request, self.now() + LOGIN_TTL_S)
        return login_id

    def login(self, login_id: str) -> AuthRequest | None:
        found = self.logins.get(login_id)
        return None if found is None or found[1] <= self.now() else found[0]

    def issue_code(self, login_id: str, user_id: str, session_id: str) -> tuple[AuthRequest, str]:
        """End the login session; return its request and a new code for it."""
        request, _ = self.logins.pop(login_id)
        code = secrets.token_urlsafe(32)
        self.codes[code] = Code(request, user_id, session_id, self.now() + CODE_TTL_S)
        return request, code

    def take_code(self, code: str) -> Code | None:
        """The code's data, once; ``None`` for an unknown or used code. Using a code twice ends its session
        (Keycloak detaches the client session: tokens from the first exchange stop working)."""
        self._purge()
        found = self.codes.pop(code, None)
        if found is not None:
            self.used[code] = (found.session_id, found.expires + CODE_TTL_S)
            return found
        if code in self.used:
            self.end_session(self.used[code][0])
        return None

    def expired(self, code: Code) -> bool:
        return code.expires <= self.now()

    def end_session(self, session_id: str) -> None:
        self.ended.add(session_id)

    def active(self, session_id: str) -> bool:
        return session_id not in self.ended


LOGINS: web.AppKey[LoginState] = web.AppKey("logins", LoginState)


def session_active(request: web.Request, session_id: str) -> bool:
    """False once the session was logged out (or its code used twice)."""
    return request.app[LOGINS].active(session_id)


def loopback_uri(uri: str | None) -> bool:
    """True for an http(s) URI on a loopback host (any port), without fragment, user info or control characters."""
    if not uri or any(ord(c) < 0x21 or ord(c) == 0x7F for c in uri):
        return False
    try:
        parts = urlsplit(uri)
        _ = parts.port  # an unparsable port raises
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and parts.hostname in LOOPBACK_HOSTS and not parts.fragment
            and "#" not in uri and parts.username is None and parts.password is None)


def with_params(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` (those not ``None``) appended to its query."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return uri + ("" if uri.endswith(("?", "&")) else "&" if "?" in uri else "?") + query


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={**HEADERS, "Location": location})


def s256(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: base64url(sha256(ASCII verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def pkce_failure(challenge: str | None, method: str | None, verifier: str | None) -> str | None:
    """Keycloak's ``invalid_grant`` description for the code verifier, or ``None`` when it is right."""
    if challenge is None:
        return None if verifier is None else "PKCE code verifier specified but challenge not present in authorization"
    if verifier is None:
        return "PKCE code verifier not specified"
    if not PKCE_PATTERN.fullmatch(verifier):
        return "PKCE verification failed: Invalid code verifier"
    encoded = s256(verifier) if method == "S256" else verifier
    return None if hmac.compare_digest(encoded, challenge) else "PKCE verification failed: Code mismatch"


def _param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None else str(value)


def check_request(params: Mapping[str, Any]) -> AuthRequest | tuple[str, str | None]:
    """The request, or the ``(error, error_description)`` to redirect with (``client_id`` and ``redirect_uri``
    are checked before). In the order of Keycloak's ``AuthorizationEndpointChecker``."""
    client_id, redirect_uri = _param(params, "client_id") or "", _param(params, "redirect_uri") or ""
    response_type = _param(params, "response_type")
    if response_type is None:
        return "invalid_request", "Missing parameter: response_type"
    parts = set(response_type.split())
    if response_type != "code":
        if parts and parts <= {"code", "id_token", "token"}:
            return ("unauthorized_client", "Client is not allowed to initiate browser login with given "
                    "response_type. Implicit flow is disabled for the client.")
        return "unsupported_response_type", None
    if _param(params, "response_mode") not in (None, "query"):
        return "invalid_request", "Invalid parameter: response_mode"
    if client_id == "admin-cli":
        return ("unauthorized_client", "Client is not allowed to initiate browser login with given "
                "response_type. Standard flow is disabled for the client.")
    scope = _param(params, "scope") or ""
    if not set(scope.split()) <= KNOWN_SCOPES:
        return "invalid_scope", f"Invalid scopes: {scope}"
    challenge, method = _param(params, "code_challenge"), _param(params, "code_challenge_method")
    if challenge is None and method is not None:
        return "invalid_request", "Missing parameter: code_challenge"
    if challenge is not None:
        if method is not None and method not in ("S256", "plain"):
            return "invalid_request", "Invalid parameter: code_challenge_method"
        if not PKCE_PATTERN.fullmatch(challenge):
            return "invalid_request", "Invalid parameter: code_challenge"
        method = method or "plain"  # RFC 7636 4.3
    return AuthRequest(client_id, redirect_uri, scope, _param(params, "state"), _param(params, "nonce"),
                       challenge, method)


async def _params(request: web.Request) -> Mapping[str, Any]:
    return request.query if request.method == "GET" else {**request.query, **(await request.post())}


async def authorize(request: web.Request) -> web.Response:
    """``GET|POST /realms/{realm}/protocol/openid-connect/auth``."""
    realm = request.match_info["realm"]
    await realm_id(request, REALM_MISSING)
    params = await _params(request)
    client_id, redirect_uri = _param(params, "client_id"), _param(params, "redirect_uri")
    if not client_id:
        return error_page(400, "Missing parameters: client_id")
    if redirect_uri is None or not loopback_uri(redirect_uri):
        return error_page(400, "Invalid parameter: redirect_uri")
    checked = check_request(params)
    if isinstance(checked, tuple):
        error, description = checked
        return redirect(with_params(redirect_uri, {"error": error, "error_description": description,
                                                   "state": _param(params, "state"),
                                                   "iss": issuer(request, realm)}))
    if _param(params, "prompt") == "none":
        return redirect(with_params(redirect_uri, {"error": "login_required", "state": checked.state,
                                                   "iss": issuer(request, realm)}))
    login_id = request.app[LOGINS].start_login(checked)
    return login_page(realm, _form_action(realm, login_id, client_id))


def _form_action(realm: str, login_id: str, client_id: str) -> str:
    return f"/realms/{realm}/login-actions/authenticate?{urlencode({'session_code': login_id, 'client_id': client_id})}"


async def authenticate(request: web.Request) -> web.Response:
    """``POST /realms/{realm}/login-actions/authenticate?session_code=...``: the login form's target."""
    realm = request.match_info["realm"]
    realm_key = await realm_id(request, REALM_MISSING)
    state = request.app[LOGINS]
    login_id = request.query.get("session_code", "")
    auth = state.login(login_id)
    if auth is None:
        return error_page(400, TIMED_OUT)
    form = await request.post()
    username, password = str(form.get("username") or "").strip(), str(form.get("password") or "")
    user = await check_login(request, realm, realm_key, username, password, form=True)
    if isinstance(user, Refused):
        return login_page(realm, _form_action(realm, login_id, auth.client_id), username, refusal_message(user))
    if state.login(login_id) is None:  # the same form submitted twice at once: only one code
        return error_page(400, TIMED_OUT)
    session_id = str(uuid.uuid4())
    auth, code = state.issue_code(login_id, user.id, session_id)
    return redirect(with_params(auth.redirect_uri, {"code": code, "state": auth.state, "session_state": session_id,
                                                    "iss": issuer(request, realm)}))


async def authorization_code_grant(request: web.Request, realm_key: str, form: Mapping[str, Any],
                                   client_id: str) -> tuple[LoginUser, Code] | web.Response:
    """``grant_type=authorization_code``: the user and code, or Keycloak's 400 (``AuthorizationCodeGrantType``).

    The code is used up by the first request that names it, whatever that request's outcome.
    """
    raw = _param(form, "code")
    if raw is None:
        return oauth_error(400, "invalid_request", "Missing parameter: code")
    state = request.app[LOGINS]
    code = state.take_code(raw)
    if code is None:
        return oauth_error(400, "invalid_grant", "Code not valid")
    if state.expired(code):
        return oauth_error(400, "invalid_grant", "Code is expired")
    user = await db(request.app[STORE].login_user_by_id, realm_key, code.user_id)
    if user is None:
        return oauth_error(400, "invalid_grant", "User not found")
    if not user.enabled:
        return oauth_error(400, "invalid_grant", "User disabled")
    if _param(form, "redirect_uri") != code.request.redirect_uri:
        return oauth_error(400, "invalid_grant", "Incorrect redirect_uri")
    if client_id != code.request.client_id:
        return oauth_error(400, "invalid_grant", "Auth error: Found different client_id in clientSession")
    if not state.active(code.session_id):
        return oauth_error(400, "invalid_grant", "Session not active")
    failure = pkce_failure(code.request.code_challenge, code.request.code_challenge_method,
                           _param(form, "code_verifier"))
    if failure is not None:
        return oauth_error(400, "invalid_grant", failure)
    return user, code


async def logout(request: web.Request) -> web.Response:
    """``GET|POST /realms/{realm}/protocol/openid-connect/logout`` (RP-initiated logout, ``LogoutEndpoint``)."""
    realm = request.match_info["realm"]
    await realm_id(request, REALM_MISSING)
    params = await _params(request)
    hint, client_id = _param(params, "id_token_hint"), _param(params, "client_id")
    target = _param(params, "post_logout_redirect_uri")
    if _param(params, "redirect_uri") is not None:  # Keycloak 18+ dropped it
        return error_page(400, "Invalid parameter: redirect_uri")
    if target is not None and hint is None and client_id is None:
        return error_page(400, "Missing parameters: id_token_hint")
    claims: dict[str, Any] | None = None
    if hint is not None:
        try:  # Keycloak checks the signature and type only: an expired ID token still identifies the session
            claims = tokens.verify(hint, request.app[CONFIG]["key"], "ID", now=0)
        except tokens.TokenError:
            return error_page(400, "Invalid parameter: id_token_hint")
        if claims.get("iss") != issuer(request, realm) or (client_id is not None and claims.get("azp") != client_id):
            return error_page(400, "Invalid parameter: id_token_hint")
    if target is not None and not loopback_uri(target):
        return error_page(400, "Invalid redirect uri")
    if claims is not None:
        request.app[LOGINS].end_session(str(claims.get("sid")))
    if target is not None:
        return redirect(with_params(target, {"state": _param(params, "state")}))
    return logged_out_page()


def add_routes(app: web.Application) -> None:
    """Serve the browser login on ``app`` (and keep its state there)."""
    app[LOGINS] = LoginState()
    base = "/realms/{realm}/protocol/openid-connect"
    for method in ("GET", "POST"):
        app.router.add_route(method, f"{base}/auth", authorize)
        app.router.add_route(method, f"{base}/logout", logout)
    app.router.add_post("/realms/{realm}/login-actions/authenticate", authenticate)
