"""The stand-in's accounts, stored in Keycloak's own tables (``connectors.keycloak.schema``).

Every write is one SQL transaction shaped like Keycloak's JPA store, so that Debezium captures
the stand-in exactly as it would capture a real Keycloak on PostgreSQL:

- ``user_entity``: ``username`` and ``email`` lower-cased; ``email_constraint`` is the e-mail,
  or a fresh UUID when there is none (``UserEntity.setEmail``); ``created_timestamp`` in ms;
  ``enabled`` false unless the representation says otherwise.
- ``user_attribute``: one row per value with a UUID id; values over 255 characters go to
  ``long_value`` with SHA-512 hashes (``UserAttributeEntity.setValue``/``JpaHashUtils``).
  Only attributes whose values change are rewritten (the user profile updates changed ones).
- ``user_required_action``: one row per pending action.
- ``credential``: the password as ``secret_data``/``credential_data`` JSON, ``salt`` NULL,
  first credential priority 10. A new password *updates the existing password row in place*
  (same id, new data and ``created_date``), as ``PasswordCredentialProvider.createCredential``
  does ("password exists --> update existing").
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine, and_, create_engine, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from infra.local.keycloak_standin.passwords import StoredPassword, hash_password
from infra.local.keycloak_standin.queries import (
    ACTION,
    ATTRIBUTE,
    CREDENTIAL,
    METADATA,
    REALM,
    USER,
    drop_none,
    user_filters,
    user_representations,
)

#: Required-action provider ids built into Keycloak 26; others are ignored, as Keycloak only
#: adds actions that have a registered ``RequiredActionProvider``.
KNOWN_REQUIRED_ACTIONS = frozenset({
    "CONFIGURE_TOTP", "TERMS_AND_CONDITIONS", "UPDATE_PASSWORD", "UPDATE_PROFILE", "VERIFY_EMAIL",
    "VERIFY_PROFILE", "UPDATE_EMAIL", "CONFIGURE_RECOVERY_AUTHN_CODES", "delete_account", "delete_credential",
    "update_user_locale", "webauthn-register", "webauthn-register-passwordless", "idp_link",
})
ROOT_ATTRIBUTES = frozenset({"username", "email", "firstName", "lastName"})


class StoreError(Exception):
    """A request the store refuses; carries Keycloak's HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def conflict(message: str) -> StoreError:
    """Keycloak's ``ErrorResponse.exists``: 409 with an ``errorMessage``."""
    return StoreError(409, {"errorMessage": message})


@dataclass(frozen=True)
class PasswordChange:
    """A password to store: already hashed (the plaintext never reaches the store)."""

    stored: StoredPassword
    temporary: bool = False
    created_date: int | None = None


@dataclass(frozen=True)
class LoginUser:
    """What the token endpoint needs to know about a user."""

    id: str
    username: str
    enabled: bool
    email: str | None
    first_name: str | None
    last_name: str | None
    required_actions: tuple[str, ...]
    password: tuple[str, str] | None


def make_engine(dsn: str) -> Engine:
    """A pooled SQLAlchemy engine on a libpq DSN (psycopg 3)."""
    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn),
                         pool_size=4, max_overflow=4, pool_pre_ping=True)


def now_ms() -> int:
    """Current time in milliseconds (Keycloak's ``Time.currentTimeMillis``)."""
    return int(time.time() * 1000)


def provision(dsn: str, realms: Sequence[str], admin_user: str, admin_password: str) -> None:
    """Create Keycloak's account tables, realm ``master`` with its admin, and ``realms`` (idempotent).

    The admin user is created only if missing (like Keycloak's bootstrap admin): a later change of
    the configured password does not change the stored one.
    """
    engine = make_engine(dsn)
    try:
        METADATA.create_all(engine, checkfirst=True)
        with engine.begin() as conn:
            for name in dict.fromkeys(["master", *realms]):
                if conn.execute(select(REALM.c.id).where(REALM.c.name == name)).first() is None:
                    conn.execute(insert(REALM).values(id=str(uuid.uuid4()), name=name, enabled=True))
        store = AccountStore(engine)
        master = store.realm_id("master")
        assert master is not None
        if store.find_user_id(master, admin_user) is None:
            store.create_user(master, {"username": admin_user, "enabled": True},
                              [PasswordChange(hash_password(admin_password))])
    finally:
        engine.dispose()


