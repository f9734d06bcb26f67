"""Account scenarios run unchanged against the Keycloak stand-in and a real Keycloak.

Each scenario takes ``(url, realm, admin_user, admin_password)`` and asserts behaviour only
through :class:`connectors.keycloak.admin.KeycloakAccounts` and :func:`login` (python-keycloak
over HTTP). Users are created complete (e-mail, first and last name): Keycloak 24+ refuses a
direct grant for a user whose profile misses them ("Account is not fully set up"). Updates that
carry ``attributes`` send the whole representation, as the engine's sink does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import requests
from keycloak.exceptions import KeycloakError

from connectors.keycloak.admin import (
    KeycloakAccounts,
    KeycloakAuthError,
    KeycloakConfigError,
    KeycloakNotFoundError,
    KeycloakRejectedError,
    KeycloakUnavailableError,
    KeycloakUserExistsError,
    login,
)
from infra.local.process import free_port

Scenario = Callable[[str, str, str, str], None]


def accounts(url: str, realm: str, admin_user: str, admin_password: str) -> KeycloakAccounts:
    """A connector for ``realm`` (short timeout: every server here is local)."""
    return KeycloakAccounts(url, realm, admin_user, admin_password, timeout_s=10)


def new_username(prefix: str = "staff") -> str:
    """A unique, mixed-case username (Keycloak stores it lower-cased)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}-Dr"


def new_password() -> str:
    """A unique password that satisfies any default password policy."""
    return f"Pw-{uuid.uuid4().hex}-9!"


def profile(username: str, **extra: Any) -> dict[str, Any]:
    """A complete, enabled UserRepresentation without credentials."""
    rep = {"username": username, "enabled": True, "email": f"{username.lower()}@hospital.example",
           "firstName": "花子", "lastName": "山田", "emailVerified": True}
    rep.update(extra)
    return rep


def with_password(rep: dict[str, Any], password: str, temporary: bool = False) -> dict[str, Any]:
    """``rep`` plus a plaintext password credential."""
    return {**rep, "credentials": [{"type": "password", "value": password, "temporary": temporary}]}


def can_login(url: str, realm: str, username: str, password: str) -> bool:
    """True if a direct grant succeeds (False on a refused login)."""
    try:
        login(url, realm, username, password)
        return True
    except KeycloakAuthError:
        return False


def refusal(url: str, realm: str, username: str, password: str) -> KeycloakAuthError:
    """The error of a login that must be refused."""
    with pytest.raises(KeycloakAuthError) as info:
        login(url, realm, username, password)
    return info.value


def keycloak_pbkdf2(password: str, algorithm: str = "pbkdf2-sha512", iterations: int = 210_000) -> tuple[str, str]:
    """``(secretData, credentialData)`` of ``password`` as Keycloak's PBKDF2 provider stores it.

    Built here independently of the stand-in: PBKDF2-HMAC over the UTF-8 password, 16-byte salt,
    derived key 512 bits (sha512, sha1) or 256 bits (sha256), standard base64, compact JSON.
    """
    digest, size = {"pbkdf2-sha512": ("sha512", 64), "pbkdf2-sha256": ("sha256", 32), "pbkdf2": ("sha1", 64)}[algorithm]
    salt = os.urandom(16)
    derived = hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations, size)
    secret = {"value": base64.b64encode(derived).decode(), "salt": base64.b64encode(salt).decode(),
              "additionalParameters": {}}
    data = {"hashIterations": iterations, "algorithm": algorithm, "additionalParameters": {}}
    return json.dumps(secret, separators=(",", ":")), json.dumps(data, separators=(",", ":"))


# ---- scenarios -------------------------------------------------------------------------------

