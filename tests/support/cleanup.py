"""Converge what a test put on one side only (rows injected straight into a topic, or a change that could
not be carried), so that later tests comparing both sides, or replaying the topics, find converged stores."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

_ENGINE_MARKER = "INSERT INTO platsync_txn_marker (api_id, origin_side, applied_by_sync) VALUES (%s, %s, true)"


def forget_rows(settings: Settings, side: str, store: str, table: str, ids: Iterable[str], origin_side: str) -> int:
    """Delete rows of ``table`` on ``side`` in a transaction marked as applied by the engine (the way the
    sinks mark theirs), so the side's capture drops it as an echo and the deletion goes nowhere."""
    wanted = list(ids)
    if not wanted:
        return 0
    with psycopg.connect(libpq_dsn(settings, side, store)) as conn:
        conn.execute(_ENGINE_MARKER, ("TEST_CLEANUP", origin_side))
        return conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (wanted,)).rowcount


def mirror_rows(settings: Settings, from_side: str, to_side: str, store: str, table: str, ids: Iterable[str]) -> int:
    """Copy rows of ``table`` from one side to the other as they are, in a transaction marked as applied by
    the engine, so ``to_side``'s capture drops it as an echo: both sides then hold identical rows, and a
    replay of the topics that carried them changes nothing."""
    wanted = list(ids)
    if not wanted:
        return 0
    with psycopg.connect(libpq_dsn(settings, from_side, store)) as source:
        cur = source.execute(f"SELECT * FROM {table} WHERE id = ANY(%s)", (wanted,))
        columns = [d.name for d in cur.description or ()]
        rows = cur.fetchall()
    with psycopg.connect(libpq_dsn(settings, to_side, store)) as target:
        target.execute(_ENGINE_MARKER, ("TEST_CLEANUP", from_side))
        placeholders = ", ".join(["%s"] * len(columns))
        with target.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)
    return len(rows)
