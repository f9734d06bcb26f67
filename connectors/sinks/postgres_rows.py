"""Sink for the PostgreSQL-backed stores (META and the FRUCtoS adapter's signed records).

One transaction per batch: first a ``platsync_txn_marker`` row saying the engine applied
these changes on behalf of ``origin_side`` (the capture of this side drops them, so they are
never sent back), then, per table, the rows concerned are read and locked in one
``SELECT ... WHERE id = ANY(...) ORDER BY id FOR UPDATE`` and every write is decided in Python
by :func:`connectors.sinks.conflict_rule.decide` (see ``docs/conflicts.md``):

- upsert of a row this store does not hold: insert, never over a tombstone of the same or a
  newer version;
- the same state, or a replay (not above the greatest state received from the other side for
  the row, kept in ``platsync_row_sync``): nothing;
- a fast-forward (the row is the state the change was made on, or the last state received):
  apply it;
- a conflict (the row was changed here concurrently): apply the incoming version iff it wins
  by the conflict rule, and record both versions in ``platsync_conflict``, in the same
  transaction (not in a store that copies another one, see :func:`records_conflicts`);
- delete (a hard delete, outside the row rules): remove the row only if its version is not
  newer, and leave a tombstone so a late update cannot resurrect it.

Bookkeeping, conflicts and rows commit together, so a replayed batch decides the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Table

from connectors.sinks import conflict_log
from connectors.sinks import conflict_rule as rule
from connectors.sinks.base import RejectedWrite, SinkResult, StoreUnavailableError
from connectors.sinks.conflict_log import Plan
from connectors.sinks.connection import StoreConnection
from connectors.stores import withdrawals
from connectors.stores.origins import fresh_commit_time, setup_session_origin
from connectors.stores.tables import ADDED_COLUMNS, SYNCED_TABLES, coerce_row, column_names, metadata_for
from streams.core.model import SHARED_STORES, Write
from streams.routing.matrix_model import Matrix, load_matrix
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

APPLY_API_ID = "PLATSYNC_APPLY"
_ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, KeyError, ValueError,
               TypeError)


def _insert_sql(table: Table, over_tombstone: bool = False) -> str:
    """Insert unless a tombstone of the same or a newer version exists (``over_tombstone``: the caller
    decided by the conflict rule that the row beats the withdrawn state its tombstone keeps)."""
    cols = [c.name for c in table.columns]
    names = ", ".join(cols)
    params = ", ".join(f"%({c})s" for c in cols)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")
    guard = "" if over_tombstone else (
        f"WHERE NOT EXISTS (SELECT 1 FROM platsync_tombstone t WHERE t.table_name = '{table.name}' "
        f"AND t.id = %(id)s AND t.version >= %(version)s) ")
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {params} {guard}"
        f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE {table.name}.version < EXCLUDED.version"
    )


def _withdrawn_states(cur: psycopg.Cursor[Any], table: str, ids: list[str]) -> dict[str, rule.RankKey]:
    """The withdrawn states the tombstones of ``ids`` keep (locked); hard deletes' tombstones keep none."""
    if not ids:
        return {}
    cur.execute(withdrawals.SELECT_WITHDRAWN, {"table": table, "ids": ids}, prepare=False)
    return {r[0]: withdrawals.withdrawn_key(*r[1:]) for r in cur.fetchall()}


def _withdraw(cur: psycopg.Cursor[Any], table: str, rows: list[dict[str, Any]]) -> int:
    """Remove documents made private from a shared store, keeping each withdrawn state's rank in its
    tombstone (the conflict rule already chose these states: docs/sharing.md); each counts as applied."""
    cur.executemany(f"DELETE FROM {table} WHERE id = %(id)s", rows)  # noqa: S608
    cur.executemany(withdrawals.UPSERT_WITHDRAWN, [{**row, "table": table} for row in rows])
    return len(rows)


def _update_sql(table: Table) -> str:
    sets = ", ".join(f"{c.name} = %({c.name})s" for c in table.columns if c.name != "id")
    return f"UPDATE {table.name} SET {sets} WHERE id = %(id)s"


def _delete_sql(table: Table) -> tuple[str, str]:
    return (
        f"DELETE FROM {table.name} WHERE id = %(id)s AND version <= %(version)s",
        "INSERT INTO platsync_tombstone (table_name, id, version) VALUES "
        f"('{table.name}', %(id)s, %(version)s) ON CONFLICT (table_name, id) DO UPDATE "
        "SET version = EXCLUDED.version, approved = NULL, content_hash = NULL, updated_at = NULL "
        "WHERE platsync_tombstone.version < EXCLUDED.version",
    )


