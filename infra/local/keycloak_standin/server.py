"""The Keycloak stand-in's HTTP API: the OIDC token endpoint and the Admin REST endpoints for users.

Only what python-keycloak's account calls, the reference API's token check (the OIDC userinfo
endpoint, :mod:`infra.local.keycloak_standin.userinfo`) and the operator console's browser login
(authorization code flow with PKCE and logout, :mod:`infra.local.keycloak_standin.oidc_login`) reach is
served, with Keycloak's status codes and bodies (sources: Keycloak's ``KeycloakErrorHandler``,
``UsersResource``/``UserResource``, ``ValidateUsername``/``ValidatePassword``, ``PasswordCredentialProvider``):

- ``WebApplicationException`` messages become ``{"error": message}`` (404 ``User not found``,
  ``Realm not found.``, ``Realm does not exist``, 401 ``HTTP 401 Unauthorized``);
  ``ErrorResponse`` errors are ``{"errorMessage": ...}`` (409 ``User exists with same username``);
  the token endpoint answers OAuth errors ``{"error", "error_description"}``.
- Direct grants check, in Keycloak's order: user exists (401), enabled (400 ``Account disabled``),
  password (401), no pending required action (400 ``Account is not fully set up``). A password
  whose hash misses the realm's policy is re-hashed after the successful check, in place. In realms
  other than master, Keycloak 24+ also triggers VERIFY_PROFILE when e-mail, first or last name is
  missing (declarative user profile, issue keycloak#36108), which the stand-in reproduces
  (:func:`infra.local.keycloak_standin.grants.check_login`, shared with the login form).
- A refresh token of a session that was logged out is refused (400 ``Session not active``).
- User representations are validated like Keycloak 24+'s default declarative user profile
  (:mod:`infra.local.keycloak_standin.profile`): an over-long username, e-mail, first or last
  name is HTTP 400 ``{"field": ..., "errorMessage": "error-invalid-length-too-long", "params":
  [...]}`` before anything is stored.
- Only master-realm users may call ``/admin`` (the stand-in has no roles: every master user is an
  admin). Tokens are HS256 JWTs (see :mod:`infra.local.keycloak_standin.tokens`).

Requests are logged one line each (method, path, status, duration), never with a body or query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from infra.local.keycloak_standin import oidc_login, tokens
from infra.local.keycloak_standin.common import CONFIG, REALM_MISSING, STORE, HTTPJson
from infra.local.keycloak_standin.common import db as _db
from infra.local.keycloak_standin.common import issuer as _issuer
from infra.local.keycloak_standin.common import json_response as _json
from infra.local.keycloak_standin.common import oauth_error as _oauth_error
from infra.local.keycloak_standin.common import realm_id as _realm_id
from infra.local.keycloak_standin.grants import (
    ACCOUNT_DISABLED,
    INVALID_CREDENTIALS,
    Refused,
    check_login,
    token_response,
)
from infra.local.keycloak_standin.passwords import StoredPassword, hash_password, valid_password_documents
from infra.local.keycloak_standin.profile import validate_profile
from infra.local.keycloak_standin.storage import AccountStore, PasswordChange, StoreError, make_engine
from infra.local.keycloak_standin.userinfo import make_userinfo

log = logging.getLogger("platsync.keycloak_standin")

DEFAULT_REFRESH_TTL_S = 1800  # Keycloak's default SSO Session Idle
UNAUTHORIZED = {"error": "HTTP 401 Unauthorized"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _log_and_map_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    try:
        response = await handler(request)
    except HTTPJson as exc:
        response = exc.response
    except StoreError as exc:
        response = _json(exc.status, exc.body)
    except web.HTTPException as exc:  # unknown path or method: Keycloak answers JSON
        response = _json(exc.status, {"error": f"HTTP {exc.status} {exc.reason}"})
    except Exception:  # noqa: BLE001 - mirror Keycloak's "Uncaught server error"
        log.exception("Uncaught server error on %s %s", request.method, request.path)
        response = _json(500, {"error": "unknown_error",
                               "error_description": "For more on this error consult the server log."})
    log.info("%s %s %s %.0fms", request.method, request.path, response.status,
             (time.monotonic() - started) * 1000)
    return response


# ---- public realm endpoints ------------------------------------------------------------------

async def realm_info(request: web.Request) -> web.Response:
    """``GET /realms/{realm}``: the realm's public info (a cheap readiness probe)."""
    realm = request.match_info["realm"]
    await _realm_id(request, REALM_MISSING)
    base = _issuer(request, realm)
    return _json(200, {"realm": realm, "token-service": f"{base}/protocol/openid-connect",
                       "account-service": f"{base}/account", "tokens-not-before": 0})