class AccountStore:
    """Reads and writes users of Keycloak's tables; every public method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- reads -------------------------------------------------------------------------------

    def realm_id(self, name: str) -> str | None:
        """Id of the realm named ``name`` (None if it does not exist)."""
        with self.engine.connect() as conn:
            return conn.execute(select(REALM.c.id).where(REALM.c.name == name)).scalar()

    def find_user_id(self, realm_id: str, username: str) -> str | None:
        """Id of the user ``username`` (case-insensitive) in the realm."""
        with self.engine.connect() as conn:
            return _user_id_by(conn, realm_id, USER.c.username, username.lower())

    def login_user(self, realm_id: str, username: str) -> LoginUser | None:
        """The user a direct grant names: by e-mail first when it has an '@', then by username."""
        with self.engine.connect() as conn:
            user_id = None
            if "@" in username:
                user_id = _user_id_by(conn, realm_id, USER.c.email, username.lower())
            user_id = user_id or _user_id_by(conn, realm_id, USER.c.username, username.lower())
            return None if user_id is None else _login_user(conn, user_id)

    def login_user_by_id(self, realm_id: str, user_id: str) -> LoginUser | None:
        """The user a token's ``sub`` names, if it still exists in the realm."""
        with self.engine.connect() as conn:
            if conn.execute(select(USER.c.id).where(USER.c.id == user_id, USER.c.realm_id == realm_id)).first():
                return _login_user(conn, user_id)
        return None

    def get_user(self, realm_id: str, user_id: str) -> dict[str, Any] | None:
        """Keycloak's full UserRepresentation of one user (None if not in the realm)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(USER).where(USER.c.id == user_id, USER.c.realm_id == realm_id)).all()
            reps = user_representations(conn, rows, brief=False)
        return reps[0] if reps else None

    def list_users(self, realm_id: str, query: dict[str, str], first: int, maximum: int,
                   brief: bool) -> list[dict[str, Any]]:
        """Users matching ``query`` (``GET /users`` parameters), ordered by username."""
        stmt = select(USER).where(*user_filters(realm_id, query)).order_by(USER.c.username)
        stmt = stmt.offset(max(first, 0)).limit(max(maximum, 0))
        with self.engine.connect() as conn:
            return user_representations(conn, conn.execute(stmt).all(), brief)

    def count_users(self, realm_id: str, query: dict[str, str]) -> int:
        """Number of users matching ``query`` (``GET /users/count`` parameters)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(USER).where(
                *user_filters(realm_id, query))).scalar_one())

    def credentials(self, user_id: str) -> list[dict[str, Any]]:
        """The user's CredentialRepresentations without ``secretData`` (as Keycloak returns them)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(CREDENTIAL).where(CREDENTIAL.c.user_id == user_id)
                                .order_by(CREDENTIAL.c.priority)).all()
        return [drop_none({"id": r.id, "type": r.type, "userLabel": r.user_label, "createdDate": r.created_date,
                           "credentialData": r.credential_data}) for r in rows]

    # ---- writes ------------------------------------------------------------------------------

    def create_user(self, realm_id: str, rep: dict[str, Any], passwords: Sequence[PasswordChange]) -> str:
        """Insert a user from a UserRepresentation (with already-hashed passwords); return its id."""
        username = str(rep.get("username") or "").strip().lower()
        if not username:
            raise StoreError(400, {"errorMessage": "User name is missing"})
        user_id = str(uuid.uuid4())
        email = _email(rep.get("email"))
        with _duplicates_as_conflict(), self.engine.begin() as conn:
            if _user_id_by(conn, realm_id, USER.c.username, username) is not None:
                raise conflict("User exists with same username")
            if email is not None and _user_id_by(conn, realm_id, USER.c.email, email) is not None:
                raise conflict("User exists with same email")
            conn.execute(insert(USER).values(
                id=user_id, realm_id=realm_id, username=username, email=email,
                email_constraint=email or str(uuid.uuid4()), email_verified=bool(rep.get("emailVerified")),
                enabled=bool(rep.get("enabled")), first_name=_text(rep.get("firstName")),
                last_name=_text(rep.get("lastName")), not_before=0,
                created_timestamp=int(rep.get("createdTimestamp") or now_ms())))
            _write_attributes(conn, user_id, rep.get("attributes") or {}, remove_missing=False)
            _write_actions(conn, user_id, rep.get("requiredActions") or [], remove_missing=False)
            for change in passwords:
                _store_password(conn, user_id, change)
        return user_id

    def update_user(self, realm_id: str, user_id: str, rep: dict[str, Any],
                    passwords: Sequence[PasswordChange]) -> bool:
        """Apply a ``PUT /users/{id}`` representation; False if the user does not exist."""
        with _duplicates_as_conflict(), self.engine.begin() as conn:
            row = conn.execute(select(USER).where(USER.c.id == user_id, USER.c.realm_id == realm_id)
                               .with_for_update()).first()
            if row is None:
                return False
            changes: dict[str, Any] = {}
            if rep.get("username") is not None and str(rep["username"]).strip().lower() != row.username:
                raise StoreError(400, {"field": "username", "errorMessage": "error-user-attribute-read-only",
                                       "params": ["username"]})
            if rep.get("email") is not None and _email(rep["email"]) != row.email:
                email = _email(rep["email"])
                if email is not None and _user_id_by(conn, realm_id, USER.c.email, email) is not None:
                    raise conflict("User exists with same email")
                changes.update(email=email, email_constraint=email or str(uuid.uuid4()))
            for key, column in (("firstName", "first_name"), ("lastName", "last_name")):
                if rep.get(key) is not None and _text(rep[key]) != getattr(row, column):
                    changes[column] = _text(rep[key])
            for key, column in (("enabled", "enabled"), ("emailVerified", "email_verified")):
                if rep.get(key) is not None and bool(rep[key]) != getattr(row, column):
                    changes[column] = bool(rep[key])
            if changes:
                conn.execute(update(USER).where(USER.c.id == user_id).values(**changes))
            if rep.get("attributes") is not None:
                _write_attributes(conn, user_id, rep["attributes"], remove_missing=True)
            if rep.get("requiredActions") is not None:
                _write_actions(conn, user_id, rep["requiredActions"], remove_missing=True)
            for change in passwords:
                _store_password(conn, user_id, change)
        return True

    def reset_password(self, user_id: str, change: PasswordChange) -> None:
        """``PUT reset-password``: store the password; a temporary one requires UPDATE_PASSWORD."""
        with self.engine.begin() as conn:
            _store_password(conn, user_id, change)
            if not change.temporary:
                conn.execute(delete(ACTION).where(ACTION.c.user_id == user_id,
                                                  ACTION.c.required_action == "UPDATE_PASSWORD"))

    def rehash_password(self, user_id: str, old: tuple[str, str], new: StoredPassword) -> None:
        """Replace a password hash that misses the policy, keeping the row's id and created date.

        Only if the row still holds ``old`` (a concurrent password change wins).
        """
        with self.engine.begin() as conn:
            conn.execute(update(CREDENTIAL).where(
                CREDENTIAL.c.user_id == user_id, CREDENTIAL.c.type == "password",
                CREDENTIAL.c.secret_data == old[0], CREDENTIAL.c.credential_data == old[1],
            ).values(secret_data=new.secret_data, credential_data=new.credential_data))

    def delete_credential(self, user_id: str, credential_id: str) -> bool:
        """Remove one credential of the user; False if it does not exist."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(CREDENTIAL).where(CREDENTIAL.c.id == credential_id,
                                                           CREDENTIAL.c.user_id == user_id))
            return bool(result.rowcount)

    def delete_user(self, realm_id: str, user_id: str) -> bool:
        """Remove the user and its attribute, required-action and credential rows; False if absent."""
        with self.engine.begin() as conn:
            if conn.execute(select(USER.c.id).where(USER.c.id == user_id, USER.c.realm_id == realm_id)
                            .with_for_update()).first() is None:
                return False
            for table in (CREDENTIAL, ATTRIBUTE, ACTION):
                conn.execute(delete(table).where(table.c.user_id == user_id))
            conn.execute(delete(USER).where(USER.c.id == user_id))
            return True


