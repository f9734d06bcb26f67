"""The console's OpenID Connect login against the login node's Keycloak realm (authorization code flow, PKCE S256).

``GET /login`` starts a :class:`PendingLogin` (state, nonce, PKCE verifier and a browser binding kept server side
for :data:`PENDING_TTL_S`) and redirects to :func:`auth_url`. ``GET /callback`` takes it back once (the state must
come from the browser that started it), exchanges the code at the token endpoint (:meth:`OidcClient.exchange`),
checks the ID token's claims (:func:`check_id_token`: iss, aud/azp, exp, iat, nonce) and confirms the user with the
userinfo endpoint (:meth:`OidcClient.userinfo`, same ``sub``). The ID token's signature is not verified here: it
comes straight from the token endpoint over the connection the console opened (OIDC Core 3.1.3.7, item 6), and the
embedded stand-in signs HS256 with a secret of its own, publishing no keys; userinfo is Keycloak's own word that the
access token and its user are valid. Tokens are never logged nor put in a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from streams.core.errors import PlatSyncError

CLIENT_ID = "platsync-console"
SCOPE = "openid profile email"
#: How long a started login may take (the state, nonce and verifier are forgotten afterwards).
PENDING_TTL_S = 600.0
#: Started logins kept at most (the oldest go first).
PENDING_MAX = 1000
#: Clock skew tolerated on the ID token's ``exp`` and ``iat``.
LEEWAY_S = 60
#: Longest authorization code or state accepted from the browser.
PARAM_MAX = 4096


class LoginRefused(PlatSyncError):
    """A login that cannot go on: HTTP ``status`` and a reason that holds no token or code."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class Endpoints:
    """A Keycloak realm's issuer and the OIDC endpoints the console uses (Keycloak's standard paths)."""

    issuer: str
    auth: str
    token: str
    userinfo: str
    end_session: str


def endpoints(keycloak_url: str, realm: str) -> Endpoints:
    """The endpoints of ``realm`` at ``keycloak_url``."""
    issuer = f"{keycloak_url.rstrip('/')}/realms/{realm}"
    base = f"{issuer}/protocol/openid-connect"
    return Endpoints(issuer, f"{base}/auth", f"{base}/token", f"{base}/userinfo", f"{base}/logout")


@dataclass(frozen=True)
class PendingLogin:
    """A login started at ``/login``: what comes back at ``/callback`` must match it."""

    state: str
    nonce: str
    verifier: str
    binding: str  # also in a short-lived cookie of the browser that started the login
    created: float


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


class PendingLogins:
    """Started logins by state, each taken back at most once, within ``ttl_s``."""

    def __init__(self, ttl_s: float = PENDING_TTL_S, clock: Callable[[], float] = time.monotonic,
                 max_pending: int = PENDING_MAX) -> None:
        self.ttl_s, self._clock, self._max = ttl_s, clock, max_pending
        self._pending: dict[str, PendingLogin] = {}

    def _purge(self) -> None:
        now = self._clock()
        for state in [s for s, p in self._pending.items() if now - p.created > self.ttl_s]:
            del self._pending[state]
        while len(self._pending) >= self._max:
            del self._pending[next(iter(self._pending))]

    def start(self) -> PendingLogin:
        """A new login with fresh state, nonce, PKCE verifier (64 characters) and browser binding."""
        self._purge()
        pending = PendingLogin(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48),
                               secrets.token_urlsafe(32), self._clock())
        self._pending[pending.state] = pending
        return pending

    def take(self, state: str, binding: str | None) -> PendingLogin:
        """The login ``state`` names, once; :class:`LoginRefused` if unknown, expired or from another browser."""
        pending = self._pending.pop(state, None)
        if pending is None or self._clock() - pending.created > self.ttl_s:
            raise LoginRefused("the login is unknown or expired: start again")
        if binding is None or not hmac.compare_digest(pending.binding.encode(), binding.encode()):
            raise LoginRefused("the login was started in another browser: start again")
        return pending

    def drop(self, state: str) -> None:
        """Forget the login ``state`` names (Keycloak answered it with an error)."""
        self._pending.pop(state, None)

    def __len__(self) -> int:
        return len(self._pending)


def auth_url(ends: Endpoints, client_id: str, redirect_uri: str, pending: PendingLogin) -> str:
    """The authorization request of ``pending`` (code flow, PKCE S256, query response mode)."""
    return f"{ends.auth}?" + urlencode({
        "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": SCOPE,
        "state": pending.state, "nonce": pending.nonce, "code_challenge": pkce_challenge(pending.verifier),
        "code_challenge_method": "S256"})


def end_session_url(ends: Endpoints, client_id: str, id_token: str | None, post_logout_uri: str) -> str:
    """RP-initiated logout at Keycloak, back to ``post_logout_uri`` afterwards."""
    params = {"client_id": client_id, "post_logout_redirect_uri": post_logout_uri}
    if id_token:
        params["id_token_hint"] = id_token
    return f"{ends.end_session}?" + urlencode(params)