#: One statement for a whole batch's bookkeeping (a JSON array of rows: one parameter to adapt).
RECEIVED_SQL = """
INSERT INTO platsync_row_sync (table_name, id, received_version, received_updated_at, received_deleted,
                               received_approved, received_content_hash)
SELECT %s, r.id, r.v, r.t, r.d, r.a, r.h FROM jsonb_to_recordset(%s::jsonb)
    AS r(id text, v bigint, t timestamptz, d boolean, a boolean, h text)
ON CONFLICT (table_name, id) DO UPDATE SET
    received_version = EXCLUDED.received_version, received_updated_at = EXCLUDED.received_updated_at,
    received_deleted = EXCLUDED.received_deleted, received_approved = EXCLUDED.received_approved,
    received_content_hash = EXCLUDED.received_content_hash
"""


def records_conflicts(store: str, matrix: Matrix | None = None) -> bool:
    """Whether the sink of ``store`` records conflicts: not if another store feeds it.

    A store fed by another store of its side (``fructos_patient``, fed by ``fructos_own``) holds
    copies of some states of that store's rows only: the matrix routes PRV_USR_001 and
    PRV_DOC_009 into it, not the updates between them. Its row can therefore be an earlier state
    of an incoming change than the change's before-image, which nothing in the change reveals,
    so a change that does not fast-forward there proves no concurrent edit. Such a change is
    still decided by the conflict rule (the greater key is kept), but a conflict is recorded
    only in the store that receives every state of the row, on both sides: a real concurrent
    edit always shows there, under one id for both sides (``docs/conflicts.md``).
    """
    return (matrix or load_matrix()).feed_source(store) == store