# ---- helpers ---------------------------------------------------------------------------------

@contextmanager
def _duplicates_as_conflict() -> Iterator[None]:
    """A unique-constraint race (two creates at once) answers 409 like ``ModelDuplicateException``."""
    try:
        yield
    except IntegrityError as exc:
        raise conflict("User exists with same username or email") from exc


def _user_id_by(conn: Connection, realm_id: str, column: Any, value: str) -> str | None:
    return conn.execute(select(USER.c.id).where(USER.c.realm_id == realm_id, column == value)).scalar()


def _login_user(conn: Connection, user_id: str) -> LoginUser:
    row = conn.execute(select(USER).where(USER.c.id == user_id)).one()
    actions = tuple(conn.execute(select(ACTION.c.required_action).where(ACTION.c.user_id == user_id)
                                 .order_by(ACTION.c.required_action)).scalars())
    cred = conn.execute(select(CREDENTIAL.c.secret_data, CREDENTIAL.c.credential_data).where(
        CREDENTIAL.c.user_id == user_id, CREDENTIAL.c.type == "password").order_by(CREDENTIAL.c.priority)).first()
    return LoginUser(row.id, row.username, bool(row.enabled), row.email, row.first_name, row.last_name,
                     actions, None if cred is None else (cred[0], cred[1]))


