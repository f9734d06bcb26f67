"""Keycloak accounts as the engine carries them: read from Keycloak's tables, fingerprinted,
turned into a change-event row (credential hash encrypted) and back.

An account is the whole state of one user of the synced realm: username, enabled, names,
e-mail, attributes, required actions and the password credential *as Keycloak stores it*
(``secret_data`` with hash and salt, ``credential_data`` with algorithm and iterations).
The plaintext password is never known to the engine.

The fingerprint covers exactly what the other side reproduces, so that the capture can
recognise an account state that the engine itself has just applied (echo) and drop it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from connectors.keycloak.crypto import KeyRing
from streams.core.model import RowValue

CREDENTIAL_PURPOSE = "keycloak-password-credential"
ACCOUNT_TABLE = "keycloak_account"


@dataclass(frozen=True)
class PasswordCredential:
    """A password credential exactly as Keycloak stores it (JSON strings)."""

    secret_data: str
    credential_data: str


@dataclass(frozen=True)
class Account:
    """One user of the synced realm."""

    username: str
    enabled: bool = True
    email: str | None = None
    email_verified: bool = False
    first_name: str | None = None
    last_name: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    required_actions: tuple[str, ...] = ()
    password: PasswordCredential | None = None
    deleted: bool = False

    def fingerprint(self) -> str:
        """sha256 over everything the other side reproduces (stable across sides)."""
        doc = {
            "username": self.username, "enabled": self.enabled, "email": self.email,
            "email_verified": self.email_verified, "first_name": self.first_name, "last_name": self.last_name,
            "attributes": {k: sorted(v) for k, v in sorted(self.attributes.items())},
            "required_actions": sorted(self.required_actions), "deleted": self.deleted,
            "password": None if self.password is None else _canonical_credential(self.password),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def to_representation(self) -> dict[str, Any]:
        """Keycloak's UserRepresentation for an import/update in one request (hash, not password)."""
        rep: dict[str, Any] = {
            "username": self.username, "enabled": self.enabled, "emailVerified": self.email_verified,
            "firstName": self.first_name, "lastName": self.last_name, "email": self.email,
            "attributes": {k: list(v) for k, v in self.attributes.items()},
            "requiredActions": list(self.required_actions),
        }
        if self.password is not None:
            rep["credentials"] = [{"type": "password", "secretData": self.password.secret_data,
                                   "credentialData": self.password.credential_data}]
        return rep


def _canonical_credential(cred: PasswordCredential) -> dict[str, Any]:
    """Hash, salt, algorithm and iterations only (JSON key order and extras may differ per side)."""
    try:
        secret, data = json.loads(cred.secret_data), json.loads(cred.credential_data)
    except ValueError:
        return {"raw": [cred.secret_data, cred.credential_data]}
    return {"value": secret.get("value"), "salt": secret.get("salt"), "algorithm": data.get("algorithm"),
            "iterations": data.get("hashIterations")}


ACCOUNTS_SQL = """
SELECT u.id, u.username, u.enabled, u.email, u.email_verified, u.first_name, u.last_name
FROM user_entity u JOIN realm r ON r.id = u.realm_id
WHERE r.name = %(realm)s AND u.id = ANY(%(ids)s) AND u.service_account_client_link IS NULL
"""


