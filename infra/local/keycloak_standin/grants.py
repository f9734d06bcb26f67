"""What the token endpoint's grants and the browser login share: the password check and the token response.

The password check is the same for the direct grant (``grant_type=password``) and the login form
(:mod:`infra.local.keycloak_standin.oidc_login`); only the order of two checks differs, as in
Keycloak: the direct grant refuses a disabled account before checking its password
(``ResourceOwnerPasswordCredentialsGrantType``/``ValidateUsername``), the login form checks the
password first and reveals that an account is disabled only to whoever knows its password
(``AbstractUsernameFormAuthenticator.validateUserAndPassword``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from infra.local.keycloak_standin import tokens
from infra.local.keycloak_standin.common import CONFIG, STORE, db, issuer, json_response
from infra.local.keycloak_standin.passwords import hash_password, meets_policy, verify_password
from infra.local.keycloak_standin.storage import LoginUser

# Why a login is refused (each caller words it as Keycloak does for its flow).
INVALID_CREDENTIALS = "invalid_credentials"
ACCOUNT_DISABLED = "account_disabled"
NOT_FULLY_SET_UP = "not_fully_set_up"


@dataclass(frozen=True)
class Refused:
    """A refused login: ``reason`` is one of the constants above; ``action`` the pending required action
    (``VERIFY_PROFILE`` for an incomplete profile) when the account is not fully set up."""

    reason: str
    action: str | None = None


async def check_login(request: web.Request, realm: str, realm_id: str, username: str, password: str, *,
                      form: bool = False) -> LoginUser | Refused:
    """The user whose password this is, or why the login is refused.

    A password whose hash misses the realm's policy is re-hashed after the successful check, in
    place, as Keycloak does. In realms other than master, Keycloak 24+ also requires e-mail, first
    and last name (VERIFY_PROFILE, keycloak#36108) unless the stand-in runs with that action disabled.
    """
    store, config = request.app[STORE], request.app[CONFIG]
    user = await db(store.login_user, realm_id, username) if username else None
    if user is None:
        return Refused(INVALID_CREDENTIALS)
    if not form and not user.enabled:
        return Refused(ACCOUNT_DISABLED)
    if user.password is None or not await db(verify_password, password, *user.password):
        return Refused(INVALID_CREDENTIALS)
    if not meets_policy(user.password[1]):
        await db(store.rehash_password, user.id, user.password, await db(hash_password, password))
    if not user.enabled:
        return Refused(ACCOUNT_DISABLED)
    if user.required_actions:
        return Refused(NOT_FULLY_SET_UP, sorted(user.required_actions)[0])
    if config["verify_profile"] and realm != "master" and not (user.email and user.first_name and user.last_name):
        return Refused(NOT_FULLY_SET_UP, "VERIFY_PROFILE")
    return user


def token_response(request: web.Request, realm: str, user_id: str, username: str, client_id: str,
                   session_id: str, scope: str, nonce: str | None = None) -> web.Response:
    """The token endpoint's 200 answer for every grant (Keycloak's ``AccessTokenResponse``).

    ``scope`` is the requested scope: ``openid`` in it adds an ID token (``aud`` the client, and
    ``nonce`` when the authorization request carried one); ``profile email`` are always granted
    (Keycloak's default client scopes).
    """
    config = request.app[CONFIG]
    realm_issuer, ttl, refresh_ttl = issuer(request, realm), config["ttl"], config["refresh_ttl"]
    openid = "openid" in scope.split()
    scopes = " ".join([*(["openid"] if openid else []), "profile", "email"])

    def mint(typ: str, lifetime: int, extra: dict[str, Any] | None = None) -> str:
        return tokens.issue(config["key"], realm_issuer, user_id, username, client_id, session_id, typ, lifetime,
                            scopes, extra)

    body: dict[str, Any] = {"access_token": mint("Bearer", ttl), "expires_in": ttl,
                            "refresh_expires_in": refresh_ttl, "refresh_token": mint("Refresh", refresh_ttl),
                            "token_type": "Bearer"}
    if openid:
        body["id_token"] = mint("ID", ttl, {"aud": client_id, **({"nonce": nonce} if nonce is not None else {})})
    body.update({"not-before-policy": 0, "session_state": session_id, "scope": scopes})
    return json_response(200, body)
