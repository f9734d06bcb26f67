"""Bearer-token authentication of the reference API over HTTP, against the node's own Keycloak realm.

A request carries ``Authorization: Bearer <access token>`` issued by the node's realm
(``settings.keycloak_url(side)``, ``settings.keycloak_realm``). The token is checked the way that works
against a real Keycloak without sharing its keys: the OIDC userinfo endpoint
``GET {keycloak}/realms/{realm}/protocol/openid-connect/userinfo`` (Keycloak checks signature, expiry,
issuer, session and that the user exists and is enabled). Keycloak 20+ answers it only for tokens with
the ``openid`` scope (a direct grant asks for it with ``scope=openid``).

A positive answer is cached for :data:`CACHE_S` seconds (never past the token's own ``exp``), keyed by
the token's sha256: a revoked token or disabled user is refused at most that much later. Refusals are
not cached. Tokens are never logged, nor put in any message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from connectors.reference_api.http_errors import HttpApiError, unavailable

#: How long a token Keycloak accepted is trusted without asking again.
CACHE_S = 30.0
#: Cached tokens at most (the oldest go first).
CACHE_MAX = 10_000
#: RFC 6750's ``b64token`` syntax; anything else is refused without asking Keycloak.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_TOKEN_MAX = 16_384


def userinfo_url(keycloak_url: str, realm: str) -> str:
    """The OIDC userinfo endpoint of ``realm`` at ``keycloak_url``."""
    return f"{keycloak_url.rstrip('/')}/realms/{realm}/protocol/openid-connect/userinfo"


def _token_exp(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (only to bound the cache); None if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class TokenCheck:
    """Checks bearer tokens with a realm's userinfo endpoint and caches Keycloak's positive answers."""

    def __init__(self, url: str, realm: str, timeout_s: float, cache_s: float = CACHE_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.url, self.realm, self.cache_s, self._clock = url, realm, cache_s, clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None

    def _challenge(self, error: str | None, description: str) -> dict[str, str]:
        value = f'Bearer realm="{self.realm}"'
        if error:
            value += f', error="{error}", error_description="{description}"'
        return {"WWW-Authenticate": value}

    def _refuse(self, description: str, error: str | None = "invalid_token") -> HttpApiError:
        return HttpApiError("unauthorized", description, self._challenge(error, description))

    async def claims(self, authorization: str | None) -> dict[str, Any]:
        """The userinfo claims of the request's bearer token; :class:`HttpApiError` (401, 403 or 503) otherwise."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse("a bearer token of the node's Keycloak realm is required "
                               "(Authorization: Bearer <access token>)", None)
        if len(token) > _TOKEN_MAX or not _TOKEN_RE.match(token):
            raise self._refuse("the bearer token is malformed")
        key = hashlib.sha256(token.encode("ascii")).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        claims = await self._ask(token)
        exp = _token_exp(token)
        self._remember(key, min(now + self.cache_s, exp if exp is not None else now + self.cache_s), claims)
        return claims

    def _remember(self, key: str, until: float, claims: dict[str, Any]) -> None:
        now = self._clock()
        if len(self._cache) >= CACHE_MAX:
            for old in [k for k, (t, _) in self._cache.items() if t <= now] or list(self._cache)[:CACHE_MAX // 10]:
                del self._cache[old]
        self._cache[key] = (until, claims)

    async def _ask(self, token: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(self.url, headers={"Authorization": f"Bearer {token}"},
                                         allow_redirects=False) as resp:
                status = resp.status
                body = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise HttpApiError("unavailable", f"the node's Keycloak cannot check the token ({type(exc).__name__}); "
                               "retry later", unavailable("").headers) from None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("sub"), str):
            return body
        if status == 403:
            raise HttpApiError("forbidden", "the token lacks the openid scope (request it with scope=openid)",
                               self._challenge("insufficient_scope", "the token lacks the openid scope"))
        if status in (400, 401):
            raise self._refuse("the node's Keycloak refused the token (invalid, expired, or its user is disabled)")
        raise HttpApiError("unavailable", f"the node's Keycloak cannot check the token (HTTP {status} from its "
                           "userinfo endpoint); retry later", unavailable("").headers)

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None
