"""Management serial numbers that never collide across the sides: patient numbers (患者番号) and
document (slip) numbers (文書番号).

Each side draws from its own PostgreSQL sequence over a disjoint range, so both sides can keep
numbering through a network cut or a disaster without coordination, and nothing numbered on
one side can ever clash with the other after they converge. This is the per-side-range scheme;
seed 003's alternative, bumping the counter at the switch to emergency mode, needs the switch to
be noticed before the first number is drawn, which a sudden cut does not allow. Ranges:

========  ===================  ===========================  ===============================
serial    format               local                        remote
========  ===================  ===========================  ===============================
patient   9 digits             000000001 - 499999999        500000000 - 999999999
document  10 digits            0000000001 - 4999999999      5000000000 - 9999999999
========  ===================  ===========================  ===============================

A number given in the API payload is kept as is (imports from older systems); uniqueness of
such numbers is the caller's responsibility.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Serial:
    """One management serial: its sequence, per-side ranges and printed width."""

    label: str
    sequence: str
    ranges: dict[str, tuple[int, int]]
    width: int


PATIENT_NUMBER = Serial("patient number", "platsync_patient_number_seq",
                        {"local": (1, 499_999_999), "remote": (500_000_000, 999_999_999)}, 9)
DOCUMENT_NUMBER = Serial("document number", "platsync_document_number_seq",
                         {"local": (1, 4_999_999_999), "remote": (5_000_000_000, 9_999_999_999)}, 10)
SERIALS = (PATIENT_NUMBER, DOCUMENT_NUMBER)

# Names kept for callers of the patient-number scheme.
SEQUENCE = PATIENT_NUMBER.sequence
PATIENT_NUMBER_RANGES = PATIENT_NUMBER.ranges
DOCUMENT_NUMBER_RANGES = DOCUMENT_NUMBER.ranges


class SerialExhaustedError(RuntimeError):
    """A side has used up its range of serial numbers."""


def create_sequences(conn: Connection, side: str) -> None:
    """Create the side's serial sequences in META (idempotent)."""
    for serial in SERIALS:
        low, high = serial.ranges[side]
        conn.execute(text(f"CREATE SEQUENCE IF NOT EXISTS {serial.sequence} AS bigint "
                          f"MINVALUE {low} MAXVALUE {high} START WITH {low} NO CYCLE"))


def next_serial(conn: Connection, side: str, serial: Serial) -> str:
    """Allocate the next number of ``serial`` on ``side`` (inside the caller's META transaction)."""
    return next_serials(conn, side, serial, 1)[0]


def next_serials(conn: Connection, side: str, serial: Serial, count: int) -> list[str]:
    """Allocate ``count`` numbers of ``serial`` on ``side`` in one round trip, in ascending order."""
    if count <= 0:
        return []
    try:
        values = conn.execute(text(f"SELECT nextval('{serial.sequence}') FROM generate_series(1, :n)"),
                              {"n": count}).scalars().all()
    except Exception as exc:  # noqa: BLE001 - PostgreSQL reports exhaustion as a generic error
        if "reached maximum value" in str(exc):
            low, high = serial.ranges[side]
            raise SerialExhaustedError(
                f"the {side} side has used every {serial.label} of its range {low}-{high}; "
                "extend the range (connectors/stores/serials.py) on both sides") from None
        raise
    return [f"{value:0{serial.width}d}" for value in sorted(values)]


def next_patient_number(conn: Connection, side: str) -> str:
    """Allocate the next patient number of ``side``."""
    return next_serial(conn, side, PATIENT_NUMBER)


def next_document_numbers(conn: Connection, side: str, count: int) -> list[str]:
    """Allocate ``count`` document (slip) numbers of ``side``."""
    return next_serials(conn, side, DOCUMENT_NUMBER, count)
