""""Copy selected" of the recovery difference list (seed 003's difference copy tool).

The operator picks records of :func:`streams.ops.recovery_report.build_report` and asks for them to be copied to
the other side now. Each is re-checked against both stores, then re-driven the way that can work:

- ``already_copied``: the other side holds exactly this version (same version and update time); nothing is sent;
- ``retried``: a pending dead letter of this record on its route is re-driven (produced again to its source
  topic, as ``platsync dlq retry`` does): if what refused it was fixed, it applies; otherwise it becomes a new
  dead letter;
- ``re-sent``: the record's current state is published again to its side's topic as a re-capture event (op ``r``,
  with the API of the transaction that last wrote it, as ``platsync resync`` does for a whole side); the sink's
  version guard makes a repeat harmless and never lets it overwrite a newer version;
- ``refused``, with the reason: no such record, a conflicting edit (resolve the conflict instead), a newer
  version on the other side, a state that came from the other side or was written outside the APIs, an unknown
  store or table, or a broker the side cannot reach now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from connectors.capture.publisher import Publisher
from connectors.capture.resync import resync_rows
from connectors.stores.tables import sent_tables
from streams.core.errors import PlatSyncError
from streams.core.model import DATABASE_STORES, SIDES, other_side, route_for_source
from streams.ops.dlq import message_codec, read_dead_letters, read_retry_marks, retry, select
from streams.ops.recovery_report import conflicts_by_row
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

RESENT, RETRIED, ALREADY_COPIED, REFUSED = "re-sent", "retried", "already_copied", "refused"
_SKIPPED = {
    "missing": "no such record on {side} any more",
    "echo": "its current state came from {other}: {other} sends it, not {side}",
    "unmarked": "last written outside the APIs (no API marker): the engine does not copy such changes",
}


@dataclass(frozen=True)
class Selected:
    """One record of the difference list: written on ``side`` in ``store``/``table``, row ``row_id``."""

    side: str
    store: str
    table: str
    row_id: str

    @property
    def id(self) -> str:
        """``side/store/table/row_id``, the id the console and the CLI use."""
        return f"{self.side}/{self.store}/{self.table}/{self.row_id}"

    @classmethod
    def parse(cls, text: str) -> Selected:
        """Read ``side/store/table/row_id``; ``ValueError`` naming what is expected otherwise."""
        parts = text.split("/", 3)
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"{text!r} is not a record of the difference list: expected side/store/table/row_id, "
                             "e.g. local/meta/documents/6f1c…")
        return cls(*parts)


@dataclass(frozen=True)
class CopyOutcome:
    """What "copy selected" did with one record, and why."""

    selected: Selected
    outcome: str
    reason: str


def invalid(selected: Selected) -> str | None:
    """Why ``selected`` names no record that crosses between the sides (None: it may)."""
    if selected.side not in SIDES:
        return f"unknown side {selected.side!r} (expected {' or '.join(SIDES)})"
    other = other_side(selected.side)
    if selected.store not in DATABASE_STORES[selected.side] or selected.store not in DATABASE_STORES[other]:
        return f"store {selected.store!r} is not copied from {selected.side} to {other}"
    if selected.table not in sent_tables(selected.store, selected.side):
        return f"table {selected.table!r} of {selected.store} is not sent by {selected.side}"
    return None


def _versions(conn: psycopg.Connection[Any], table: str, ids: list[str]) -> dict[str, tuple[int, Any]]:
    return {str(i): (int(v), u) for i, v, u in conn.execute(
        f"SELECT id, version, updated_at FROM {table} WHERE id::text = ANY(%s)", (ids,))}  # noqa: S608


def _triage(settings: Settings, group: list[Selected]) -> tuple[list[Selected], list[CopyOutcome]]:
    """The records of one side/store/table still to copy, and the outcomes of the others."""
    first = group[0]
    other = other_side(first.side)
    ids = [s.row_id for s in group]
    with psycopg.connect(libpq_dsn(settings, first.side, first.store, "operator")) as src, \
            psycopg.connect(libpq_dsn(settings, other, first.store, "operator")) as dst:
        here, there = _versions(src, first.table, ids), _versions(dst, first.table, ids)
        conflicts = {**conflicts_by_row(src), **conflicts_by_row(dst)}
    todo, done = [], []
    for s in group:
        mine, theirs = here.get(s.row_id), there.get(s.row_id)
        conflict = conflicts.get((s.table, s.row_id))
        if mine is None:
            done.append(CopyOutcome(s, REFUSED, f"no such record on {s.side}"))
        elif theirs == mine:
            done.append(CopyOutcome(s, ALREADY_COPIED, f"{other} holds this version ({mine[0]})"))
        elif conflict is not None:
            done.append(CopyOutcome(s, REFUSED, f"conflicting edit on both sides: the {conflict[1]} version was "
                                    f"kept by rule '{conflict[2]}'; resolve conflict {conflict[0][:12]} instead"))
        elif theirs is not None and theirs[0] >= mine[0]:
            done.append(CopyOutcome(s, REFUSED, f"{other} holds version {theirs[0]}, not older than this one "
                                    f"({mine[0]}): copying it would overwrite a newer or equal change"))
        else:
            todo.append(s)
    return todo, done


def _retry_dead_letters(settings: Settings, todo: list[Selected]) -> tuple[list[Selected], list[CopyOutcome]]:
    """Re-drive the pending dead letters of ``todo``'s records; the records without one, and the outcomes."""
    routes = sorted({route_for_source(s.side) for s in todo})
    codec = message_codec(settings)
    marks = read_retry_marks(settings)
    by_record: dict[tuple[str, str, str], list[Any]] = {}
    for letter in select(read_dead_letters(settings, routes, codec=codec), marks, status="pending"):
        try:
            change = codec.decode_change(letter.record["original_value"])
        except Exception:  # noqa: BLE001 - a letter whose bytes are not a change names no record
            continue
        by_record.setdefault((letter.route, change.table, change.key), []).append(letter)
    rest, done = [], []
    for s in todo:
        letters = by_record.get((route_for_source(s.side), s.table, s.row_id))
        if not letters:
            rest.append(s)
            continue
        marked = retry(settings, letters, marks, say=lambda _m: None)
        where = ", ".join(f"{m.id} to {m.topic}[{m.partition}]@{m.offset}" for m in marked)
        done.append(CopyOutcome(s, RETRIED, f"its dead letter was re-driven ({where}); if what refused it is "
                                "not fixed, it becomes a new dead letter"))
    return rest, done


