"""What every part of the stand-in's HTTP API shares: the application's keys, JSON answers, the realm lookup.

Kept apart from :mod:`infra.local.keycloak_standin.server` so that the OIDC login endpoints
(:mod:`infra.local.keycloak_standin.oidc_login`) and the token-response builder
(:mod:`infra.local.keycloak_standin.grants`) use them without importing the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from infra.local.keycloak_standin.storage import AccountStore

STORE: web.AppKey[AccountStore] = web.AppKey("store", AccountStore)
CONFIG: web.AppKey[dict[str, Any]] = web.AppKey("config", dict)
REALM_MISSING = {"error": "Realm does not exist"}


def json_response(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def oauth_error(status: int, error: str, description: str) -> web.Response:
    """The token endpoint's OAuth error body ``{"error", "error_description"}``."""
    return json_response(status, {"error": error, "error_description": description})


class HTTPJson(Exception):
    """Abort a handler with a JSON response."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.response = json_response(status, body)


async def db(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking store call off the event loop."""
    return await asyncio.to_thread(fn, *args)


async def realm_id(request: web.Request, missing: dict[str, Any]) -> str:
    """The id of the realm in the path; 404 with ``missing`` when there is none."""
    found = await db(request.app[STORE].realm_id, request.match_info["realm"])
    if found is None:
        raise HTTPJson(404, missing)
    return found


def issuer(request: web.Request, realm: str) -> str:
    """The realm's issuer URL as Keycloak builds it from the request (``<base>/realms/<realm>``)."""
    return f"{request.scheme}://{request.host}/realms/{realm}"
