"""Re-capture: publish the current state of every synced row a side's APIs wrote.

Used when the broker lost its log (the embedded broker keeps it in memory, so a ``kill -9``
of the broker loses what it held) and by operators after any loss of the topics. The
captures' positions have moved past changes the broker no longer has; re-sending the current
state of each row is enough, because every sink apply is state-based, idempotent and
version-guarded (an older or identical state changes nothing).

Which API wrote a row is recovered exactly, with no extra column: PostgreSQL's ``xmin`` of the
row is the (32-bit) id of the transaction that last wrote it, and every API transaction left a
``platsync_txn_marker`` row with its 64-bit ``txid``. The rules are the capture's own:

- last written by this side's API -> re-sent as op ``r`` with that API id and call id;
- last written by the sync engine (the state came from the other side) -> not re-sent: the
  other side's re-capture sends it (no echo);
- no marker (written outside the APIs) -> not re-sent, counted: the live capture sends such
  changes to the dead-letter topic as unmarked, and re-capture does not invent an API for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from connectors.keycloak.accounts import ACCOUNT_TABLE, account_to_row, read_accounts
from connectors.keycloak.crypto import key_ring_for
from connectors.stores.tables import sent_rows, sent_tables
from streams.core.model import ChangeEvent, RowValue
from streams.runtime.connections import keycloak_db_dsn, libpq_dsn
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

BATCH_ROWS = 5000
_XID_MODULUS = 2**32


@dataclass
class ResyncReport:
    """What one side's re-capture sent and skipped, per store."""

    side: str
    sent: dict[str, int] = field(default_factory=dict)
    echoes_skipped: dict[str, int] = field(default_factory=dict)
    unmarked_skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per store for operators."""
        return "; ".join(f"{self.side}/{store}: {self.sent.get(store, 0)} re-sent, "
                         f"{self.echoes_skipped.get(store, 0)} from the other side skipped, "
                         f"{self.unmarked_skipped.get(store, 0)} without API marker skipped"
                         for store in dict.fromkeys([*self.sent, *self.echoes_skipped, *self.unmarked_skipped]))


@dataclass(frozen=True)
class _Marker:
    api_id: str
    call_id: str | None
    origin_side: str
    applied_by_sync: bool
    txid: int
    created_ms: int


def _wire(value: Any) -> RowValue:
    """A column value in the form the live capture produces (Debezium ``isostring`` times)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _markers(conn: psycopg.Connection[Any]) -> dict[int, _Marker]:
    """The latest marker per 32-bit transaction id."""
    rows = conn.execute(
        "SELECT txid, api_id, call_id, origin_side, applied_by_sync, "
        "(extract(epoch from created_at) * 1000)::bigint FROM platsync_txn_marker ORDER BY id").fetchall()
    return {txid % _XID_MODULUS: _Marker(api, call, origin, bool(by_sync), txid, created)
            for txid, api, call, origin, by_sync, created in rows}


def resync_store(settings: Settings, side: str, store: str,
                 publish: Callable[[list[ChangeEvent]], None], report: ResyncReport,
                 now_ms: Callable[[], int]) -> None:
    """Publish the current state of every row of ``store`` on ``side`` last written by its APIs."""
    sent = echoes = unmarked = 0
    with psycopg.connect(libpq_dsn(settings, side, store, "capture")) as conn:
        lsn = conn.execute("SELECT (pg_current_wal_lsn() - '0/0')::bigint").fetchone()[0]
        markers = _markers(conn)
        conn.commit()
        for table in sent_tables(store, side):
            for batch in _rows(conn, table):
                events = []
                for xmin, row in batch:
                    marker = markers.get(xmin)
                    if marker is None:
                        unmarked += 1
                        continue
                    if marker.applied_by_sync or marker.origin_side != side:
                        echoes += 1
                        continue
                    events.append(_event(side, store, table, row, marker, lsn, sent + len(events), now_ms()))
                if events:
                    publish(events)
                    sent += len(events)
    report.sent[store] = sent
    report.echoes_skipped[store] = echoes
    report.unmarked_skipped[store] = unmarked
    if unmarked:
        log.warning("%s/%s: %d row(s) last written outside the APIs (no marker) were not re-sent",
                    side, store, unmarked)


def _event(side: str, store: str, table: str, row: dict[str, Any], marker: _Marker, lsn: int, seq: int,
           now_ms: int) -> ChangeEvent:
    """The re-capture event (op ``r``) of a row's current state, with the API of its marker."""
    return ChangeEvent(
        event_id=f"{side}.{store}:resync:{lsn}:{seq}", source_side=side, source_store=store, table=table, op="r",
        key=str(row["id"]), version=int(row["version"]), row={k: _wire(v) for k, v in row.items()},
        api_id=marker.api_id, call_id=marker.call_id, origin_side=side, lsn=lsn, txid=marker.txid,
        commit_ts_ms=marker.created_ms, captured_ts_ms=now_ms)


