"""Signed tokens of the stand-in: compact JWS (HS256) with Keycloak's claim names.

Keycloak signs with RS256 and publishes its keys; the stand-in signs with a shared secret
(HS256) because nothing outside it verifies its tokens. Claims follow Keycloak's access token:
``iss`` (``<base>/realms/<realm>``), ``sub`` (user id), ``exp``/``iat`` (seconds), ``jti``,
``typ`` (``Bearer``/``Refresh``/``ID``), ``azp`` (client id), ``sid``, ``preferred_username``;
ID tokens add ``aud`` (the client id) and, from an authorization request that sent one, ``nonce``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any


class TokenError(ValueError):
    """A token is malformed, wrongly signed or expired."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict[str, Any], key: bytes) -> str:
    """Encode ``claims`` as an HS256 JWS."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def verify(token: str, key: bytes, typ: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid, unexpired token of type ``typ``; :class:`TokenError` otherwise."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64url(signature)):
            raise TokenError("bad signature")
        claims = json.loads(_unb64url(payload))
    except (ValueError, TypeError) as exc:
        raise TokenError(f"malformed token: {exc}") from None
    if not isinstance(claims, dict) or claims.get("typ") != typ:
        raise TokenError("wrong token type")
    if float(claims.get("exp", 0)) <= (time.time() if now is None else now):
        raise TokenError("Token is not active")
    return claims


def issue(key: bytes, issuer: str, user_id: str, username: str, client_id: str, session_id: str,
          typ: str, ttl_s: int, scope: str = "openid profile email", extra: dict[str, Any] | None = None) -> str:
    """Sign a new token of type ``typ`` valid for ``ttl_s`` seconds (``extra``: further claims, e.g. ``aud``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "exp": now + ttl_s, "iat": now, "jti": str(uuid.uuid4()), "iss": issuer, "sub": user_id,
        "typ": typ, "azp": client_id, "sid": session_id, "scope": scope, "preferred_username": username,
        **(extra or {}),
    }
    return sign(claims, key)
