"""Keycloak account capture: Debezium records of Keycloak's own account tables -> one change
event per changed account.

Keycloak writes ``user_entity``, ``credential``, ``user_attribute`` and
``user_required_action`` in its own transactions, which carry no API marker. So after each
batch the converter collects the users those rows belong to, reads each account's *current*
state from Keycloak's database (consistent, and coalescing bursts), and emits it:

- the API is inferred: a user created in the batch -> ``PRV_STF_003`` (staff registration
  including credentials), any other change -> ``PRV_ATH_001`` (authentication update); both
  route ``keycloak`` -> ``keycloak`` per the matrix;
- an account whose fingerprint equals what the engine itself just applied for that username
  on this side is an echo and is dropped (loop prevention without a marker). Each apply is
  recognised once (by its apply token): a later genuine change back to that state is sent.
  An account equal to the state last sent or received for that username is not sent again
  (Keycloak may rewrite rows without changing the account);
- only users of the synced realm count: a user of another realm or a service account is
  ignored, also when it is deleted;
- ``version`` is the source LSN, which orders the changes of one side;
- sync probes arrive as transactional logical-decoding messages (prefix ``platsync_probe``),
  because Keycloak's schema is not ours to extend.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.capture.envelope import EnvelopeError
from connectors.keycloak.accounts import ACCOUNT_TABLE, Account, account_to_row
from connectors.keycloak.crypto import KeyRing
from streams.core.model import ChangeEvent

PROBE_PREFIX = "platsync_probe"
STORE = "keycloak"
USERNAME_CACHE_MAX = 100_000


@dataclass
class _Touched:
    lsn: int = 0
    txid: int = 0
    commit_ts_ms: int = 0
    created: bool = False


@dataclass
class KeycloakAccountConverter:
    """Stateful per capture; ``convert`` per record, ``finish_batch`` emits the accounts."""

    side: str
    read_accounts: Callable[[list[str]], dict[str, Account]]
    #: username -> (fingerprint the sink recorded, token that changes with every apply)
    applied_fingerprints: Callable[[list[str]], dict[str, tuple[str, str]]]
    ring: KeyRing
    #: id of the synced realm in Keycloak's ``realm`` table (None while it cannot be read)
    synced_realm_id: Callable[[], str | None]
    clock: Callable[[], float] = time.time
    events: int = 0
    echoes_dropped: int = 0
    probes: int = 0
    ignored: int = 0
    unchanged: int = 0
    last_lsn: int = 0
    last_commit_ts_ms: int = 0
    #: Changes whenever :meth:`markers_state` would (the capture saves the state only then).
    markers_version: int = 0
    _touched: dict[str, _Touched] = field(default_factory=dict)
    _probes: list[ChangeEvent] = field(default_factory=list)
    _usernames: dict[str, str] = field(default_factory=dict)
    #: Last state known to be on both sides per username (emitted by us, or applied from the other side).
    _known: dict[str, str] = field(default_factory=dict)
    #: Apply token per username already recognised as an echo.
    _consumed: dict[str, str] = field(default_factory=dict)
    _realm_id: str | None = None

    def convert(self, key_json: str | None, value_json: str | None) -> list[ChangeEvent]:
        """Remember what one Debezium record touched; events come from :meth:`finish_batch`."""
        if value_json is None:
            return []
        try:
            payload = json.loads(value_json)
        except ValueError as exc:
            raise EnvelopeError(f"keycloak capture: record is not JSON: {exc}") from None
        payload = payload.get("payload", payload) if isinstance(payload, dict) else None
        if not isinstance(payload, dict):
            raise EnvelopeError("keycloak capture: record is not a Debezium envelope")
        op, source = payload.get("op"), payload.get("source") or {}
        lsn, txid, ts = int(source.get("lsn") or 0), int(source.get("txId") or 0), int(source.get("ts_ms") or 0)
        if op == "m":
            self._message(payload, lsn, txid, ts)
            return []
        if op not in ("c", "u", "d", "r"):
            self.ignored += 1
            return []
        table = source.get("table")
        before, after = payload.get("before") or {}, payload.get("after") or {}
        for image in (before, after):
            if table == "user_entity" and image.get("id") and image.get("username") and self._synced_user(image):
                self._remember(image["id"], image["username"])
        user_id = (after or before).get("id" if table == "user_entity" else "user_id")
        if not user_id:
            self.ignored += 1
            return []
        touched = self._touched.setdefault(user_id, _Touched())
        touched.lsn, touched.txid = max(touched.lsn, lsn), txid
        touched.commit_ts_ms = max(touched.commit_ts_ms, ts)
        touched.created |= table == "user_entity" and op == "c"
        return []

    def _message(self, payload: dict[str, Any], lsn: int, txid: int, ts: int) -> None:
        message = payload.get("message") or {}
        if message.get("prefix") != PROBE_PREFIX:
            self.ignored += 1
            return
        content = message.get("content") or ""
        try:
            probe_id = base64.b64decode(content).decode() if content else ""
        except ValueError:
            probe_id = str(content)
        self.probes += 1
        self._probes.append(ChangeEvent(
            event_id=f"{self.side}.{STORE}:{lsn}:probe", source_side=self.side, source_store=STORE,
            table="platsync_probe", op="probe", key=probe_id, version=0, row=None, api_id=None, call_id=None,
            origin_side=self.side, lsn=lsn, txid=txid, commit_ts_ms=ts, captured_ts_ms=int(self.clock() * 1000)))

    def _synced_user(self, image: dict[str, Any]) -> bool:
        """A user_entity image of the synced realm that is not a service account."""
        if self._realm_id is None:
            self._realm_id = self.synced_realm_id()
        return image.get("realm_id") == self._realm_id and not image.get("service_account_client_link")

    def _remember(self, user_id: str, username: str) -> None:
        if len(self._usernames) >= USERNAME_CACHE_MAX:
            self._usernames.pop(next(iter(self._usernames)))
        self._usernames[user_id] = username

    def _know(self, username: str, fingerprint: str) -> None:
        if self._known.get(username) == fingerprint:
            return
        if username not in self._known and len(self._known) >= USERNAME_CACHE_MAX:
            self._known.pop(next(iter(self._known)))
        self._known[username] = fingerprint
        self.markers_version += 1

    def finish_batch(self) -> list[ChangeEvent]:
        """One event per account changed in the batch (echoes dropped), then the probes, in LSN order."""
        touched, self._touched = self._touched, {}
        probes, self._probes = self._probes, []
        accounts = self.read_accounts(list(touched)) if touched else {}
        for user_id, account in accounts.items():
            self._remember(user_id, account.username)
        current: dict[str, tuple[Account, _Touched]] = {}
        for user_id, info in touched.items():
            account = accounts.get(user_id)
            if account is None:
                username = self._usernames.get(user_id)
                if username is None:
                    self.ignored += 1  # never seen: a user of another realm, or a service account
                    continue
                account = Account(username=username, enabled=False, deleted=True)
            current[account.username] = (account, info)
        applied = self.applied_fingerprints(list(current)) if current else {}
        events: list[ChangeEvent] = []
        for username, (account, info) in current.items():
            fingerprint = account.fingerprint()
            applied_fp, token = applied.get(username, (None, None))
            if applied_fp == fingerprint and self._consumed.get(username) != token:
                self.echoes_dropped += 1
                self._consumed[username] = str(token)
            elif self._known.get(username) == fingerprint:
                self.unchanged += 1  # rows were rewritten but the account is what we already sent
            else:
                events.append(self._event(account, info, self._known.get(username)))
            self._know(username, fingerprint)
        events.extend(probes)
        events.sort(key=lambda e: e.lsn)
        self.events += len(events)
        for event in events:
            self.last_lsn = max(self.last_lsn, event.lsn)
            self.last_commit_ts_ms = max(self.last_commit_ts_ms, event.commit_ts_ms)
        return events

    def _event(self, account: Account, info: _Touched, base: str | None) -> ChangeEvent:
        op = "d" if account.deleted else ("c" if info.created else "u")
        return ChangeEvent(
            # The state last known on both sides: the sink tells a fast-forward from a conflict by it.
            before=None if base is None else {"fingerprint": base},
            event_id=f"{self.side}.{STORE}:{info.lsn}:{account.username}", source_side=self.side,
            source_store=STORE, table=ACCOUNT_TABLE, op=op, key=account.username, version=info.lsn,
            row=account_to_row(account, self.ring), api_id="PRV_STF_003" if info.created else "PRV_ATH_001",
            call_id=None, origin_side=self.side, lsn=info.lsn, txid=info.txid, commit_ts_ms=info.commit_ts_ms,
            captured_ts_ms=int(self.clock() * 1000))

    # Accounts are re-read, not stamped: what survives a restart is the state known on both sides.
    def markers_state(self) -> dict[str, Any]:
        """The last state known on both sides per username (the base of the next change)."""
        return {"known": dict(self._known)}

    def restore_markers(self, state: dict[str, Any]) -> None:
        """Restore :meth:`markers_state` (before the first batch)."""
        known = state.get("known") or {}
        if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
            raise EnvelopeError("saved Keycloak account states are malformed")
        self._known.update(known)
        self.markers_version += 1

    def markers_since(self, version: int) -> None:  # noqa: ARG002 - the Stamping protocol's signature
        """Always None: an account state can change in place, so only a whole snapshot is saved."""
        return None