def create_user_then_login(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """A created user logs in with its password (any username case); a wrong password is 401."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username(), new_password()
    user_id = kc.create_user(with_password(profile(username), password))
    user = kc.get_user(user_id)
    assert user["username"] == username.lower() and user["enabled"] is True
    assert user["email"] == f"{username.lower()}@hospital.example" and user["firstName"] == "花子"
    assert isinstance(user["createdTimestamp"], int) and "credentials" not in user
    assert kc.find_user(username) == kc.find_user(username.upper()) and kc.find_user(username)["id"] == user_id
    assert kc.find_user(username[:-3]) is None  # exact match only
    tokens = login(url, realm, username, password)
    assert tokens["token_type"].lower() == "bearer" and tokens["access_token"] and tokens["refresh_token"]
    assert can_login(url, realm, username.upper(), password)
    assert refusal(url, realm, username, password + "x").status == 401
    assert refusal(url, realm, "nobody-" + username, password).status == 401
    (cred,) = kc.password_credentials(user_id)
    assert "secretData" not in cred and cred["type"] == "password" and isinstance(cred["createdDate"], int)


def duplicate_username_conflicts(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """A second user with the same username (any case) is a 409 KeycloakUserExistsError."""
    kc = accounts(url, realm, admin_user, admin_password)
    username = new_username("dup")
    kc.create_user(profile(username))
    with pytest.raises(KeycloakUserExistsError) as info:
        kc.create_user(profile(username.upper(), email=f"other-{username.lower()}@hospital.example"))
    assert info.value.status == 409 and "username" in info.value.message


def update_attributes_actions_enabled(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """Attributes are replaced, required actions added/removed, enabled toggled; logins follow."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("upd"), new_password()
    base = profile(username)
    user_id = kc.create_user(with_password({**base, "attributes": {"staff_code": ["S-1"],
                                                                   "role": ["doctor", "nurse"]}}, password))
    attrs = kc.get_user(user_id).get("attributes", {})
    assert attrs["staff_code"] == ["S-1"] and sorted(attrs["role"]) == ["doctor", "nurse"]
    kc.update_user(user_id, {**base, "attributes": {"staff_code": ["S-2"], "ward": ["7F"]}})
    attrs = kc.get_user(user_id).get("attributes", {})
    assert {k: attrs[k] for k in ("staff_code", "ward")} == {"staff_code": ["S-2"], "ward": ["7F"]}
    assert "role" not in attrs
    kc.update_user(user_id, {"requiredActions": ["VERIFY_EMAIL", "CONFIGURE_TOTP"]})
    assert sorted(kc.get_user(user_id)["requiredActions"]) == ["CONFIGURE_TOTP", "VERIFY_EMAIL"]
    error = refusal(url, realm, username, password)
    assert (error.status, error.description) == (400, "Account is not fully set up")
    kc.update_user(user_id, {"requiredActions": ["CONFIGURE_TOTP"]})
    assert kc.get_user(user_id)["requiredActions"] == ["CONFIGURE_TOTP"]
    kc.update_user(user_id, {"requiredActions": []})
    assert kc.get_user(user_id)["requiredActions"] == [] and can_login(url, realm, username, password)
    kc.update_user(user_id, {"enabled": False})
    assert kc.get_user(user_id)["enabled"] is False and not can_login(url, realm, username, password)
    kc.update_user(user_id, {"enabled": True})
    assert can_login(url, realm, username, password)
    assert kc.get_user(user_id)["firstName"] == "花子"  # partial updates keep the other fields


def disable_refuses_login(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """A disabled user cannot log in, even with the right password (400 Account disabled)."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("dis"), new_password()
    user_id = kc.create_user(with_password(profile(username), password))
    assert can_login(url, realm, username, password)
    kc.disable_user(user_id)
    error = refusal(url, realm, username, password)
    assert (error.status, error.error, error.description) == (400, "invalid_grant", "Account disabled")
    assert kc.find_user(username)["enabled"] is False


def reset_password(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """A reset password replaces the old one; a temporary one requires UPDATE_PASSWORD first."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, first, second, third = new_username("pw"), new_password(), new_password(), new_password()
    user_id = kc.create_user(with_password(profile(username), first))
    kc.set_password(user_id, second)
    assert can_login(url, realm, username, second) and not can_login(url, realm, username, first)
    assert len(kc.password_credentials(user_id)) == 1
    kc.set_password(user_id, third, temporary=True)
    assert kc.get_user(user_id)["requiredActions"] == ["UPDATE_PASSWORD"]
    assert refusal(url, realm, username, third).description == "Account is not fully set up"
    kc.set_password(user_id, third, temporary=False)
    assert kc.get_user(user_id)["requiredActions"] == [] and can_login(url, realm, username, third)
    kc.update_user(user_id, {"credentials": [{"type": "password", "value": first, "temporary": False}]})
    assert can_login(url, realm, username, first) and not can_login(url, realm, username, third)


def import_password_hash(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """A hash made in Keycloak's PBKDF2 format logs in with the original password once imported."""
    kc = accounts(url, realm, admin_user, admin_password)
    password = new_password()
    for algorithm, iterations in (("pbkdf2-sha512", 210_000), ("pbkdf2-sha256", 27_500)):
        secret_data, credential_data = keycloak_pbkdf2(password, algorithm, iterations)
        username, old = new_username("imp"), new_password()
        user_id = kc.create_user(with_password(profile(username), old))
        kc.import_password_hash(user_id, secret_data, credential_data)
        (cred,) = kc.password_credentials(user_id)
        data = json.loads(cred["credentialData"])
        assert (data["algorithm"], data["hashIterations"]) == (algorithm, iterations)
        assert can_login(url, realm, username, password), algorithm
        # The login may re-hash to the realm's policy, in place (same credential id).
        assert [c["id"] for c in kc.password_credentials(user_id)] == [cred["id"]]
        assert not can_login(url, realm, username, old) and not can_login(url, realm, username, password + "x")
        assert can_login(url, realm, username, password)
    # Hashed credentials are also accepted when the user is created (one request, as the sink does).
    username = new_username("imp")
    secret_data, credential_data = keycloak_pbkdf2(password)
    kc.create_user({**profile(username), "credentials": [
        {"type": "password", "secretData": secret_data, "credentialData": credential_data}]})
    assert can_login(url, realm, username, password)


def delete_password_credential(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """Deleting the password credential (python-keycloak ``delete_credential``) ends password logins."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("cred"), new_password()
    user_id = kc.create_user(with_password(profile(username), password))
    (cred,) = kc.password_credentials(user_id)
    kc.admin.delete_credential(user_id, cred["id"])
    assert kc.password_credentials(user_id) == []
    assert refusal(url, realm, username, password).status == 401
    with pytest.raises(KeycloakError) as info:
        kc.admin.delete_credential(user_id, cred["id"])
    assert info.value.response_code == 404


def delete_user_then_404(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """A deleted user is gone: 404 on get and delete, not found by name, no login."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("del"), new_password()
    user_id = kc.create_user(with_password(profile(username), password))
    kc.delete_user(user_id)
    with pytest.raises(KeycloakNotFoundError) as info:
        kc.get_user(user_id)
    assert info.value.status == 404
    with pytest.raises(KeycloakNotFoundError):
        kc.delete_user(user_id)
    assert kc.find_user(username) is None
    assert refusal(url, realm, username, password).status == 401


def configuration_errors(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """Unknown realm, bad admin password and an unreachable server fail ``check`` clearly."""
    accounts(url, realm, admin_user, admin_password).check()
    with pytest.raises(KeycloakConfigError, match="does not exist"):
        accounts(url, f"no-such-realm-{uuid.uuid4().hex[:6]}", admin_user, admin_password).check()
    with pytest.raises(KeycloakConfigError, match="refused the admin credentials") as info:
        accounts(url, realm, admin_user, admin_password + "-wrong").check()
    assert admin_password not in str(info.value)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(KeycloakConfigError, match="unreachable") as unreachable:
        accounts(closed, realm, admin_user, admin_password).check()
    assert unreachable.value.retryable
    with pytest.raises(KeycloakUnavailableError):
        accounts(closed, realm, admin_user, admin_password).find_user("anyone")


def error_bodies(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """Keycloak's status codes and JSON bodies for the errors the connector classifies."""
    token_url = f"{url}/realms/{realm}/protocol/openid-connect/token"
    users = f"{url}/admin/realms/{realm}/users"
    auth = {"Authorization": f"Bearer {login(url, 'master', admin_user, admin_password)['access_token']}"}
    missing = requests.post(f"{url}/realms/no-{uuid.uuid4().hex[:6]}/protocol/openid-connect/token",
                            data={"grant_type": "password", "client_id": "admin-cli"}, timeout=10)
    assert (missing.status_code, missing.json()) == (404, {"error": "Realm does not exist"})
    bad = requests.post(token_url, data={"grant_type": "password", "client_id": "admin-cli",
                                         "username": new_username("ghost"), "password": "x"}, timeout=10)
    assert (bad.status_code, bad.json()) == (401, {"error": "invalid_grant",
                                                   "error_description": "Invalid user credentials"})
    anonymous = requests.get(users, timeout=10)
    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "HTTP 401 Unauthorized"})
    expired = requests.get(users, headers={"Authorization": "Bearer e30.e30.e30"}, timeout=10)
    assert (expired.status_code, expired.json()) == (401, {"error": "HTTP 401 Unauthorized"})
    nope = requests.get(f"{url}/admin/realms/no-{uuid.uuid4().hex[:6]}", headers=auth, timeout=10)
    assert (nope.status_code, nope.json()) == (404, {"error": "Realm not found."})
    ghost = requests.get(f"{users}/{uuid.uuid4()}", headers=auth, timeout=10)
    assert (ghost.status_code, ghost.json()) == (404, {"error": "User not found"})
    username, password = new_username("raw"), new_password()
    created = requests.post(users, json=with_password(profile(username), password), headers=auth, timeout=10)
    assert created.status_code == 201 and created.headers["Location"].startswith(f"{users}/")
    again = requests.post(users, json=profile(username), headers=auth, timeout=10)
    assert (again.status_code, again.json()) == (409, {"errorMessage": "User exists with same username"})
    count = requests.get(f"{users}/count", params={"username": username, "exact": "true"}, headers=auth, timeout=10)
    assert (count.status_code, count.json()) == (200, 1)
    incomplete = new_username("incomplete")  # no e-mail/names: VERIFY_PROFILE (Keycloak 24+)
    requests.post(users, json={"username": incomplete, "enabled": True,
                               "credentials": [{"type": "password", "value": password}]}, headers=auth, timeout=10)
    error = refusal(url, realm, incomplete, password)
    assert (error.status, error.error, error.description) == (400, "invalid_grant", "Account is not fully set up")


def _field_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["errors"] if "errors" in body else [body]


#: Keycloak 24+'s answer to a 256-character first name (UserResource.validateUserProfile with the default
#: profile's ``length`` max 255: LengthValidator's message and ``[attribute, min, max]``), which the
#: stand-in must give exactly: test_keycloak_real.py checks it against the real server.
OVER_LONG_FIRST_NAME_BODY = {"field": "firstName", "errorMessage": "error-invalid-length-too-long",
                             "params": ["firstName", None, 255]}


def over_long_first_name(url: str, realm: str, admin_user: str, admin_password: str) -> tuple[int, Any]:
    """Status and JSON body of ``POST /users`` with a first name of 256 characters."""
    auth = {"Authorization": f"Bearer {login(url, 'master', admin_user, admin_password)['access_token']}"}
    answer = requests.post(f"{url}/admin/realms/{realm}/users", headers=auth, timeout=10,
                           json=profile(new_username("fn")) | {"firstName": "長" * 256})
    return answer.status_code, answer.json()


def over_long_fields(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """A field over the default user profile's limit (255; username 3-255) is HTTP 400 naming the field
    (Keycloak 24+'s declarative user profile), not a server error; nothing is created or changed."""
    users = f"{url}/admin/realms/{realm}/users"
    auth = {"Authorization": f"Bearer {login(url, 'master', admin_user, admin_password)['access_token']}"}
    kc = accounts(url, realm, admin_user, admin_password)
    long_name = "長" * 256
    long_email = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".cccccccc"  # 256, labels and local part valid
    for field, value, message in (("firstName", long_name, "error-invalid-length-too-long"),
                                  ("lastName", long_name, "error-invalid-length-too-long"),
                                  ("email", long_email, "error-invalid-length-too-long"),
                                  ("username", "u" * 256, "error-invalid-length")):
        username = new_username("long")
        refused = requests.post(users, json=profile(username) | {field: value}, headers=auth, timeout=10)
        assert refused.status_code == 400, (field, refused.status_code, refused.text[:300])
        errors = _field_errors(refused.json())
        mine = [e for e in errors if e["field"] == field and e["errorMessage"] == message]
        assert mine and 255 in mine[0]["params"], (field, errors)
        assert kc.find_user(username) is None
    username = new_username("long2")
    both = requests.post(users, json=profile(username) | {"firstName": long_name, "lastName": long_name},
                         headers=auth, timeout=10)
    assert both.status_code == 400
    assert {(e["field"], e["errorMessage"]) for e in both.json()["errors"]} == {
        ("firstName", "error-invalid-length-too-long"), ("lastName", "error-invalid-length-too-long")}
    # Exactly 255 is accepted; an update over the limit is refused the same way and changes nothing.
    user_id = kc.create_user(profile(username) | {"lastName": "長" * 255})
    with pytest.raises(KeycloakRejectedError) as info:
        kc.update_user(user_id, profile(username) | {"lastName": long_name})
    assert info.value.status == 400 and [(f.field, f.message) for f in info.value.field_errors] == [
        ("lastName", "error-invalid-length-too-long")] and 255 in info.value.field_errors[0].limits
    assert long_name not in str(info.value)
    assert kc.get_user(user_id)["lastName"] == "長" * 255


def account_rows(conn: psycopg.Connection[Any], user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The rows of one user in Keycloak's account tables."""
    def rows(sql: str) -> list[dict[str, Any]]:
        cur = conn.execute(sql, (user_id,))
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    return {"user": rows("SELECT * FROM user_entity WHERE id = %s"),
            "credential": rows("SELECT * FROM credential WHERE user_id = %s"),
            "attribute": rows("SELECT * FROM user_attribute WHERE user_id = %s ORDER BY name, value"),
            "action": rows("SELECT * FROM user_required_action WHERE user_id = %s ORDER BY required_action")}


def table_layout(url: str, realm: str, admin_user: str, admin_password: str, dsn: str) -> dict[str, Any]:
    """What any Keycloak on PostgreSQL writes for an account (the engine's capture relies on it).

    Returns the rows of the created user (before the password change) for further checks.
    """
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("tbl"), new_password()
    long_value = "長" * 300
    before = int(time.time() * 1000)
    rep = with_password(profile(username, email=f"{username}@Hospital.Example"), password)
    rep.update(attributes={"staff_code": ["S-9"], "role": ["doctor", "nurse"], "note": [long_value]},
               requiredActions=["VERIFY_EMAIL"])
    user_id = kc.create_user(rep)
    with psycopg.connect(dsn, autocommit=True) as conn:
        realm_row = conn.execute("SELECT id FROM realm WHERE name = %s", (realm,)).fetchone()
        rows = account_rows(conn, user_id)
        (user,) = rows["user"]
        assert realm_row is not None and user["realm_id"] == realm_row[0]
        assert user["username"] == username.lower() and user["email"] == f"{username.lower()}@hospital.example"
        assert user["email_constraint"] == user["email"] and user["enabled"] and user["email_verified"]
        assert (user["first_name"], user["last_name"], user["not_before"]) == ("花子", "山田", 0)
        assert before <= user["created_timestamp"] <= int(time.time() * 1000)
        (cred,) = rows["credential"]
        assert (cred["type"], cred["salt"], cred["priority"], cred["user_label"]) == ("password", None, 10, None)
        assert before <= cred["created_date"] <= int(time.time() * 1000)
        secret, data = json.loads(cred["secret_data"]), json.loads(cred["credential_data"])
        assert {"value", "salt", "additionalParameters"} <= set(secret)
        assert {"hashIterations", "algorithm", "additionalParameters"} <= set(data)
        attrs = sorted(((a["name"], a["value"], a["long_value"]) for a in rows["attribute"]), key=str)
        assert attrs == sorted([("staff_code", "S-9", None), ("role", "doctor", None), ("role", "nurse", None),
                                ("note", None, long_value)], key=str)
        note = next(a for a in rows["attribute"] if a["name"] == "note")
        assert bytes(note["long_value_hash"]) == hashlib.sha512(long_value.encode()).digest()
        assert bytes(note["long_value_hash_lower_case"]) == hashlib.sha512(long_value.lower().encode()).digest()
        assert all(uuid.UUID(a["id"]) for a in rows["attribute"])
        assert [a["required_action"] for a in rows["action"]] == ["VERIFY_EMAIL"]

        kc.set_password(user_id, password + "-2")  # the password row is updated in place
        (changed,) = account_rows(conn, user_id)["credential"]
        assert changed["id"] == cred["id"] and changed["created_date"] >= cred["created_date"]
        assert changed["secret_data"] != cred["secret_data"]
        secret_data, credential_data = keycloak_pbkdf2(password + "-3", "pbkdf2-sha256", 27_500)
        kc.import_password_hash(user_id, secret_data, credential_data)
        (imported,) = account_rows(conn, user_id)["credential"]
        assert imported["id"] == cred["id"]
        assert json.loads(imported["secret_data"]) == json.loads(secret_data)
        assert json.loads(imported["credential_data"]) == json.loads(credential_data)

        no_mail = kc.create_user({"username": new_username("nomail")})
        (bare,) = account_rows(conn, no_mail)["user"]
        assert bare["email"] is None and uuid.UUID(bare["email_constraint"]) and bare["email_constraint"] != no_mail
        assert bare["enabled"] is False  # Keycloak's default when the representation omits it

        kc.delete_user(user_id)
        assert not any(account_rows(conn, user_id).values())
    return {"password": password, "rows": rows}


def rehash_on_login(url: str, realm: str, admin_user: str, admin_password: str) -> dict[str, Any]:
    """Import a pbkdf2-sha256 hash, log in; return the credential before and after the login.

    Keycloak re-hashes a password whose hash misses the realm's policy after a successful login,
    updating the credential in place (``PasswordCredentialProvider.isValid``): the engine then
    captures a credential change although nobody changed the password.
    """
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("rh"), new_password()
    user_id = kc.create_user(profile(username))
    kc.import_password_hash(user_id, *keycloak_pbkdf2(password, "pbkdf2-sha256", 27_500))
    (before,) = kc.password_credentials(user_id)
    assert can_login(url, realm, username, password)
    (after,) = kc.password_credentials(user_id)
    assert (after["id"], after["createdDate"]) == (before["id"], before["createdDate"])
    assert can_login(url, realm, username, password)
    return {"before": json.loads(before["credentialData"]), "after": json.loads(after["credentialData"])}


def unknown_token_is_recovered(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """An admin token the server rejects (401), whose refresh is refused too, is replaced by a new login.

    This is what a Keycloak restart with new keys, or a token from another server, looks like.
    """
    kc = accounts(url, realm, admin_user, admin_password)
    kc.check()
    kc.admin.connection.token = {"access_token": "not-a-token", "refresh_token": "not-either", "expires_in": 300}
    username = new_username("tok")
    user_id = kc.create_user(profile(username))
    assert kc.get_user(user_id)["username"] == username.lower()


ALL_SCENARIOS: list[Scenario] = [
    create_user_then_login, duplicate_username_conflicts, update_attributes_actions_enabled,
    disable_refuses_login, reset_password, import_password_hash, delete_password_credential, delete_user_then_404,
    configuration_errors,
    unknown_token_is_recovered, error_bodies, over_long_fields,
]