async def openid_configuration(request: web.Request) -> web.Response:
    """``GET /realms/{realm}/.well-known/openid-configuration`` (the fields the stand-in honours)."""
    realm = request.match_info["realm"]
    await _realm_id(request, REALM_MISSING)
    base = _issuer(request, realm)
    oidc = f"{base}/protocol/openid-connect"
    return _json(200, {"issuer": base, "authorization_endpoint": f"{oidc}/auth", "token_endpoint": f"{oidc}/token",
                       "userinfo_endpoint": f"{oidc}/userinfo", "end_session_endpoint": f"{oidc}/logout",
                       "grant_types_supported": ["authorization_code", "password", "refresh_token"],
                       "response_types_supported": ["code"], "response_modes_supported": ["query"],
                       "subject_types_supported": ["public"],
                       "scopes_supported": sorted(oidc_login.KNOWN_SCOPES),
                       "code_challenge_methods_supported": ["plain", "S256"],
                       "id_token_signing_alg_values_supported": ["HS256"]})


async def token(request: web.Request) -> web.Response:
    """``POST /realms/{realm}/protocol/openid-connect/token``: password, refresh_token and authorization_code."""
    realm = request.match_info["realm"]
    realm_id = await _realm_id(request, REALM_MISSING)
    form = await request.post()
    client_id = str(form.get("client_id") or "")
    if not client_id:
        return _oauth_error(401, "invalid_client", "Invalid client or Invalid client credentials")
    grant = form.get("grant_type")
    store, config = request.app[STORE], request.app[CONFIG]
    nonce = None
    if grant == "password":
        username = str(form.get("username") or "")
        if not username:
            return _oauth_error(401, "invalid_request", "Missing parameter: username")
        user = await check_login(request, realm, realm_id, username, str(form.get("password") or ""))
        if isinstance(user, Refused):
            if user.reason == INVALID_CREDENTIALS:
                return _oauth_error(401, "invalid_grant", "Invalid user credentials")
            return _oauth_error(400, "invalid_grant", "Account disabled" if user.reason == ACCOUNT_DISABLED
                                else "Account is not fully set up")
        session_id = str(uuid.uuid4())
        scope = str(form.get("scope") or "")
    elif grant == "authorization_code":
        granted = await oidc_login.authorization_code_grant(request, realm_id, form, client_id)
        if isinstance(granted, web.Response):
            return granted
        user, code = granted
        session_id, scope, nonce = code.session_id, code.request.scope, code.request.nonce
    elif grant == "refresh_token":
        raw = str(form.get("refresh_token") or "")
        if not raw:
            return _oauth_error(400, "invalid_request", "Missing parameter: refresh_token")
        try:
            claims = tokens.verify(raw, config["key"], "Refresh")
        except tokens.TokenError as exc:
            # python-keycloak re-authenticates on "Token is not active"; anything else is invalid
            description = "Token is not active" if str(exc) == "Token is not active" else "Invalid refresh token"
            return _oauth_error(400, "invalid_grant", description)
        if claims.get("iss") != _issuer(request, realm) or claims.get("azp") != client_id:
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        user = await _db(store.login_user_by_id, realm_id, str(claims["sub"]))
        session_id, scope = str(claims.get("sid")), str(claims.get("scope") or "")
        if user is None or not user.enabled or not oidc_login.session_active(request, session_id):
            return _oauth_error(400, "invalid_grant", "Session not active")
    else:
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
    return token_response(request, realm, user.id, user.username, client_id, session_id, scope, nonce)


# ---- admin endpoints -------------------------------------------------------------------------