class PostgresRowSink:
    """Applies routed writes to one PostgreSQL store database of one side."""

    def __init__(self, settings: Settings, side: str, store: str) -> None:
        self.side = side
        self.store = store
        self.records_conflicts = records_conflicts(store)
        self.holds_withdrawals = store in SHARED_STORES  # documents made private leave these (docs/sharing.md)
        #: The replication origin tagging this sink's transactions (PostgreSQL >= 16), or None.
        self.origin: str | None = None
        self._connection = StoreConnection(libpq_dsn(settings, side, store, "apply") + " connect_timeout=5",
                                           f"{side}/{store}", self._set_origin if settings.pg_origin_filter else None)
        self._tables = {name: metadata_for(store).tables[name] for name in SYNCED_TABLES[store]}

    def _set_origin(self, conn: psycopg.Connection[Any]) -> None:
        """Tag the new session's transactions with a replication origin (connectors/stores/origins.py)."""
        self.origin = setup_session_origin(conn, f"{self.side}/{self.store}")

    def setup(self) -> None:
        """Connect and check that every synced table exists."""
        conn = self._connection.get()
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
        conn.rollback()
        missing = (set(self._tables) | {"platsync_row_sync", "platsync_conflict"}) - {r[0] for r in rows}
        if missing:
            raise RuntimeError(f"{self.side}/{self.store}: tables missing: {sorted(missing)}; "
                               "run 'platsync up' once to provision the stores")

    def apply_batch(self, writes: Sequence[Write], origin_side: str) -> SinkResult:
        """Apply ``writes`` in one transaction; isolate and reject bad rows if the batch fails."""
        result = SinkResult()
        plans = self._plan(writes, result.rejected)
        result.stale = len(writes) - len(plans) - len(result.rejected)
        if not plans:
            return result
        conn = self._connection.get()
        rejected_early = len(result.rejected)
        try:
            try:
                with conn.transaction():
                    self._mark(conn, origin_side)
                    result.applied, result.conflicts = self._apply_plans(conn, plans, origin_side)
            except _ROW_ERRORS:
                # Something in the batch is bad: redo it row by row, each in a savepoint.
                result.applied = result.conflicts = 0
                with conn.transaction():
                    self._mark(conn, origin_side)
                    for plan in plans:
                        try:
                            with conn.transaction():
                                applied, conflicts = self._apply_plans(conn, [plan], origin_side)
                            result.applied += applied
                            result.conflicts += conflicts
                        except _ROW_ERRORS as exc:
                            result.rejected.append(RejectedWrite(plan.write, f"{type(exc).__name__}: {exc}",
                                                                 _hint(exc)))
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreUnavailableError(f"{self.side}/{self.store}: {exc}") from exc
        result.stale += len(plans) - result.applied - (len(result.rejected) - rejected_early)
        return result

    def _plan(self, writes: Sequence[Write], rejected: list[RejectedWrite]) -> list[Plan]:
        """Validate every write and keep one per row: the greatest state (or a newer hard delete)."""
        upserts: dict[tuple[str, str], list[tuple[Plan, rule.RankKey]]] = {}
        deletes: dict[tuple[str, str], Write] = {}
        for w in writes:
            try:
                self._table(w)
                if w.op == "delete" and w.row is None:
                    best = deletes.get((w.table, w.key))
                    if best is None or w.version > best.version:
                        deletes[(w.table, w.key)] = w
                    continue
                params = self._upsert_params(w)
                rank = rule.rank_key(params)
            except (KeyError, ValueError, TypeError) as exc:
                rejected.append(RejectedWrite(w, f"{type(exc).__name__}: {exc}", _hint(exc)))
                continue
            plan = Plan(w, params, rank)
            before = self._before_state(w)
            if before is not None:
                plan.known.add(before)
            upserts.setdefault((w.table, w.key), []).append((plan, rank))
        plans: list[Plan] = []
        for key, candidates in upserts.items():
            best, best_rank = max(candidates, key=lambda c: c[1])
            for other, rank in candidates:  # the states the greatest one descends from
                best.known |= other.known
                if other is not best and rank.state != best_rank.state:
                    best.known.add(rank.state)
            hard = deletes.pop(key, None)
            if hard is not None and hard.version >= max(int(c.write.version) for c, _ in candidates):
                plans.append(Plan(hard))
            else:
                plans.append(best)
        plans.extend(Plan(w) for w in deletes.values())
        return plans

    @staticmethod
    def _before_state(w: Write) -> rule.State | None:
        if not w.before:
            return None
        try:
            return rule.state_of(w.before)
        except (KeyError, ValueError, TypeError):
            return None  # an unreadable before-image only costs the fast-forward shortcut

    def _mark(self, conn: psycopg.Connection[Any], origin_side: str) -> None:
        if self.origin is not None:
            fresh_commit_time(conn)
        conn.execute(
            "INSERT INTO platsync_txn_marker (api_id, origin_side, applied_by_sync) VALUES (%s, %s, true)",
            (APPLY_API_ID, origin_side))

    def _apply_plans(self, conn: psycopg.Connection[Any], plans: Sequence[Plan],
                     origin_side: str) -> tuple[int, int]:
        """Apply plans with one pipelined statement per (table, kind); return (applied, conflicts)."""
        applied = conflicts = 0
        by_table: dict[str, list[Plan]] = {}
        for plan in plans:
            by_table.setdefault(plan.write.table, []).append(plan)
        with conn.cursor() as cur:
            for table_name in sorted(by_table):
                table = self._tables[table_name]
                group = by_table[table_name]
                gone = [{"id": p.write.key, "version": p.write.version} for p in group if p.params is None]
                if gone:
                    delete_sql, tomb_sql = _delete_sql(table)
                    cur.executemany(delete_sql, gone)
                    applied += max(cur.rowcount, 0)
                    cur.executemany(tomb_sql, gone)
                upserts = [p for p in group if p.params is not None]
                if upserts:
                    done, found = self._apply_upserts(cur, table, upserts, origin_side)
                    applied += done
                    conflicts += found
        return applied, conflicts

    def _apply_upserts(self, cur: psycopg.Cursor[Any], table: Table, plans: list[Plan],
                       origin_side: str) -> tuple[int, int]:
        ids = [p.write.key for p in plans]
        # prepare=False: a server-side prepared statement gets a generic plan made while the table
        # was still small -- a sequential scan testing every row against the whole id array. It
        # stayed cached as the table grew and was most of the sink's CPU (perf: texteq under
        # ExecEvalScalarArrayOp). Planned per batch, these use the primary-key index.
        cur.execute(f"SELECT xmin::text::bigint AS platsync_xmin, t.* FROM {table.name} t "  # noqa: S608
                    "WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,), prepare=False)
        columns = [d.name for d in cur.description or []]
        current = {r[1]: dict(zip(columns, r, strict=True)) for r in cur.fetchall()}
        cur.execute("SELECT id, received_deleted, received_approved, received_version, received_content_hash, "
                    "received_updated_at FROM platsync_row_sync WHERE table_name = %s AND id = ANY(%s)",
                    (table.name, ids), prepare=False)
        received = {r[0]: rule.RankKey(*r[1:]) for r in cur.fetchall()}
        # Only a shared store holds withdrawn states: elsewhere this would be one more query per batch.
        withdrawn = (_withdrawn_states(cur, table.name, [i for i in ids if i not in current])
                     if self.holds_withdrawals else {})
        inserts: list[dict[str, Any]] = []
        reinserts: list[dict[str, Any]] = []  # over a withdrawn state they beat (docs/sharing.md)
        withdrawals: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        bookkeeping: list[tuple[str, rule.RankKey]] = []
        conflicts: list[tuple[Plan, dict[str, Any], rule.Decision]] = []
        descendants: list[tuple[Plan, rule.Decision]] = []
        for plan in plans:
            assert plan.params is not None and plan.rank is not None
            row = current.get(plan.write.key)
            here = None if row is None else {k: v for k, v in row.items() if k != "platsync_xmin"}
            gone = withdrawn.get(plan.write.key) if here is None else None
            decision = rule.decide(plan.rank, gone if here is None else rule.rank_key(here),
                                   received.get(plan.write.key), plan.known)
            if decision.received is not None:
                bookkeeping.append((plan.write.key, decision.received))
            if decision.kind == rule.CONFLICT and self.records_conflicts:
                conflicts.append((plan, row or {}, decision))
            if decision.kind in (rule.CONFLICT, rule.FAST_FORWARD) and plan.known:
                descendants.append((plan, decision))
            if decision.apply and plan.write.op == "delete":
                withdrawals.append(plan.params)
            elif decision.apply:
                (updates if here is not None else reinserts if gone is not None else inserts).append(plan.params)
        applied = 0
        if withdrawals:
            applied += _withdraw(cur, table.name, withdrawals)
        if reinserts:
            cur.executemany(_insert_sql(table, over_tombstone=True), reinserts)
            applied += max(cur.rowcount, 0)
        if inserts:
            cur.executemany(_insert_sql(table), inserts)
            applied += max(cur.rowcount, 0)
        if updates:
            cur.executemany(_update_sql(table), updates)
            applied += max(cur.rowcount, 0)
        if bookkeeping:
            cur.execute(RECEIVED_SQL, (table.name, json.dumps([
                {"id": i, "v": k.version, "t": k.updated_at.isoformat(), "d": k.deleted, "a": k.approved,
                 "h": k.content_hash} for i, k in bookkeeping])))
        if descendants:
            conflict_log.supersede(cur, self.store, self.side, table.name, descendants, origin_side)
        if conflicts:
            conflict_log.record(cur, self.store, self.side, table.name, conflicts, origin_side)
        return applied, len(conflicts)

    def _table(self, w: Write) -> Table:
        table = self._tables.get(w.table)
        if table is None:
            raise KeyError(f"table {w.table!r} is not synced in store {self.store!r}")
        return table

    def _upsert_params(self, w: Write) -> dict[str, Any]:
        table = self._table(w)
        if w.row is None:
            raise ValueError(f"upsert of {w.table}/{w.key} carries no row")
        row = {**ADDED_COLUMNS.get(table.name, {}), **coerce_row(table, w.row)}  # captured before they existed
        missing = [name for name in column_names(table) if name not in row]
        if missing:
            raise ValueError(f"row {w.table}/{w.key} lacks columns {missing}")
        if "content" in row and "content_hash" in row:
            digest = hashlib.sha256(row["content"]).hexdigest()
            if digest != row["content_hash"]:
                raise ValueError(f"content_hash {row['content_hash']} does not match content (sha256 {digest})")
        if row.get("id") != w.key or row.get("version") != w.version:
            raise ValueError(f"row {w.table}/{w.key} disagrees with its change key/version")
        if row.get("updated_at") is None:
            raise ValueError(f"row {w.table}/{w.key} has no updated_at (the conflict rule needs it)")
        return row

    def close(self) -> None:
        """Close the connection (reconnects lazily on the next batch)."""
        self._connection.close()


def _hint(exc: BaseException) -> str:
    if isinstance(exc, psycopg.IntegrityError):
        return ("the target store refused the row (constraint); fix the row on the source side: "
                "its next version syncs again")
    if isinstance(exc, KeyError):
        return "the change names a table or column the target store does not have; align the store schemas"
    if "content_hash" in str(exc):
        return "the signed record's content does not match its hash; re-sign the record on the source side"
    return "the value does not fit the target column; fix the source row: its next version syncs again"