def resync_rows(settings: Settings, side: str, store: str, table: str, ids: list[str],
                now_ms: Callable[[], int]) -> tuple[list[ChangeEvent], dict[str, str]]:
    """The re-capture events of the rows ``ids`` of one table, by the rules of :func:`resync_store`, and for
    each row not re-sent why: ``missing`` (no such live row), ``echo`` (its state came from the other side)
    or ``unmarked`` (written outside the APIs)."""
    events: list[ChangeEvent] = []
    skipped: dict[str, str] = {}
    with psycopg.connect(libpq_dsn(settings, side, store, "capture")) as conn:
        lsn = conn.execute("SELECT (pg_current_wal_lsn() - '0/0')::bigint").fetchone()[0]
        markers = _markers(conn)
        cur = conn.execute(f"SELECT xmin::text::bigint AS platsync_xmin, t.* FROM {table} t "  # noqa: S608
                           f"WHERE ({sent_rows(table)}) AND id::text = ANY(%s) ORDER BY id", (ids,))
        columns = [d.name for d in cur.description or []]
        rows = [(int(r[0]), dict(zip(columns[1:], r[1:], strict=True))) for r in cur.fetchall()]
    found = {str(row["id"]): (xmin, row) for xmin, row in rows}
    for row_id in ids:
        if row_id not in found:
            skipped[row_id] = "missing"
            continue
        xmin, row = found[row_id]
        marker = markers.get(xmin)
        if marker is None:
            skipped[row_id] = "unmarked"
        elif marker.applied_by_sync or marker.origin_side != side:
            skipped[row_id] = "echo"
        else:
            events.append(_event(side, store, table, row, marker, lsn, len(events), now_ms()))
    return events, skipped


def _rows(conn: psycopg.Connection[Any], table: str) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Every row of ``table`` with the 32-bit id of the transaction that last wrote it, in batches."""
    with conn.transaction(), conn.cursor(name=f"resync_{table}") as cur:
        cur.itersize = BATCH_ROWS
        cur.execute(f"SELECT xmin::text::bigint AS platsync_xmin, t.* FROM {table} t "  # noqa: S608
                    f"WHERE {sent_rows(table)} ORDER BY id")
        columns = [d.name for d in cur.description or []]
        while rows := cur.fetchmany(BATCH_ROWS):
            yield [(int(r[0]), dict(zip(columns[1:], r[1:], strict=True))) for r in rows]


def resync_keycloak(settings: Settings, side: str, publish: Callable[[list[ChangeEvent]], None],
                    report: ResyncReport, now_ms: Callable[[], int]) -> None:
    """Publish the current state of every account of the synced realm on ``side``.

    An account whose state is the one the engine last applied from the other side is skipped
    (the other side re-sends it). The version is the Keycloak database's current LSN, newer than
    anything this side sent before, as the live capture's versions are source LSNs.
    """

    ring = key_ring_for(settings)
    with psycopg.connect(keycloak_db_dsn(settings, side, "capture")) as conn:
        lsn = conn.execute("SELECT (pg_current_wal_lsn() - '0/0')::bigint").fetchone()[0]
        ids = [r[0] for r in conn.execute(
            "SELECT u.id FROM user_entity u JOIN realm r ON r.id = u.realm_id WHERE r.name = %s "
            "AND u.service_account_client_link IS NULL ORDER BY u.username", (settings.keycloak_realm,))]
        accounts = read_accounts(conn, settings.keycloak_realm, ids)
    with psycopg.connect(libpq_dsn(settings, side, "meta", "capture")) as meta:
        applied = dict(meta.execute("SELECT username, fingerprint FROM platsync_keycloak_applied").fetchall())
    events, echoes = [], 0
    for account in accounts.values():
        if applied.get(account.username) == account.fingerprint():
            echoes += 1
            continue
        events.append(ChangeEvent(
            event_id=f"{side}.keycloak:resync:{lsn}:{account.username}", source_side=side, source_store="keycloak",
            table=ACCOUNT_TABLE, op="r", key=account.username, version=lsn, row=account_to_row(account, ring),
            api_id="PRV_ATH_001", call_id=None, origin_side=side, lsn=lsn, txid=0, commit_ts_ms=now_ms(),
            captured_ts_ms=now_ms()))
    if events:
        publish(events)
    report.sent["keycloak"] = len(events)
    report.echoes_skipped["keycloak"] = echoes
