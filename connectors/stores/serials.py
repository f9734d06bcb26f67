"""Management serial numbers (患者番号 patient numbers) that never collide across the sides.

Each side draws from its own PostgreSQL sequence over a disjoint range, so both sides can
keep numbering patients through a network cut or a disaster without coordination, and
nothing numbered on one side can ever clash with the other after they converge (the scheme
of per-side ranges; seed 003's alternative, bumping the counter at an emergency switch, needs
the modes of issue #4). Numbers are 9 digits, zero-padded.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

SEQUENCE = "platsync_patient_number_seq"
#: Inclusive ranges of patient numbers per side.
PATIENT_NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "local": (1, 499_999_999),
    "remote": (500_000_000, 999_999_999),
}


class SerialExhaustedError(RuntimeError):
    """A side has used up its range of serial numbers."""


def create_sequences(conn: Connection, side: str) -> None:
    """Create the side's patient-number sequence in META (idempotent)."""
    low, high = PATIENT_NUMBER_RANGES[side]
    conn.execute(text(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} AS bigint "
                      f"MINVALUE {low} MAXVALUE {high} START WITH {low} NO CYCLE"))


def next_patient_number(conn: Connection, side: str) -> str:
    """Allocate the next patient number of ``side`` (inside the caller's META transaction)."""
    try:
        value = conn.execute(text(f"SELECT nextval('{SEQUENCE}')")).scalar_one()
    except Exception as exc:  # noqa: BLE001 - PostgreSQL reports exhaustion as a generic error
        if "reached maximum value" in str(exc):
            low, high = PATIENT_NUMBER_RANGES[side]
            raise SerialExhaustedError(
                f"the {side} side has used every patient number of its range {low}-{high}; "
                "extend PATIENT_NUMBER_RANGES (connectors/stores/serials.py) on both sides") from None
        raise
    return f"{value:09d}"