def jwt_claims(token: Any) -> dict[str, Any]:
    """The payload of a compact JWS, not verified (see the module's docstring); :class:`LoginRefused` if
    malformed."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise LoginRefused("Keycloak's answer holds no readable ID token", 502)
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        raise LoginRefused("Keycloak's answer holds no readable ID token", 502) from None
    if not isinstance(claims, dict):
        raise LoginRefused("Keycloak's answer holds no readable ID token", 502)
    return claims


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def check_id_token(claims: dict[str, Any], issuer: str, client_id: str, nonce: str, now: float | None = None,
                   leeway_s: float = LEEWAY_S) -> None:
    """Check an ID token's claims (OIDC Core 3.1.3.7): the realm's issuer, for this client (``aud``; ``azp``
    when there are several audiences or it is present), not expired, issued not in the future, our nonce.
    :class:`LoginRefused` naming the claim that fails."""
    now = time.time() if now is None else now
    if claims.get("iss") != issuer:
        raise LoginRefused("the ID token was issued by another realm or server (iss)")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise LoginRefused("the ID token is not for this console (aud)")
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != client_id:
        raise LoginRefused("the ID token was issued to another client (azp)")
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None or exp + leeway_s <= now:
        raise LoginRefused("the ID token has expired (exp)")
    if iat is not None and iat - leeway_s > now:
        raise LoginRefused("the ID token is issued in the future (iat)")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise LoginRefused("the ID token does not answer this login (nonce)")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise LoginRefused("the ID token names no user (sub)")


def display_name(info: dict[str, Any]) -> str:
    """A user's name from userinfo claims: ``name``, else family and given name, else the username."""
    if isinstance(info.get("name"), str) and info["name"].strip():
        return str(info["name"]).strip()
    parts = [str(info[k]).strip() for k in ("family_name", "given_name") if isinstance(info.get(k), str)]
    return " ".join(p for p in parts if p) or str(info.get("preferred_username", ""))


@dataclass(frozen=True)
class Identity:
    """Who logged in: the realm's user id, username (lower-cased), display name and the ID token (for logout)."""

    sub: str
    username: str
    name: str
    id_token: str


class OidcClient:
    """Talks to the realm's token and userinfo endpoints (one HTTP client, closed by :meth:`close`)."""

    def __init__(self, ends: Endpoints, client_id: str, redirect_uri: str, timeout_s: float) -> None:
        self.ends, self.client_id, self.redirect_uri = ends, client_id, redirect_uri
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        """The tokens for ``code`` (``grant_type=authorization_code`` with the PKCE verifier)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "client_id": self.client_id, "code_verifier": verifier}
        try:
            async with self._http().post(self.ends.token, data=form, allow_redirects=False) as resp:
                status = resp.status
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise LoginRefused(f"the login node's Keycloak cannot be reached ({type(exc).__name__}); retry later",
                               503) from None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
            return body
        error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
        if status in (400, 401) and error:
            raise LoginRefused(f"Keycloak refused the login's code ({error[:40]}): start again")
        raise LoginRefused(f"Keycloak's token endpoint answered HTTP {status}; retry later", 503)

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        """The userinfo claims of ``access_token`` (Keycloak confirms the token and that its user is enabled)."""
        try:
            async with self._http().get(self.ends.userinfo, headers={"Authorization": f"Bearer {access_token}"},
                                        allow_redirects=False) as resp:
                status = resp.status
                body = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise LoginRefused(f"the login node's Keycloak cannot be reached ({type(exc).__name__}); retry later",
                               503) from None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("sub"), str):
            return body
        if status in (401, 403):
            raise LoginRefused("Keycloak did not confirm the user (userinfo refused the token)")
        raise LoginRefused(f"Keycloak's userinfo endpoint answered HTTP {status}; retry later", 503)

    async def login(self, code: str, pending: PendingLogin) -> Identity:
        """Exchange ``code``, check the ID token, confirm the user with userinfo; the :class:`Identity`."""
        tokens = await self.exchange(code, pending.verifier)
        id_token = tokens.get("id_token")
        claims = jwt_claims(id_token)
        check_id_token(claims, self.ends.issuer, self.client_id, pending.nonce)
        info = await self.userinfo(str(tokens["access_token"]))
        if info.get("sub") != claims["sub"]:
            raise LoginRefused("userinfo names another user than the ID token (sub)")
        username = info.get("preferred_username") or claims.get("preferred_username")
        if not isinstance(username, str) or not username.strip():
            raise LoginRefused("Keycloak names no username for this user (preferred_username)")
        return Identity(str(claims["sub"]), username.strip().lower(), display_name(info), str(id_token))

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None
