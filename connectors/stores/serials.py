"""Management serial numbers that never collide across the sides: patient numbers (患者番号) and
document (slip) numbers (文書番号).

Each side draws from its own PostgreSQL sequence over a disjoint range, so both sides can keep
numbering through a network cut or a disaster without coordination, and nothing numbered on
one side can ever clash with the other after they converge. This is the per-side-range scheme;
seed 003's alternative, bumping the counter at the switch to emergency mode, needs the switch to
be noticed before the first number is drawn, which a sudden cut does not allow.

A side's range is its node's setting (``[nodes.<side>] patient_numbers = [lo, hi]`` and
``document_numbers``, :class:`streams.runtime.settings.NodeSettings`); unset, the two-site default:

========  ===================  =============================  ===============================
serial    format               local (default)                remote (default)
========  ===================  =============================  ===============================
patient   9 digits             000000001 - 499999999          500000000 - 999999999
document  10 digits            0000000001 - 4999999999        5000000000 - 9999999999
========  ===================  =============================  ===============================

In a network (``docs/topology.md``) each home link's ``local`` side is the hospital, with the
hospital's ranges of the topology, and its ``remote`` side that hospital's stores in the cloud, with
the cloud root's ranges (:meth:`streams.topology.model.Topology.home_link_numbers`). The cloud's
sequence is per institution (each has its own META), so numbers the cloud draws are unique per home
institution, not across institutions: that would need the cloud's range split per tenant.

The sequence is created with the range (MINVALUE/MAXVALUE/START) when META is provisioned; a
sequence made earlier with another range is moved to the configured one only when that cannot hand
a number out twice (:func:`create_sequences`), else provisioning stops with a
:class:`SerialRangeError` saying what to do.

A number may also be given in the API payload (imports from older systems); it is stored as
given, after :func:`claim_given_numbers` accepted it inside the call's META transaction:

- a number of ASCII digits only is a serial number (by value: ``123`` is ``000000123``). It must
  lie in the *calling* side's configured range -- a local number from the remote range would be
  drawn again by the remote side -- and the side's sequence is advanced past it, so the side never
  draws it;
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
from streams.runtime.number_ranges import node_range
from streams.runtime.settings import Settings


@dataclass(frozen=True)
class Serial:
    """One management serial: its sequence, default per-side ranges, printed width, META column and the
    node setting holding a configured range."""

    label: str
    sequence: str
    ranges: dict[str, tuple[int, int]]  # the two-site defaults (docs/topology.md keeps them)
    width: int
    table: str
    column: str
    setting: str  # NodeSettings field: patient_numbers | document_numbers


PATIENT_NUMBER = Serial("patient number", "platsync_patient_number_seq",
                        {"local": (1, 499_999_999), "remote": (500_000_000, 999_999_999)}, 9,
                        "patients", "patient_number", "patient_numbers")
DOCUMENT_NUMBER = Serial("document number", "platsync_document_number_seq",
                         {"local": (1, 4_999_999_999), "remote": (5_000_000_000, 9_999_999_999)}, 10,
                         "documents", "document_number", "document_numbers")
SERIALS = (PATIENT_NUMBER, DOCUMENT_NUMBER)

# Names kept for callers of the patient-number scheme.
SEQUENCE = PATIENT_NUMBER.sequence
PATIENT_NUMBER_RANGES = PATIENT_NUMBER.ranges
DOCUMENT_NUMBER_RANGES = DOCUMENT_NUMBER.ranges


class SerialExhaustedError(PlatSyncError, RuntimeError):
    """A side has used up its range of serial numbers."""


class SerialRangeError(PlatSyncError, RuntimeError):
    """A side's sequence cannot move to its configured range without risking a number handed out twice."""


def side_range(settings: Settings, side: str, serial: Serial) -> tuple[int, int]:
    """The range ``side`` draws ``serial`` from: its node's configured range, else the side's default."""
    configured = node_range(side, settings.node(side), serial.setting)
    if configured is None:
        raise SerialRangeError(f"no {serial.label} range for the {side} side: set [nodes.{side}] {serial.setting} "
                               "= [lo, hi] in the settings file")
    return configured


def _where(settings: Settings, side: str) -> str:
    """The node of ``side`` as messages name it in a network (`` (node hosp-a)``); empty otherwise."""
    if not settings.network_link:
        return ""
    return f" (node {settings.network_link if side == 'local' else f'{side}.{settings.network_link}'})"


def create_sequences(conn: Connection, settings: Settings, side: str) -> None:
    """Create the side's serial sequences in META over its configured ranges (idempotent).

    An existing sequence with other bounds (made with an earlier range) is moved to the configured
    range when that is safe: it never handed a number out (it restarts at the range's start), or the
    range holds every number it may have handed out and its next one (the bounds change, the next
    number stays). Otherwise :class:`SerialRangeError`, and nothing changes.
    """
    for serial in SERIALS:
        low, high = side_range(settings, side, serial)
        conn.execute(text(f"CREATE SEQUENCE IF NOT EXISTS {serial.sequence} AS bigint "
                          f"MINVALUE {low} MAXVALUE {high} START WITH {low} NO CYCLE"))
        old_low, old_high, last, called = conn.execute(text(
            f"SELECT s.seqmin, s.seqmax, q.last_value, q.is_called FROM pg_sequence s, {serial.sequence} q "
            "WHERE s.seqrelid = CAST(:name AS regclass)"), {"name": serial.sequence}).one()
        if (old_low, old_high) == (low, high):
            continue
        bounds = f"ALTER SEQUENCE {serial.sequence} MINVALUE {low} MAXVALUE {high} START WITH {low}"
        following = last + 1 if called else last
        if not called and last == old_low:  # never drawn from nor advanced past a given number
            conn.execute(text(f"{bounds} RESTART"))
        elif low <= old_low and following <= high:
            conn.execute(text(bounds))
        else:
            raise SerialRangeError(
                f"the {side} side{_where(settings, side)} is configured to draw {serial.label}s from "
                f"{low}-{high}, but its sequence {serial.sequence} has range {old_low}-{old_high} and may "
                f"already have handed out {old_low}-{following - 1}: the new range must hold all of them and "
                f"the next number {following}, or numbers could be handed out twice or collide with another "
                f"node's range. Configure a range that holds {old_low}-{following} ([nodes.{side}] "
                f"{serial.setting}; in a network, the node's range in the topology file), or, if you have checked "
                f"which numbers this node really used and none of them is in another node's range, move the "
                f"sequence yourself (ALTER SEQUENCE {serial.sequence} MINVALUE .. MAXVALUE .. RESTART WITH ..)")