def read_accounts(conn: psycopg.Connection[Any], realm: str, user_ids: list[str]) -> dict[str, Account]:
    """The current accounts of ``user_ids`` in ``realm`` (absent ids: deleted or other realm)."""
    if not user_ids:
        return {}
    rows = conn.execute(ACCOUNTS_SQL, {"realm": realm, "ids": user_ids}).fetchall()
    ids = [r[0] for r in rows]
    attrs: dict[str, dict[str, list[str]]] = {i: {} for i in ids}
    for user_id, name, value, long_value in conn.execute(
            "SELECT user_id, name, value, long_value FROM user_attribute WHERE user_id = ANY(%s) "
            "ORDER BY user_id, name, id", (ids,)):
        attrs[user_id].setdefault(name, []).append(long_value if long_value is not None else value)
    actions: dict[str, list[str]] = {i: [] for i in ids}
    for user_id, action in conn.execute(
            "SELECT user_id, required_action FROM user_required_action WHERE user_id = ANY(%s) ORDER BY 2", (ids,)):
        actions[user_id].append(action)
    passwords: dict[str, PasswordCredential] = {}
    for user_id, secret, data in conn.execute(
            "SELECT DISTINCT ON (user_id) user_id, secret_data, credential_data FROM credential "
            "WHERE user_id = ANY(%s) AND type = 'password' ORDER BY user_id, priority, created_date DESC", (ids,)):
        passwords[user_id] = PasswordCredential(secret, data)
    return {
        uid: Account(username=username, enabled=bool(enabled), email=email, email_verified=bool(verified),
                     first_name=first, last_name=last, attributes={k: sorted(v) for k, v in attrs[uid].items()},
                     required_actions=tuple(actions[uid]), password=passwords.get(uid))
        for uid, username, enabled, email, verified, first, last in rows
    }


def account_to_row(account: Account, ring: KeyRing) -> dict[str, RowValue]:
    """The change-event row of an account: plain fields, JSON lists, the encrypted credential."""
    credential = None
    if account.password is not None:
        plain = json.dumps({"secret_data": account.password.secret_data,
                            "credential_data": account.password.credential_data}).encode()
        credential = ring.encrypt(plain, CREDENTIAL_PURPOSE)
    return {
        "username": account.username, "enabled": account.enabled, "email": account.email,
        "email_verified": account.email_verified, "first_name": account.first_name, "last_name": account.last_name,
        "attributes_json": json.dumps(account.attributes, sort_keys=True, ensure_ascii=False),
        "required_actions_json": json.dumps(list(account.required_actions)),
        "credential": credential, "deleted": account.deleted, "fingerprint": account.fingerprint(),
    }


def row_to_account(row: dict[str, RowValue], ring: KeyRing) -> Account:
    """Inverse of :func:`account_to_row` (decrypts the credential; raises on a bad row or key)."""
    password = None
    blob = row.get("credential")
    if blob is not None:
        if not isinstance(blob, bytes):
            raise ValueError("credential must be bytes (an encrypted blob)")
        doc = json.loads(ring.decrypt(blob, CREDENTIAL_PURPOSE))
        password = PasswordCredential(doc["secret_data"], doc["credential_data"])
    account = Account(
        username=str(row["username"]), enabled=bool(row["enabled"]), email=_opt(row.get("email")),
        email_verified=bool(row.get("email_verified")), first_name=_opt(row.get("first_name")),
        last_name=_opt(row.get("last_name")), attributes=json.loads(str(row.get("attributes_json") or "{}")),
        required_actions=tuple(json.loads(str(row.get("required_actions_json") or "[]"))),
        password=password, deleted=bool(row.get("deleted")))
    if row.get("fingerprint") is not None and account.fingerprint() != row["fingerprint"]:
        raise ValueError(f"account {account.username}: fingerprint does not match its contents")
    return account


def _opt(value: RowValue) -> str | None:
    return None if value is None else str(value)


def read_accounts_by_username(conn: psycopg.Connection[Any], realm: str, usernames: list[str]) -> dict[str, Account]:
    """The current accounts of ``usernames`` in ``realm``, by username (absent: no such account)."""
    if not usernames:
        return {}
    ids = [r[0] for r in conn.execute(
        "SELECT u.id FROM user_entity u JOIN realm r ON r.id = u.realm_id WHERE r.name = %s "
        "AND u.username = ANY(%s) AND u.service_account_client_link IS NULL", (realm, usernames))]
    return {a.username: a for a in read_accounts(conn, realm, ids).values()}
