"""Full-content snapshots of every synced table of every store on both sides, and their diff."""

from __future__ import annotations

from typing import Any

import psycopg

from connectors.stores.tables import SYNCED_TABLES
from streams.core.model import DATABASE_STORES, SIDES
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

Snapshot = dict[tuple[str, str, str], dict[str, tuple[Any, ...]]]


def snapshot(settings: Settings) -> Snapshot:
    """Every row of every synced table, keyed by (side, store, table) then id."""
    result: Snapshot = {}
    for side in SIDES:
        for store in DATABASE_STORES[side]:
            with psycopg.connect(libpq_dsn(settings, side, store)) as conn:
                for table in SYNCED_TABLES[store]:
                    cur = conn.execute(f"SELECT * FROM {table} ORDER BY id")
                    result[(side, store, table)] = {row[0]: tuple(row) for row in cur.fetchall()}
    return result


def changed(before: Snapshot, after: Snapshot) -> dict[tuple[str, str, str], set[str]]:
    """Ids added, removed or modified per (side, store, table); tables without changes are omitted."""
    diff: dict[tuple[str, str, str], set[str]] = {}
    for key in after:
        old, new = before.get(key, {}), after[key]
        ids = {i for i in set(old) | set(new) if old.get(i) != new.get(i)}
        if ids:
            diff[key] = ids
    return diff
