"""The physical reference: the same rows replicated by PostgreSQL's native logical replication.

Between the same two PostgreSQL instances as the engine (local -> remote), in a database of
their own (``platsync_bench_native``) holding the same two tables: a publication on the local
instance, a subscription on the remote one (``copy_data = false``). The rows of the engine's
bulk scenario are copied into the local tables in one transaction, like the API's bulk call,
and the figure is the time from that commit until the rows are visible on the subscriber.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql
from sqlalchemy import MetaData, create_engine

from bench.timing import commit_times
from bench.workload import TAGGED, Watch, connect, count_tagged, digest_tagged, wait_rows
from connectors.stores.tables import fructos_metadata, meta_metadata
from infra.local.databases import postgres_instance
from streams.runtime.connections import dsn, libpq_dsn
from streams.runtime.settings import Settings

DATABASE = "platsync_bench_native"
NAME = "platsync_bench"  # publication, subscription and its slot

Say = Callable[[str], None]


@dataclass
class NativeResult:
    """What native logical replication did with the bulk's rows."""

    rows: int
    seconds: float
    identical: bool

    @property
    def rows_per_s(self) -> float:
        """Rows replicated per second, commit to applied."""
        return self.rows / self.seconds


def _columns(store: str) -> list[str]:
    metadata: MetaData = meta_metadata() if store == "meta" else fructos_metadata()
    return [c.name for c in metadata.tables[TAGGED[store][0]].columns]


def _create_tables(settings: Settings, side: str) -> None:
    postgres_instance(settings, side).ensure_databases((DATABASE,))
    engine = create_engine(dsn(settings, side, DATABASE))
    try:
        with engine.begin() as conn:
            meta_metadata().tables["documents"].create(conn, checkfirst=True)
            fructos_metadata().tables["signed_records"].create(conn, checkfirst=True)
    finally:
        engine.dispose()


def _subscribe(settings: Settings, timeout_s: float) -> None:
    with connect(settings, "local", "meta", DATABASE) as conn:
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE documents, signed_records").format(
            sql.Identifier(NAME)))
    source = libpq_dsn(settings, "local", DATABASE)
    with connect(settings, "remote", "meta", DATABASE) as conn:
        conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false)").format(
            sql.Identifier(NAME), sql.Literal(source), sql.Identifier(NAME)))
    deadline = time.monotonic() + timeout_s
    with connect(settings, "local", "meta", DATABASE) as conn:
        while True:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (NAME,)).fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the native subscription {NAME} did not start streaming in {timeout_s:.0f}s")
            time.sleep(0.1)


def _copy_rows(settings: Settings, tag: str) -> None:
    """Copy the tagged rows of the engine's local stores into the native source tables, one transaction."""
    with connect(settings, "local", "meta", DATABASE) as target:
        with target.transaction():
            for store, (table, column) in TAGGED.items():
                cols = sql.SQL(", ").join(map(sql.Identifier, _columns(store)))
                with connect(settings, "local", store) as source:
                    out_sql = sql.SQL("COPY (SELECT {} FROM {} WHERE {} = {}) TO STDOUT (FORMAT BINARY)").format(
                        cols, sql.Identifier(table), sql.Identifier(column), sql.Literal(tag))
                    in_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), cols)
                    with source.cursor().copy(out_sql) as out, target.cursor().copy(in_sql) as into:
                        for block in out:
                            into.write(block)


def _drop(settings: Settings) -> None:
    try:
        with connect(settings, "remote", "meta", DATABASE) as conn:
            conn.execute(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(NAME)))
    except Exception:  # noqa: BLE001 - cleanup of a benchmark database: the slot goes below
        pass
    with connect(settings, "local", "meta") as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = %s AND NOT active", (NAME,))
    for side in ("remote", "local"):
        with connect(settings, side, "meta") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def measure_native(settings: Settings, tag: str, last_ids: dict[str, str], expected_rows: int,
                   timeout_s: float, say: Say) -> NativeResult:
    """Replicate the bulk's rows (tagged ``tag``) natively local -> remote and time it."""
    _drop(settings)
    try:
        for side in ("local", "remote"):
            _create_tables(settings, side)
        _subscribe(settings, timeout_s)
        say("native: publication and subscription streaming; copying the bulk's rows in one transaction")
        _copy_rows(settings, tag)
        # The subscriber's apply keeps the origin's commit timestamp, so the apply time is observed
        # here instead: a primary-key lookup every 5 ms (the subscriber applies the transaction whole).
        seen = wait_rows(settings, "remote", [Watch(store, row_id) for store, row_id in last_ids.items()],
                         timeout_s, poll_s=0.005, dbname=DATABASE)
        committed = [t for store in TAGGED for t in commit_times(settings, "local", store, tag, dbname=DATABASE)
                     .values()]
        rows = sum(count_tagged(settings, "remote", store, tag, dbname=DATABASE) for store in TAGGED)
        identical = rows == expected_rows and all(
            digest_tagged(settings, "remote", store, tag, DATABASE) == digest_tagged(settings, "local", store, tag)
            for store in TAGGED)
        return NativeResult(rows, seen - min(committed), identical)
    finally:
        _drop(settings)