def next_serial(conn: Connection, settings: Settings, side: str, serial: Serial) -> str:
    """Allocate the next number of ``serial`` on ``side`` (inside the caller's META transaction)."""
    return next_serials(conn, settings, side, serial, 1)[0]


def next_serials(conn: Connection, settings: Settings, side: str, serial: Serial, count: int) -> list[str]:
    """Allocate ``count`` numbers of ``serial`` on ``side`` in one round trip, in ascending order."""
    if count <= 0:
        return []
    _lock(conn, serial, shared=True)
    try:
        values = conn.execute(text(f"SELECT nextval('{serial.sequence}') FROM generate_series(1, :n)"),
                              {"n": count}).scalars().all()
    except Exception as exc:  # noqa: BLE001 - PostgreSQL reports exhaustion as a generic error
        if "reached maximum value" in str(exc):
            low, high = side_range(settings, side, serial)
            raise SerialExhaustedError(
                f"the {side} side{_where(settings, side)} has used every {serial.label} of its range "
                f"{low}-{high}; give it a larger range that keeps this one's start ([nodes.{side}] "
                f"{serial.setting} in the settings file; in a network, the node's range in the topology "
                "file), disjoint from every other node's, and start it again") from None
        raise
    return [f"{value:0{serial.width}d}" for value in sorted(values)]


def next_patient_number(conn: Connection, settings: Settings, side: str) -> str:
    """Allocate the next patient number of ``side``."""
    return next_serial(conn, settings, side, PATIENT_NUMBER)


def next_document_numbers(conn: Connection, settings: Settings, side: str, count: int) -> list[str]:
    """Allocate ``count`` document (slip) numbers of ``side``."""
    return next_serials(conn, settings, side, DOCUMENT_NUMBER, count)


_DIGITS = re.compile(r"[0-9]+")


def number_key(number: str) -> int | str:
    """What identifies a number: its value if it is ASCII digits only, else the string itself."""
    return int(number) if _DIGITS.fullmatch(number) else number


def _lock(conn: Connection, serial: Serial, *, shared: bool) -> None:
    """The serial's transaction advisory lock (shared: drawing; exclusive: giving numbers)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(text(f"SELECT {function}(hashtext(:name))"), {"name": serial.sequence})


def claim_given_numbers(conn: Connection, settings: Settings, side: str, serial: Serial,
                        numbers: Sequence[str]) -> dict[int, str]:
    """Check numbers given by an API call on ``side``; if all are acceptable, advance the sequence.

    Runs inside the call's META transaction, before anything else of the call touches ``serial``.
    Returns ``{index in numbers: why it is refused}`` (empty: all accepted, sequence advanced past
    the greatest digit-only one). A digit-only number must lie in the side's configured range
    (:func:`side_range`). The reasons never contain the numbers.
    """
    if not numbers:
        return {}
    _lock(conn, serial, shared=False)
    low, high = side_range(settings, side, serial)
    problems: dict[int, str] = {}
    keys = [number_key(n) for n in numbers]
    first: dict[int | str, int] = {}
    for i, key in enumerate(keys):
        if key in first:
            problems[i] = f"the same {serial.label} is already given at index {first[key]} of this call"
        first.setdefault(key, i)
        if isinstance(key, int) and not low <= key <= high:
            problems.setdefault(i, (
                f"outside the {side} side's {serial.label} range {low:0{serial.width}d}-{high:0{serial.width}d}"
                f"{_where(settings, side)} "
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


def bump_past_held(conn: Connection, settings: Settings, side: str) -> dict[str, int]:
    """The management-serial bump after a rebuild (docs/backups.md): each sequence of ``side`` moved past the
    greatest number of its range its table holds, so that no number the lost server handed out after the
    backup (and the other side synced back) is handed out again; serial label -> the next number, for those
    moved."""
    moved: dict[str, int] = {}
    for serial in SERIALS:
        _lock(conn, serial, shared=False)
        low, high = side_range(settings, side, serial)
        held = conn.execute(text(
            f"SELECT max({serial.column}::numeric) FROM {serial.table} WHERE {serial.column} ~ '^[0-9]+$' "
            f"AND {serial.column}::numeric BETWEEN :low AND :high"), {"low": low, "high": high}).scalar()
        last, called = conn.execute(text(f"SELECT last_value, is_called FROM {serial.sequence}")).one()
        following = last + 1 if called else last
        if held is not None and int(held) >= following:
            conn.execute(text("SELECT setval(CAST(:name AS regclass), :value, true)"),
                         {"name": serial.sequence, "value": int(held)})
            moved[serial.label] = int(held) + 1
    return moved