async def _admin(request: web.Request) -> str:
    """Authenticate a master-realm admin bearer token; return the id of the realm in the path."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        raise HTTPJson(401, UNAUTHORIZED)
    try:
        claims = tokens.verify(header[7:].strip(), request.app[CONFIG]["key"], "Bearer")
    except tokens.TokenError:
        raise HTTPJson(401, UNAUTHORIZED) from None
    token_realm = str(claims.get("iss", "")).rsplit("/realms/", 1)[-1]
    store = request.app[STORE]
    token_realm_id = await _db(store.realm_id, token_realm)
    user = None if token_realm_id is None else await _db(store.login_user_by_id, token_realm_id, str(claims["sub"]))
    if user is None or not user.enabled:
        raise HTTPJson(401, UNAUTHORIZED)
    if token_realm != "master":
        raise HTTPJson(403, {"error": "HTTP 403 Forbidden"})
    return await _realm_id(request, {"error": "Realm not found."})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text() or "null")
    except ValueError:
        raise HTTPJson(400, {"error": "invalid_request", "error_description": "Cannot parse the JSON"}) from None
    if not isinstance(body, dict):
        raise HTTPJson(400, {"error": "invalid_request", "error_description": "Cannot parse the JSON"})
    return body


async def _password_changes(credentials: Any) -> list[PasswordChange]:
    """Plaintext credentials are hashed here (off the event loop); hashed ones are imported as is."""
    changes = []
    for cred in credentials or []:
        if not isinstance(cred, dict) or cred.get("type", "password") not in (None, "password"):
            continue  # other credential types (otp, webauthn) are not modelled by the stand-in
        temporary = bool(cred.get("temporary"))
        if cred.get("value"):
            changes.append(PasswordChange(await asyncio.to_thread(hash_password, str(cred["value"])), temporary))
        elif valid_password_documents(cred.get("secretData"), cred.get("credentialData")):
            created = cred.get("createdDate")
            changes.append(PasswordChange(StoredPassword(cred["secretData"], cred["credentialData"]), temporary,
                                          int(created) if isinstance(created, int) else None))
        else:
            raise HTTPJson(400, {"errorMessage": "Invalid password credential representation"})
    return changes


def _query(request: web.Request) -> dict[str, str]:
    return {k: request.query[k] for k in ("search", "username", "email", "firstName", "lastName", "exact")
            if k in request.query}


def _int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise HTTPJson(404, {"error": "HTTP 404 Not Found"}) from None  # JAX-RS: unparsable @QueryParam


async def get_realm(request: web.Request) -> web.Response:
    """``GET /admin/realms/{realm}``: the RealmRepresentation (id, realm, enabled)."""
    realm_id = await _admin(request)
    return _json(200, {"id": realm_id, "realm": request.match_info["realm"], "enabled": True})


async def list_users(request: web.Request) -> web.Response:
    """``GET /admin/realms/{realm}/users`` with Keycloak's query parameters."""
    realm_id = await _admin(request)
    brief = request.query.get("briefRepresentation", "false").lower() == "true"
    users = await _db(request.app[STORE].list_users, realm_id, _query(request),
                      _int(request, "first", 0), _int(request, "max", 100), brief)
    return _json(200, users)


async def count_users(request: web.Request) -> web.Response:
    """``GET /admin/realms/{realm}/users/count``."""
    realm_id = await _admin(request)
    return _json(200, await _db(request.app[STORE].count_users, realm_id, _query(request)))


async def create_user(request: web.Request) -> web.Response:
    """``POST /admin/realms/{realm}/users``: 201 with the new user's URL in ``Location``."""
    realm_id = await _admin(request)
    rep = await _body(request)
    validate_profile(rep)
    passwords = await _password_changes(rep.get("credentials"))
    user_id = await _db(request.app[STORE].create_user, realm_id, rep, passwords)
    location = f"{request.scheme}://{request.host}{request.path.rstrip('/')}/{user_id}"
    return web.Response(status=201, headers={"Location": location})


async def _user_id(request: web.Request) -> tuple[str, str]:
    realm_id = await _admin(request)
    user_id = request.match_info["user_id"]
    if await _db(request.app[STORE].get_user, realm_id, user_id) is None:
        raise HTTPJson(404, {"error": "User not found"})
    return realm_id, user_id


async def get_user(request: web.Request) -> web.Response:
    """``GET /admin/realms/{realm}/users/{id}``."""
    realm_id = await _admin(request)
    user = await _db(request.app[STORE].get_user, realm_id, request.match_info["user_id"])
    return _json(404, {"error": "User not found"}) if user is None else _json(200, user)


async def update_user(request: web.Request) -> web.Response:
    """``PUT /admin/realms/{realm}/users/{id}``: fields present are updated, credentials stored."""
    realm_id, user_id = await _user_id(request)
    rep = await _body(request)
    validate_profile(rep)
    passwords = await _password_changes(rep.get("credentials"))
    if not await _db(request.app[STORE].update_user, realm_id, user_id, rep, passwords):
        return _json(404, {"error": "User not found"})
    return web.Response(status=204)