def _text(value: Any) -> str | None:
    text = None if value is None else str(value)
    return text or None


def _email(value: Any) -> str | None:
    text = _text(value)
    return None if text is None else text.strip().lower() or None


def _values(raw: Any) -> list[str]:
    items: Iterable[Any] = raw if isinstance(raw, list) else [raw]
    return [str(v) for v in items if v is not None]


def _write_attributes(conn: Connection, user_id: str, attributes: dict[str, Any], remove_missing: bool) -> None:
    wanted = {name: _values(raw) for name, raw in attributes.items() if name not in ROOT_ATTRIBUTES}
    current: dict[str, list[str]] = {}
    for a in conn.execute(select(ATTRIBUTE).where(ATTRIBUTE.c.user_id == user_id)):
        current.setdefault(a.name, []).append(a.long_value if a.value is None else a.value)
    for name in current.keys() - wanted.keys() if remove_missing else ():
        conn.execute(delete(ATTRIBUTE).where(ATTRIBUTE.c.user_id == user_id, ATTRIBUTE.c.name == name))
    for name, values in wanted.items():
        if sorted(values) == sorted(current.get(name, [])):
            continue
        conn.execute(delete(ATTRIBUTE).where(ATTRIBUTE.c.user_id == user_id, ATTRIBUTE.c.name == name))
        for value in values:
            conn.execute(insert(ATTRIBUTE).values(id=str(uuid.uuid4()), user_id=user_id, name=name,
                                                  **_attribute_value(value)))


def _attribute_value(value: str) -> dict[str, Any]:
    if len(value) <= 255:
        return {"value": value, "long_value": None, "long_value_hash": None, "long_value_hash_lower_case": None}
    return {"value": None, "long_value": value, "long_value_hash": hashlib.sha512(value.encode()).digest(),
            "long_value_hash_lower_case": hashlib.sha512(value.lower().encode()).digest()}


def _write_actions(conn: Connection, user_id: str, requested: Iterable[Any], remove_missing: bool) -> None:
    wanted = {str(a) for a in requested} & KNOWN_REQUIRED_ACTIONS
    current = set(conn.execute(select(ACTION.c.required_action).where(ACTION.c.user_id == user_id)).scalars())
    for action in sorted(wanted - current):
        conn.execute(insert(ACTION).values(user_id=user_id, required_action=action))
    if remove_missing and current - wanted:
        conn.execute(delete(ACTION).where(ACTION.c.user_id == user_id,
                                          ACTION.c.required_action.in_(sorted(current - wanted))))


def _store_password(conn: Connection, user_id: str, change: PasswordChange) -> None:
    created = change.created_date or now_ms()
    existing = conn.execute(select(CREDENTIAL.c.id).where(
        CREDENTIAL.c.user_id == user_id, CREDENTIAL.c.type == "password").order_by(CREDENTIAL.c.priority)).first()
    values = {"secret_data": change.stored.secret_data, "credential_data": change.stored.credential_data,
              "created_date": created}
    if existing is not None:
        conn.execute(update(CREDENTIAL).where(CREDENTIAL.c.id == existing[0]).values(**values))
    else:
        top = conn.execute(select(func.max(CREDENTIAL.c.priority)).where(CREDENTIAL.c.user_id == user_id)).scalar()
        conn.execute(insert(CREDENTIAL).values(id=str(uuid.uuid4()), user_id=user_id, type="password", salt=None,
                                               user_label=None, priority=(top or 0) + 10, **values))
    if change.temporary:
        has = conn.execute(select(ACTION.c.user_id).where(and_(
            ACTION.c.user_id == user_id, ACTION.c.required_action == "UPDATE_PASSWORD"))).first()
        if has is None:
            conn.execute(insert(ACTION).values(user_id=user_id, required_action="UPDATE_PASSWORD"))