def _resend(settings: Settings, group: list[Selected], now_ms: Callable[[], int]) -> list[CopyOutcome]:
    """Publish the current state of one side/store/table's records to that side's topic."""
    first = group[0]
    other = other_side(first.side)
    events, skipped = resync_rows(settings, first.side, first.store, first.table, [s.row_id for s in group], now_ms)
    topic = settings.topic(first.side, first.store)
    outcomes = [CopyOutcome(s, REFUSED, _SKIPPED[skipped[s.row_id]].format(side=s.side, other=other))
                for s in group if s.row_id in skipped]
    if events:
        publisher = Publisher(settings, topic, f"platsync-{settings.client_tag(first.side)}-copy-{first.store}")
        try:
            publisher.publish(events)
        except (PlatSyncError, RuntimeError) as exc:
            reason = (f"could not publish to {topic}: {exc}; the link from {first.side} to the broker may be down: "
                      "copy again once it is up")
            return outcomes + [CopyOutcome(s, REFUSED, reason) for s in group if s.row_id not in skipped]
        versions = {e.key: e.version for e in events}
        outcomes += [CopyOutcome(s, RESENT, f"its current state (version {versions[s.row_id]}) was published to "
                                 f"{topic}; {other} applies it unless it holds a newer version")
                     for s in group if s.row_id in versions]
    return outcomes


def copy_selected(settings: Settings, selected: Sequence[Selected],
                  now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> list[CopyOutcome]:
    """Copy each selected record to the other side as far as it can be (module doc); outcomes in the order given."""
    outcomes: dict[Selected, CopyOutcome] = {}
    groups: dict[tuple[str, str, str], list[Selected]] = {}
    for s in dict.fromkeys(selected):
        reason = invalid(s)
        if reason is not None:
            outcomes[s] = CopyOutcome(s, REFUSED, reason)
        else:
            groups.setdefault((s.side, s.store, s.table), []).append(s)
    todo: list[Selected] = []
    for group in groups.values():
        left, done = _triage(settings, group)
        todo += left
        outcomes.update((o.selected, o) for o in done)
    if todo:
        todo, done = _retry_dead_letters(settings, todo)
        outcomes.update((o.selected, o) for o in done)
    regrouped: dict[tuple[str, str, str], list[Selected]] = {}
    for s in todo:
        regrouped.setdefault((s.side, s.store, s.table), []).append(s)
    for group in regrouped.values():
        outcomes.update((o.selected, o) for o in _resend(settings, group, now_ms))
    return [outcomes[s] for s in selected]
