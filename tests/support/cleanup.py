"""Undo what a test put on one side only (rows injected straight into a topic, or a change that could
not be carried), so that later tests comparing both sides start from converged stores."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from streams.settings import Settings


def forget_rows(settings: Settings, side: str, store: str, table: str, ids: Iterable[str], origin_side: str) -> int:
    """Delete rows of ``table`` on ``side`` in a transaction marked as applied by the engine (the way the
    sinks mark theirs), so the side's capture drops it as an echo and the deletion goes nowhere."""
    wanted = list(ids)
    if not wanted:
        return 0
    with psycopg.connect(settings.libpq_dsn(side, store)) as conn:
        conn.execute("INSERT INTO platsync_txn_marker (api_id, origin_side, applied_by_sync) VALUES (%s, %s, true)",
                     ("TEST_CLEANUP", origin_side))
        deleted = conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (wanted,)).rowcount
    return deleted
