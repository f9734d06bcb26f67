"""Sink for Keycloak accounts (Admin REST API through python-keycloak).

Each account write is one Admin API request (create, or update with the hashed credential in
the same representation), so Keycloak commits it in one transaction and the other side's
capture never sees a half-applied account. Guarded by ``platsync_keycloak_applied`` in this
side's META database:

1. before the request, the fingerprint of the state about to be applied is recorded with a
   fresh ``applied_at`` (the apply token); this side's capture drops an account whose state has
   exactly that fingerprint, once per token (an echo);
2. after the request succeeded, the applied version (the source LSN) is recorded; a write with
   a version not newer than the applied one from the same origin is stale and skipped, so a
   replay never puts an older state back;
3. an account changed on this side since the state the incoming change was based on is a
   conflict, decided identically on both sides and recorded (``keycloak_conflicts``).

Keycloak unreachable or answering 5xx -> :class:`StoreUnavailableError` (the batch is retried
with back-off); a 409 on create means the user exists -> it is updated instead (idempotent);
other 4xx, an undecryptable credential or a malformed row -> rejected (dead letter).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from connectors.keycloak.accounts import Account, read_accounts_by_username, row_to_account
from connectors.keycloak.admin import (
    KeycloakError,
    KeycloakRejectedError,
    KeycloakUnavailableError,
    KeycloakUserExistsError,
    accounts_for,
)
from connectors.keycloak.crypto import CredentialKeyError, KeyRing, key_ring_for
from connectors.sinks.base import RejectedWrite, SinkResult, StoreUnavailableError
from connectors.sinks.keycloak_conflicts import account_winner, is_conflict, record_conflict
from streams.core.model import Write
from streams.runtime.connections import keycloak_db_dsn, libpq_dsn
from streams.runtime.settings import Settings

RECORD_FINGERPRINT = """
INSERT INTO platsync_keycloak_applied (username, origin_side, version, fingerprint)
VALUES (%(username)s, %(origin)s, 0, %(fingerprint)s)
ON CONFLICT (username) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, applied_at = clock_timestamp()
"""
RECORD_VERSION = """
UPDATE platsync_keycloak_applied SET origin_side = %(origin)s, version = %(version)s
WHERE username = %(username)s
"""


class KeycloakSink:
    """Applies routed account writes to one side's Keycloak realm."""

    store = "keycloak"

    def __init__(self, settings: Settings, side: str, ring: KeyRing | None = None) -> None:
        self.side = side
        self._meta = libpq_dsn(settings, side, "meta", "apply") + " connect_timeout=5"
        self._keycloak_db = keycloak_db_dsn(settings, side, "apply") + " connect_timeout=5"
        self._realm = settings.keycloak_realm
        self._ring = ring or key_ring_for(settings)
        self._accounts = accounts_for(settings, side)

    def setup(self) -> None:
        """Fail fast with a clear error for an unknown realm or bad admin credentials."""
        self._accounts.check()

    def apply_batch(self, writes: Sequence[Write], origin_side: str) -> SinkResult:
        """Apply the newest write per username; see the module docstring for the guarantees."""
        latest: dict[str, Write] = {}
        for w in writes:
            if w.key not in latest or w.version > latest[w.key].version:
                latest[w.key] = w
        result = SinkResult(stale=len(writes) - len(latest))
        try:
            with psycopg.connect(self._meta, autocommit=True) as meta:
                applied = {u: (o, v, f) for u, o, v, f in meta.execute(
                    "SELECT username, origin_side, version, fingerprint FROM platsync_keycloak_applied "
                    "WHERE username = ANY(%s)", (list(latest),)).fetchall()}
                current = self._current(list(latest))
                for username, w in latest.items():
                    prior = applied.get(username)
                    if prior is not None and prior[0] == origin_side and prior[1] >= w.version:
                        result.stale += 1
                        continue
                    try:
                        account = self._account(w)
                    except (CredentialKeyError, ValueError, KeyError, TypeError) as exc:
                        result.rejected.append(RejectedWrite(w, f"{type(exc).__name__}: {exc}", _hint(exc)))
                        continue
                    base = (w.before or {}).get("fingerprint") if w.before else None
                    if is_conflict(account, current.get(username), base if isinstance(base, str) else None,
                                   prior[2] if prior is not None else None):
                        wins, rule = account_winner(account, current[username])
                        record_conflict(meta, self.side, origin_side, account, current[username], wins, rule,
                                        w.api_id, w.event_id)
                        if not wins:
                            result.stale += 1
                            continue
                    params = {"username": username, "origin": origin_side, "version": w.version,
                              "fingerprint": account.fingerprint()}
                    meta.execute(RECORD_FINGERPRINT, params)
                    try:
                        self._apply(account)
                    except KeycloakRejectedError as exc:
                        result.rejected.append(RejectedWrite(w, str(exc), "Keycloak refused the account; check "
                                                             "the realm's user profile and the source account"))
                        continue
                    meta.execute(RECORD_VERSION, params)
                    result.applied += 1
        except KeycloakUnavailableError as exc:
            raise StoreUnavailableError(f"{self.side}/keycloak: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"{self.side}/meta (keycloak guard): {exc}") from exc
        return result

    def _current(self, usernames: list[str]) -> dict[str, Account]:
        """This side's current accounts (read from Keycloak's database, as the capture does)."""
        try:
            with psycopg.connect(self._keycloak_db) as conn:
                return read_accounts_by_username(conn, self._realm, usernames)
        except psycopg.OperationalError as exc:
            raise KeycloakUnavailableError(f"Keycloak's database: {exc}") from exc

    def _account(self, w: Write) -> Account:
        if w.row is None:
            return Account(username=w.key, enabled=False, deleted=True)
        account = row_to_account(w.row, self._ring)
        if account.username != w.key:
            raise ValueError(f"row username {account.username!r} disagrees with the change key {w.key!r}")
        return account

    def _apply(self, account: Account) -> None:
        existing = self._accounts.find_user(account.username)
        if account.deleted:
            if existing is not None:
                self._accounts.delete_user(existing["id"])
            return
        rep = account.to_representation()
        if existing is None:
            try:
                self._accounts.create_user(rep)
                return
            except KeycloakUserExistsError:
                existing = self._accounts.find_user(account.username)
                if existing is None:
                    raise
        self._accounts.update_user(existing["id"], rep)

    def close(self) -> None:
        """Nothing to release (HTTP connections are per request)."""


def _hint(exc: BaseException) -> str:
    if isinstance(exc, CredentialKeyError):
        return "the credential was encrypted with a key this side lacks: align credential_keys on both sides"
    if isinstance(exc, KeycloakError):
        return "check the Keycloak realm and the account on the source side"
    return "the account row is malformed; check the capture and schemas/change_event.avsc versions"

