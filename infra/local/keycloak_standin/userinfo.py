"""The stand-in's OIDC userinfo endpoint: ``GET|POST /realms/{realm}/protocol/openid-connect/userinfo``.

It answers as Keycloak 26's ``UserInfoEndpoint`` does for a bearer token in the ``Authorization``
header (https://www.keycloak.org/docs/latest/securing_apps/, "Userinfo endpoint"):

- no token: 401 with ``WWW-Authenticate: Bearer realm="<realm>"`` (Keycloak's ``OAuth2Error.unauthorized``);
- a token that is malformed, wrongly signed, expired, not an access token or from another realm:
  401 ``invalid_token`` / ``Token verification failed``;
- a valid token without the ``openid`` scope: 403 ``insufficient_scope`` / ``Missing openid scope``
  (Keycloak 19.0.2+, keycloak/keycloak#14237);
- a token whose session was logged out (or whose code was used twice): 401 ``invalid_request`` / ``User session
  not found or doesn't have client attached on it`` (``UserInfoEndpoint.findValidSession``: the session is gone);
- a token whose user is gone or disabled: 401 ``invalid_token`` (``User not found``, ``User disabled``);
- otherwise 200 with the claims of the ``profile`` and ``email`` scopes: ``sub``, ``preferred_username``,
  ``email``, ``email_verified``, ``given_name``, ``family_name``, ``name`` (those the user has).

Errors carry ``WWW-Authenticate: Bearer realm=..., error=..., error_description=...`` and the JSON body
``{"error", "error_description"}``. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from infra.local.keycloak_standin import tokens
from infra.local.keycloak_standin.storage import AccountStore

SESSION_GONE = "User session not found or doesn't have client attached on it"


def _challenge(realm: str, status: int, error: str | None = None, description: str = "") -> web.Response:
    header = f'Bearer realm="{realm}"'
    if error is None:
        return web.Response(status=status, headers={"WWW-Authenticate": header})
    header += f', error="{error}", error_description="{description}"'
    return web.json_response({"error": error, "error_description": description}, status=status,
                             headers={"WWW-Authenticate": header})


def claims_of(user: dict[str, Any]) -> dict[str, Any]:
    """The userinfo claims of a UserRepresentation (Keycloak's default ``profile`` and ``email`` mappers)."""
    claims: dict[str, Any] = {"sub": user["id"], "email_verified": bool(user.get("emailVerified")),
                              "preferred_username": user["username"]}
    first, last = user.get("firstName"), user.get("lastName")
    if first or last:
        claims["name"] = " ".join(n for n in (first, last) if n)
    for claim, value in (("given_name", first), ("family_name", last), ("email", user.get("email"))):
        if value:
            claims[claim] = value
    return claims


def make_userinfo(store: Callable[[web.Request], AccountStore], key: Callable[[web.Request], bytes],
                  realm_id: Callable[[web.Request], Awaitable[str]],
                  issuer: Callable[[web.Request, str], str],
                  session_active: Callable[[web.Request, str], bool] = lambda _r, _sid: True,
                  ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The userinfo handler of the stand-in whose account store, signing key, realm lookup (404 for an unknown
    realm), issuer URL and session check (is the session with this id still active?) these functions give."""

    async def userinfo(request: web.Request) -> web.Response:
        realm = request.match_info["realm"]
        realm_key = await realm_id(request)
        scheme, _, raw = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            return _challenge(realm, 401)
        try:
            claims = tokens.verify(raw.strip(), key(request), "Bearer")
        except tokens.TokenError:
            return _challenge(realm, 401, "invalid_token", "Token verification failed")
        if claims.get("iss") != issuer(request, realm):
            return _challenge(realm, 401, "invalid_token", "Token verification failed")
        if "openid" not in str(claims.get("scope") or "").split():
            return _challenge(realm, 403, "insufficient_scope", "Missing openid scope")
        if not session_active(request, str(claims.get("sid"))):
            return _challenge(realm, 401, "invalid_request", SESSION_GONE)
        user = await asyncio.to_thread(store(request).get_user, realm_key, str(claims.get("sub")))
        if user is None:
            return _challenge(realm, 401, "invalid_token", "User not found")
        if not user.get("enabled"):
            return _challenge(realm, 401, "invalid_token", "User disabled")
        return web.json_response(claims_of(user))

    return userinfo
