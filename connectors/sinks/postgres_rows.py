"""Sink for the PostgreSQL-backed stores (META and the FRUCtoS adapter's signed records).

One transaction per batch: first a ``platsync_txn_marker`` row saying the engine applied
these changes on behalf of ``origin_side`` (the capture of this side drops them, so they are
never sent back), then one version-guarded statement per write:

- upsert: insert, or update only if the stored version is older, and never over a tombstone
  of the same or a newer version;
- delete: remove the row only if its version is not newer, and leave a tombstone so a late
  update cannot resurrect it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Table

from connectors.sinks.base import RejectedWrite, SinkResult, StoreUnavailableError
from connectors.stores.tables import SYNCED_TABLES, coerce_row, metadata_for
from streams.model import Write
from streams.settings import Settings

APPLY_API_ID = "PLATSYNC_APPLY"


def _upsert_sql(table: Table) -> str:
    cols = [c.name for c in table.columns]
    names = ", ".join(cols)
    params = ", ".join(f"%({c})s" for c in cols)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {params} "
        f"WHERE NOT EXISTS (SELECT 1 FROM platsync_tombstone t WHERE t.table_name = '{table.name}' "
        f"AND t.id = %(id)s AND t.version >= %(version)s) "
        f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE {table.name}.version < EXCLUDED.version"
    )


def _delete_sql(table: Table) -> tuple[str, str]:
    return (
        f"DELETE FROM {table.name} WHERE id = %(id)s AND version <= %(version)s",
        "INSERT INTO platsync_tombstone (table_name, id, version) VALUES "
        f"('{table.name}', %(id)s, %(version)s) ON CONFLICT (table_name, id) DO UPDATE "
        "SET version = EXCLUDED.version WHERE platsync_tombstone.version < EXCLUDED.version",
    )


def _latest_per_key(writes: Sequence[Write]) -> list[Write]:
    """Keep, per (table, key), only the highest version: the guard makes the rest no-ops."""
    best: dict[tuple[str, str], Write] = {}
    for w in writes:
        k = (w.table, w.key)
        if k not in best or w.version > best[k].version or (
                w.version == best[k].version and w.op == "delete"):
            best[k] = w
    return list(best.values())


class PostgresRowSink:
    """Applies routed writes to one PostgreSQL store database of one side."""

    def __init__(self, settings: Settings, side: str, store: str) -> None:
        self.side = side
        self.store = store
        self._conninfo = settings.libpq_dsn(side, store) + " connect_timeout=5"
        self._tables = {name: metadata_for(store).tables[name] for name in SYNCED_TABLES[store]}
        self._conn: psycopg.Connection[Any] | None = None

    def setup(self) -> None:
        """Connect and check that every synced table exists."""
        conn = self._connect()
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
        conn.rollback()
        missing = set(self._tables) - {r[0] for r in rows}
        if missing:
            raise RuntimeError(f"{self.side}/{self.store}: tables missing: {sorted(missing)}; "
                               "run 'platsync up' once to provision the stores")

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._conninfo)
            except psycopg.OperationalError as exc:
                raise StoreUnavailableError(f"{self.side}/{self.store} unreachable: {exc}") from exc
        return self._conn

    def apply_batch(self, writes: Sequence[Write], origin_side: str) -> SinkResult:
        """Apply ``writes`` in one transaction; isolate and reject bad rows if the batch fails."""
        latest = _latest_per_key(writes)
        result = SinkResult(stale=len(writes) - len(latest))
        if not latest:
            return result
        conn = self._connect()
        try:
            try:
                with conn.transaction():
                    self._mark(conn, origin_side)
                    result.applied = self._apply_all(conn, latest)
            except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError,
                    KeyError, ValueError, TypeError):
                # Something in the batch is bad: redo it write by write, each in a savepoint.
                result = SinkResult(stale=len(writes) - len(latest))
                with conn.transaction():
                    self._mark(conn, origin_side)
                    for w in latest:
                        try:
                            with conn.transaction():
                                result.applied += self._apply_one(conn, w)
                        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError,
                                KeyError, ValueError, TypeError) as exc:
                            result.rejected.append(RejectedWrite(w, f"{type(exc).__name__}: {exc}", _hint(exc)))
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreUnavailableError(f"{self.side}/{self.store}: {exc}") from exc
        result.stale += len(latest) - result.applied - len(result.rejected)
        return result

    def _mark(self, conn: psycopg.Connection[Any], origin_side: str) -> None:
        conn.execute(
            "INSERT INTO platsync_txn_marker (api_id, origin_side, applied_by_sync) VALUES (%s, %s, true)",
            (APPLY_API_ID, origin_side))

    def _apply_all(self, conn: psycopg.Connection[Any], writes: Sequence[Write]) -> int:
        """Apply many writes with one pipelined ``executemany`` per (table, op)."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for w in writes:
            params = {"id": w.key, "version": w.version} if w.op == "delete" else self._upsert_params(w)
            groups.setdefault((w.table, w.op), []).append(params)
        applied = 0
        with conn.cursor() as cur:
            for (table_name, op), rows in groups.items():
                table = self._tables[table_name]
                if op == "delete":
                    delete_sql, tomb_sql = _delete_sql(table)
                    cur.executemany(delete_sql, rows)
                    applied += max(cur.rowcount, 0)
                    cur.executemany(tomb_sql, rows)
                else:
                    cur.executemany(_upsert_sql(table), rows)
                    applied += max(cur.rowcount, 0)
        return applied

    def _apply_one(self, conn: psycopg.Connection[Any], w: Write) -> int:
        if w.op == "delete":
            delete_sql, tomb_sql = _delete_sql(self._table(w))
            params = {"id": w.key, "version": w.version}
            cur = conn.execute(delete_sql, params)
            conn.execute(tomb_sql, params)
            return 1 if cur.rowcount else 0
        cur = conn.execute(_upsert_sql(self._table(w)), self._upsert_params(w))
        return 1 if cur.rowcount else 0

    def _table(self, w: Write) -> Table:
        table = self._tables.get(w.table)
        if table is None:
            raise KeyError(f"table {w.table!r} is not synced in store {self.store!r}")
        return table

    def _upsert_params(self, w: Write) -> dict[str, Any]:
        table = self._table(w)
        if w.row is None:
            raise ValueError(f"upsert of {w.table}/{w.key} carries no row")
        row = coerce_row(table, w.row)
        missing = [c.name for c in table.columns if c.name not in row]
        if missing:
            raise ValueError(f"row {w.table}/{w.key} lacks columns {missing}")
        if "content" in row and "content_hash" in row:
            digest = hashlib.sha256(row["content"]).hexdigest()
            if digest != row["content_hash"]:
                raise ValueError(f"content_hash {row['content_hash']} does not match content (sha256 {digest})")
        if row.get("id") != w.key or row.get("version") != w.version:
            raise ValueError(f"row {w.table}/{w.key} disagrees with its change key/version")
        return row

    def close(self) -> None:
        """Close the connection (reconnects lazily on the next batch)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _hint(exc: BaseException) -> str:
    if isinstance(exc, psycopg.IntegrityError):
        return ("the target store refused the row (constraint); fix the row on the source side: "
                "its next version syncs again")
    if isinstance(exc, KeyError):
        return "the change names a table or column the target store does not have; align the store schemas"
    if "content_hash" in str(exc):
        return "the signed record's content does not match its hash; re-sign the record on the source side"
    return "the value does not fit the target column; fix the source row: its next version syncs again"