async def delete_user(request: web.Request) -> web.Response:
    """``DELETE /admin/realms/{realm}/users/{id}``."""
    realm_id = await _admin(request)
    if not await _db(request.app[STORE].delete_user, realm_id, request.match_info["user_id"]):
        return _json(404, {"error": "User not found"})
    return web.Response(status=204)


async def reset_password(request: web.Request) -> web.Response:
    """``PUT .../users/{id}/reset-password``: 204; ``temporary`` requires UPDATE_PASSWORD."""
    _, user_id = await _user_id(request)
    cred = await _body(request)
    value = cred.get("value")
    if value is None:
        return _json(400, {"error": "No password provided"})
    if not str(value).strip():
        return _json(400, {"error": "Empty password not allowed"})
    stored = await asyncio.to_thread(hash_password, str(value))
    await _db(request.app[STORE].reset_password, user_id, PasswordChange(stored, bool(cred.get("temporary"))))
    return web.Response(status=204)


async def credentials(request: web.Request) -> web.Response:
    """``GET .../users/{id}/credentials`` (``secretData`` is never returned)."""
    _, user_id = await _user_id(request)
    return _json(200, await _db(request.app[STORE].credentials, user_id))


async def delete_credential(request: web.Request) -> web.Response:
    """``DELETE .../users/{id}/credentials/{credentialId}``."""
    _, user_id = await _user_id(request)
    if not await _db(request.app[STORE].delete_credential, user_id, request.match_info["credential_id"]):
        return _json(404, {"error": "Credential not found"})
    return web.Response(status=204)


def create_app(dsn: str, token_ttl_s: int, signing_key: bytes, refresh_ttl_s: int = DEFAULT_REFRESH_TTL_S,
               verify_profile: bool = True) -> web.Application:
    """The stand-in application on the account tables in ``dsn`` (which must be provisioned).

    ``verify_profile=False`` models realms whose VERIFY_PROFILE required action is disabled.
    """
    app = web.Application(middlewares=[_log_and_map_errors])
    engine = make_engine(dsn)
    app[STORE] = AccountStore(engine)
    app[CONFIG] = {"ttl": int(token_ttl_s), "refresh_ttl": int(refresh_ttl_s), "key": signing_key,
                   "verify_profile": verify_profile}

    async def dispose(_: web.Application) -> None:
        engine.dispose()

    app.on_cleanup.append(dispose)
    users = "/admin/realms/{realm}/users"
    app.router.add_get("/realms/{realm}", realm_info)
    app.router.add_get("/realms/{realm}/.well-known/openid-configuration", openid_configuration)
    app.router.add_post("/realms/{realm}/protocol/openid-connect/token", token)
    userinfo = make_userinfo(lambda r: r.app[STORE], lambda r: r.app[CONFIG]["key"],
                             lambda r: _realm_id(r, REALM_MISSING), _issuer, oidc_login.session_active)
    app.router.add_route("GET", "/realms/{realm}/protocol/openid-connect/userinfo", userinfo)
    app.router.add_route("POST", "/realms/{realm}/protocol/openid-connect/userinfo", userinfo)
    oidc_login.add_routes(app)
    app.router.add_get("/admin/realms/{realm}", get_realm)
    app.router.add_get(users, list_users)
    app.router.add_post(users, create_user)
    app.router.add_get(users + "/count", count_users)
    app.router.add_get(users + "/{user_id}", get_user)
    app.router.add_put(users + "/{user_id}", update_user)
    app.router.add_delete(users + "/{user_id}", delete_user)
    app.router.add_put(users + "/{user_id}/reset-password", reset_password)
    app.router.add_get(users + "/{user_id}/credentials", credentials)
    app.router.add_delete(users + "/{user_id}/credentials/{credential_id}", delete_credential)
    return app


def run(host: str, port: int, dsn: str, token_ttl_s: int, signing_key: bytes,
        refresh_ttl_s: int = DEFAULT_REFRESH_TTL_S, verify_profile: bool = True) -> None:
    """Serve until SIGINT/SIGTERM (aiohttp turns both into a graceful shutdown)."""
    app = create_app(dsn, token_ttl_s, signing_key, refresh_ttl_s, verify_profile)
    web.run_app(app, host=host, port=port, access_log=None, print=None, handle_signals=True)
