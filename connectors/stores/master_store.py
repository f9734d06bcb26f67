"""Reading and writing the hospital's MHLW master and target list (docs/master.md).

The writes only change rows: the triggers of :mod:`connectors.stores.master_schema` stamp each transaction with
the master's API id, give each changed row a new version and keep ``is_target`` current, and the capture's row
filter sends only target rows to the cloud. One import or target edit runs at a time per database (an advisory
lock), so two overlapping cron runs cannot interleave their differences.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from connectors.stores.master_schema import CALL_ID_SETTING, MASTER_TABLE, TARGETS_TABLE
from streams.core.errors import PlatSyncError
from streams.master.csv_input import COLUMNS, Row
from streams.master.diff import MasterDiff

#: pg_advisory_xact_lock key of master writes ("PLATMSTR" as an integer).
LOCK_KEY = int.from_bytes(b"PLATMSTR", "big") & 0x7FFF_FFFF_FFFF_FFFF
_COLUMN_LIST = ", ".join(COLUMNS)


class MasterBusyError(PlatSyncError):
    """Another import or target edit holds the master's lock."""


@dataclass(frozen=True)
class WriteResult:
    """What one write changed: rows inserted, updated, deleted, and how many of them are targets."""

    inserted: int
    updated: int
    deleted: int
    targets_changed: int
    seconds: float


@dataclass(frozen=True)
class Target:
    """One listed target: its note, and the master's row if the institution is in the master."""

    medical_id: str
    note: str | None
    name: str | None
    version: int | None


def _value(value: Any) -> str | int | None:
    return value.isoformat() if isinstance(value, date) else value


def master_rows(conn: psycopg.Connection[Any]) -> dict[str, Row]:
    """The master's rows by code, with the imported columns in the form the CSV reader produces."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMN_LIST} FROM {MASTER_TABLE}")  # noqa: S608
        return {r[0]: {c: _value(v) for c, v in zip(COLUMNS, r, strict=True)} for r in cur}


def _lock(conn: psycopg.Connection[Any], call_id: str) -> None:
    if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
        raise MasterBusyError("another master import or target edit is running on this database; retry after it")
    conn.execute("SELECT set_config(%s, %s, true)", (CALL_ID_SETTING, call_id))


def write_import(conn: psycopg.Connection[Any], diff: MasterDiff, call_id: str) -> WriteResult:
    """Write ``diff`` in one transaction: COPY the new rows, update the changed, delete the gone."""
    started = time.perf_counter()
    targets = _targets(conn, [*(r["medical_id"] for r in (*diff.new, *diff.changed)), *diff.gone])
    with conn.transaction():
        _lock(conn, call_id)
        with conn.cursor() as cur:
            if diff.new:
                with cur.copy(f"COPY {MASTER_TABLE} ({_COLUMN_LIST}, id) FROM STDIN") as copy:
                    for row in diff.new:
                        copy.write_row([*(row.get(c) for c in COLUMNS), row["medical_id"]])
            updated = 0
            if diff.changed:
                sets = ", ".join(f"{c} = %({c})s" for c in COLUMNS if c != "medical_id")
                cur.executemany(f"UPDATE {MASTER_TABLE} SET {sets} WHERE id = %(medical_id)s",  # noqa: S608
                                [{c: row.get(c) for c in COLUMNS} for row in diff.changed])
                updated = len(diff.changed)
            deleted = 0
            if diff.gone:
                cur.execute(f"DELETE FROM {MASTER_TABLE} WHERE id = ANY(%s)", (diff.gone,))  # noqa: S608
                deleted = cur.rowcount
    return WriteResult(len(diff.new), updated, deleted, len(targets), time.perf_counter() - started)


def _targets(conn: psycopg.Connection[Any], codes: list[str]) -> set[str]:
    """The codes among ``codes`` that are targets."""
    if not codes:
        return set()
    rows = conn.execute(f"SELECT medical_id FROM {TARGETS_TABLE} WHERE medical_id = ANY(%s)", (codes,))  # noqa: S608
    found = {r[0] for r in rows}
    conn.commit()
    return found


def target_notes(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    """The target list: code -> note."""
    rows = conn.execute(f"SELECT medical_id, note FROM {TARGETS_TABLE} ORDER BY medical_id").fetchall()  # noqa: S608
    conn.commit()
    return {code: note for code, note in rows}


def list_targets(conn: psycopg.Connection[Any]) -> list[Target]:
    """Every target with the master's name and version of it (None: not in the master yet)."""
    rows = conn.execute(
        f"SELECT t.medical_id, t.note, m.name, m.version FROM {TARGETS_TABLE} t "  # noqa: S608
        f"LEFT JOIN {MASTER_TABLE} m ON m.id = t.medical_id ORDER BY t.medical_id").fetchall()
    conn.commit()
    return [Target(*r) for r in rows]


def change_targets(conn: psycopg.Connection[Any], call_id: str, *, upsert: Mapping[str, str | None] | None = None,
                   remove: Iterable[str] = ()) -> tuple[int, int]:
    """Add or re-note the targets of ``upsert`` (code -> note) and remove ``remove``, in one transaction;
    return (rows upserted or re-noted, rows removed). The triggers send added ones' rows and delete removed
    ones' copies in the cloud."""
    upsert = dict(upsert or {})
    gone = sorted(set(remove))
    with conn.transaction():
        _lock(conn, call_id)
        changed = removed = 0
        with conn.cursor() as cur:
            if gone:
                cur.execute(f"DELETE FROM {TARGETS_TABLE} WHERE medical_id = ANY(%s)", (gone,))  # noqa: S608
                removed = cur.rowcount
            for code, note in sorted(upsert.items()):
                cur.execute(
                    f"INSERT INTO {TARGETS_TABLE} (medical_id, note) VALUES (%s, %s) "  # noqa: S608
                    "ON CONFLICT (medical_id) DO UPDATE SET note = EXCLUDED.note "
                    f"WHERE {TARGETS_TABLE}.note IS DISTINCT FROM EXCLUDED.note", (code, note))
                changed += cur.rowcount
    return changed, removed
