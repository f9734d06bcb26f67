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

A number may also be given in the API payload (imports from older systems); it is stored as
given, after :func:`claim_given_numbers` accepted it inside the call's META transaction:

- a number of ASCII digits only is a serial number (by value: ``123`` is ``000000123``). It must
  lie in the *calling* side's range -- a local number from the remote range would be drawn again
  by the remote side -- and the side's sequence is advanced past it, so the side never draws it;
- any other number (``H-0042``, with a non-digit) can never equal a drawn one;
- either kind must not be used already by any record the node knows of: its own META holds its
  own records and the synced copies of the other side's (deleted documents included: a number
  is never reused).

Two given legacy numbers entered on both sides during a cut cannot be detected by either side
alone (each side only knows its own); digit-only numbers cannot collide that way.

Concurrency: a call that gives numbers takes an exclusive transaction advisory lock per serial;
a call that draws numbers takes it shared. Draws never wait for each other; a given number is
checked and the sequence advanced while no draw is in flight, and two calls giving numbers are
serialised until their commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from streams.core.errors import PlatSyncError


@dataclass(frozen=True)
class Serial:
    """One management serial: its sequence, per-side ranges, printed width and META column."""

    label: str
    sequence: str
    ranges: dict[str, tuple[int, int]]
    width: int
    table: str
    column: str


PATIENT_NUMBER = Serial("patient number", "platsync_patient_number_seq",
                        {"local": (1, 499_999_999), "remote": (500_000_000, 999_999_999)}, 9,
                        "patients", "patient_number")
DOCUMENT_NUMBER = Serial("document number", "platsync_document_number_seq",
                         {"local": (1, 4_999_999_999), "remote": (5_000_000_000, 9_999_999_999)}, 10,
                         "documents", "document_number")
SERIALS = (PATIENT_NUMBER, DOCUMENT_NUMBER)

# Names kept for callers of the patient-number scheme.
SEQUENCE = PATIENT_NUMBER.sequence
PATIENT_NUMBER_RANGES = PATIENT_NUMBER.ranges
DOCUMENT_NUMBER_RANGES = DOCUMENT_NUMBER.ranges


class SerialExhaustedError(PlatSyncError, RuntimeError):
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
    _lock(conn, serial, shared=True)
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


_DIGITS = re.compile(r"[0-9]+")


def number_key(number: str) -> int | str:
    """What identifies a number: its value if it is ASCII digits only, else the string itself."""
    return int(number) if _DIGITS.fullmatch(number) else number


def _lock(conn: Connection, serial: Serial, *, shared: bool) -> None:
    """The serial's transaction advisory lock (shared: drawing; exclusive: giving numbers)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(text(f"SELECT {function}(hashtext(:name))"), {"name": serial.sequence})


def claim_given_numbers(conn: Connection, side: str, serial: Serial, numbers: Sequence[str]) -> dict[int, str]:
    """Check numbers given by an API call on ``side``; if all are acceptable, advance the sequence.

    Runs inside the call's META transaction, before anything else of the call touches ``serial``.
    Returns ``{index in numbers: why it is refused}`` (empty: all accepted, sequence advanced past
    the greatest digit-only one). The reasons never contain the numbers.
    """
    if not numbers:
        return {}
    _lock(conn, serial, shared=False)
    low, high = serial.ranges[side]
    problems: dict[int, str] = {}
    keys = [number_key(n) for n in numbers]
    first: dict[int | str, int] = {}
    for i, key in enumerate(keys):
        if key in first:
            problems[i] = f"the same {serial.label} is already given at index {first[key]} of this call"
        first.setdefault(key, i)
        if isinstance(key, int) and not low <= key <= high:
            problems.setdefault(i, (
                f"outside the {side} side's {serial.label} range {low:0{serial.width}d}-{high:0{serial.width}d} "
                f"(a number of digits only must come from the calling side's range, or the other side may "
                f"draw it too)"))
    values = sorted({k for k in keys if isinstance(k, int)})
    strings = sorted(set(numbers))
    used = set(conn.execute(text(
        f"SELECT {serial.column} FROM {serial.table} WHERE {serial.column} IN :strings "
        f"OR (CASE WHEN {serial.column} ~ '^[0-9]+$' THEN {serial.column}::numeric END) IN :values"
    ).bindparams(bindparam("strings", expanding=True), bindparam("values", expanding=True)),
        {"strings": strings, "values": values or [-1]}).scalars())
    used_keys = {number_key(n) for n in used}
    for i, key in enumerate(keys):
        if key in used_keys:
            problems.setdefault(i, f"already used: this node already holds a record with the same {serial.label} "
                                   "(its own or a synced copy of the other side's)")
    if problems:
        return problems
    in_range = [k for k in values if low <= k <= high]
    if in_range:  # the next draw follows the greatest given number (if it is ahead of the sequence)
        conn.execute(text(
            f"SELECT setval('{serial.sequence}', GREATEST(:n, last_value), is_called OR :n >= last_value) "
            f"FROM {serial.sequence}"), {"n": max(in_range)})
    return {}
