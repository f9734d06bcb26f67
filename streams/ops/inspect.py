"""Read one record of one store, as JSON-able data, for ``platsync inspect``."""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.stores.tables import SYNCED_TABLES
from streams.core.model import DATABASE_STORES
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def fetch_record(settings: Settings, side: str, store: str, entity: str, record_id: str) -> dict[str, Any] | None:
    """The row ``record_id`` of table ``entity`` in ``side``/``store``, or None if absent.

    Binary columns are returned base64-encoded, timestamps as ISO 8601 strings.
    """
    if store not in DATABASE_STORES[side]:
        raise ValueError(f"store {store!r} does not exist on the {side} side "
                         f"(it has: {', '.join(DATABASE_STORES[side])})")
    if entity not in SYNCED_TABLES[store]:
        raise ValueError(f"entity {entity!r} is not in store {store!r} (it has: {', '.join(SYNCED_TABLES[store])})")
    dsn = libpq_dsn(settings, side, store, "operator") + " connect_timeout=5"
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute(f"SELECT * FROM {entity} WHERE id = %s", (record_id,)).fetchone()
    return None if row is None else {k: _jsonable(v) for k, v in row.items()}
