"""The recovery difference report: what each side entered during an outage, and its fate.

Seed 003 (WebORCA hybrid) asks for a tool that lists, after an outage, which records entered
during it can be copied back and which cannot. Here every record a side's APIs wrote during the
window is listed with one status:

- ``copied``: the other side holds exactly this state (same version and update time);
- ``copyable``: the other side does not hold it yet but nothing stands in the way; the engine
  copies it as soon as the link and the workers allow (``platsync wait-synced`` tells when);
- ``not_copyable``: it will not arrive as entered, with the reason: the target refused it (a
  dead letter, with the error and hint), or the same record was changed on the other side too
  and that version won by the conflict rule (the conflict id is given; ``platsync conflicts
  show`` has both versions). A version that lost a conflict is found in the conflict records
  (its row now holds the winner), by its own update time.

Which API transaction last wrote a row is read from PostgreSQL's ``xmin`` and the
``platsync_txn_marker`` rows (as in ``connectors.capture.resync``); the window defaults to the
last emergency of either side (``streams.apply.mode_state``), from the last moment the two sides
were known in contact (the newest heartbeat of the other side each side received before the
emergency; the earlier of the two when both sides were in emergency) to the end of that emergency.
An outage is detected only ``mode_peer_timeout_s`` (or the publish timeout) after the cut, and
records entered in between are part of it. Emergencies recorded before the last contact was kept
start at their detection, and the report says so. A record entered during the window and changed
again after it is reported under its later change, outside the window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from connectors.stores.tables import sent_rows, sent_tables
from streams.apply.mode_state import EmergencyWindow, emergencies
from streams.core.model import DATABASE_STORES, SIDES, other_side, route_for_source
from streams.ops.dlq import redact
from streams.runtime.confluent_wire import codec_for
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings

COPIED, COPYABLE, NOT_COPYABLE = "copied", "copyable", "not_copyable"
#: Human-facing column shown per table, so that staff recognise the record.
LABELS = {"documents": "document_number", "patients": "patient_number", "staff": "staff_code",
          "plat_users": "login_id", "signed_records": "entity", "master_medical_orgs": "name"}
_XID_MODULUS = 2**32


@dataclass(frozen=True)
class Entry:
    """One record entered on ``side`` during the window."""

    side: str
    store: str
    table: str
    row_id: str
    label: str | None
    version: int
    entered_at: str
    api_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class Window:
    """The report's window: [start_ms, end_ms] (end None: until now), and where its start comes from."""

    start_ms: int
    end_ms: int | None
    basis: str = "given"  # "given" (--since), "last_contact" or "detection" (older mode state)
    detected_ms: int | None = None  # when the outage was detected (default windows only)

    def note(self) -> str:
        """One line on where the start comes from (empty for a window given by hand)."""
        if self.basis == "last_contact":
            return (f"window starts at the last heartbeat the sides exchanged before the outage "
                    f"(detected at {_iso(self.detected_ms or self.start_ms)})")
        if self.basis == "detection":
            return ("note: the mode state of this outage predates the recording of the last contact, so the "
                    "window starts when the outage was detected: records entered between the cut and its "
                    "detection are not listed; give an earlier --since to include them")
        return ""


def _overlaps(a: EmergencyWindow, b: EmergencyWindow) -> bool:
    return ((a.end_ts_ms is None or a.end_ts_ms >= b.start_ts_ms)
            and (b.end_ts_ms is None or b.end_ts_ms >= a.start_ts_ms))


def outage_window(windows: Sequence[EmergencyWindow]) -> Window | None:
    """The window of the latest outage, or None if no emergency was recorded.

    The latest emergency (by detection) of either side ends it. It starts at the last contact
    recorded with that emergency, or with the other side's emergency of the same outage (an
    overlapping one) when that is earlier: each side only knows when it last heard the other.
    An emergency recorded without its last contact (older mode state) counts from its detection.
    """
    if not windows:
        return None
    latest = max(windows, key=lambda w: w.start_ts_ms)
    same = [w for w in windows if _overlaps(w, latest)]
    start = min(w.start_ts_ms if w.contact_ts_ms is None else w.contact_ts_ms for w in same)
    basis = "detection" if any(w.contact_ts_ms is None for w in same) else "last_contact"
    return Window(start, latest.end_ts_ms, basis, min(w.start_ts_ms for w in same))


def last_outage(settings: Settings) -> Window | None:
    """:func:`outage_window` of both sides' recorded emergencies."""

    return outage_window([w for side in SIDES for w in emergencies(settings, side)])


def dead_lettered_keys(settings: Settings, route: str, timeout_s: float = 3.0) -> dict[tuple[str, str], str]:
    """(table, key) -> "error (hint)" of every change of ``route`` in its dead-letter topic."""

    codec = codec_for(settings, register=False)  # plain framing, or the registry's wire format (read only)
    consumer = Consumer({**client_config(settings, "platsync-admin-report"),
                         "group.id": f"platsync-report-{time.time_ns()}", "enable.auto.commit": False})
    found: dict[tuple[str, str], str] = {}
    try:
        consumer.assign([TopicPartition(settings.dead_letter_topic(route), 0, 0)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None:
                continue
            if msg.error() is not None:
                continue
            deadline = time.monotonic() + 1.0
            try:
                letter = codec.decode("dead_letter", msg.value())
                change = codec.decode_change(letter["original_value"])
            except Exception:  # noqa: BLE001 - garbage has no record to report
                continue
            # Masked as 'platsync dlq list' masks it: a store's error quotes the row's values.
            found[(change.table, change.key)] = f"{redact(str(letter['error']))} ({letter['hint']})"
    finally:
        consumer.close()
    return found


def conflicts_by_row(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(table, row id) -> (conflict id, winner side, rule) recorded in this database, if any."""
    exists = conn.execute("SELECT to_regclass('platsync_conflict') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT table_name, row_id, conflict_id, winner, rule FROM platsync_conflict "
                        "ORDER BY detected_at").fetchall()
    return {(t, r): (cid, winner, rule) for t, r, cid, winner, rule in rows}


def _lost_in_conflicts(conns: list[psycopg.Connection[Any]], store: str, start_ms: int,
                       end_ms: int | None) -> list[Entry]:
    """Versions entered in the window that lost a conflict (their rows now hold the winner)."""
    seen: set[str] = set()
    entries = []
    for conn in conns:
        exists = conn.execute("SELECT to_regclass('platsync_conflict') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            continue
        for cid, table, row_id, winner, rule, local_row, remote_row, local_api, remote_api in conn.execute(
                "SELECT conflict_id, table_name, row_id, winner, rule, local_row, remote_row, local_api_id, "
                "remote_api_id FROM platsync_conflict WHERE table_name <> 'keycloak_account' ORDER BY detected_at"):
            loser = other_side(winner)
            row = remote_row if loser == "remote" else local_row
            entered = _ms(row.get("updated_at"))
            if cid in seen or entered is None or entered < start_ms or (end_ms is not None and entered > end_ms):
                continue
            seen.add(cid)
            entries.append(Entry(loser, store, table, row_id, row.get(LABELS.get(table, "")), int(row["version"]),
                                 _iso(entered), (remote_api if loser == "remote" else local_api) or "?",
                                 NOT_COPYABLE, f"conflicting edit on both sides: the {winner} version was kept by "
                                 f"rule '{rule}'; this version is kept in conflict {cid[:12]} ('platsync "
                                 "conflicts show')"))
    return entries


def _ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _entered(conn: psycopg.Connection[Any], side: str, table: str, start_ms: int,
             end_ms: int | None) -> list[tuple[dict[str, Any], str, int]]:
    """Rows last written by an API call of ``side`` inside the window, with the API and time."""
    markers = {txid % _XID_MODULUS: (api, created) for txid, api, created in conn.execute(
        "SELECT txid, api_id, (extract(epoch from created_at) * 1000)::bigint FROM platsync_txn_marker "
        "WHERE NOT applied_by_sync AND origin_side = %s AND created_at >= to_timestamp(%s / 1000.0) "
        "AND (%s::bigint IS NULL OR created_at <= to_timestamp(%s / 1000.0))",
        (side, start_ms, end_ms, end_ms))}
    if not markers:
        return []
    label = LABELS.get(table)
    cur = conn.execute(f"SELECT xmin::text::bigint, id, version, updated_at, {label or 'NULL'} FROM {table} "
                       f"WHERE {sent_rows(table)}")
    out = []
    for xmin, row_id, version, updated_at, label_value in cur:
        if xmin in markers:
            api, created = markers[xmin]
            out.append(({"id": row_id, "version": version, "updated_at": updated_at, "label": label_value},
                        api, created))
    return out


def build_report(settings: Settings, start_ms: int, end_ms: int | None) -> list[Entry]:
    """Every record entered on either side in [start_ms, end_ms] with its copy status."""
    entries: list[Entry] = []
    for side in SIDES:
        other = other_side(side)
        rejected = dead_lettered_keys(settings, route_for_source(side))
        for store in DATABASE_STORES[side]:
            if store not in DATABASE_STORES[other]:
                continue  # fructos_patient exists in the cloud only; nothing is copied back into it
            with psycopg.connect(libpq_dsn(settings, side, store, "operator")) as src, \
                    psycopg.connect(libpq_dsn(settings, other, store, "operator")) as dst:
                conflicts = {**conflicts_by_row(src), **conflicts_by_row(dst)}
                if side == SIDES[0]:  # each store's conflicts once (they name both sides)
                    entries.extend(_lost_in_conflicts([src, dst], store, start_ms, end_ms))
                for table in sent_tables(store, side):
                    rows = _entered(src, side, table, start_ms, end_ms)
                    ids = [r["id"] for r, _, _ in rows]
                    there = {i: (v, u) for i, v, u in dst.execute(
                        f"SELECT id, version, updated_at FROM {table} WHERE id = ANY(%s)", (ids,))}
                    for row, api, created in rows:
                        status, reason = _fate(row, there.get(row["id"]), rejected.get((table, row["id"])),
                                               conflicts.get((table, row["id"])), other)
                        entries.append(Entry(side, store, table, row["id"], row["label"], row["version"],
                                             _iso(created), api, status, reason))
    return entries


def _fate(row: dict[str, Any], there: tuple[int, datetime] | None, rejected: str | None,
          conflict: tuple[str, str, str] | None, other: str) -> tuple[str, str]:
    if there == (row["version"], row["updated_at"]):
        return COPIED, f"{other} holds this version"
    if rejected is not None:
        return NOT_COPYABLE, f"refused by the {other} store: {rejected}; see the dead-letter topic"
    if conflict is not None:
        conflict_id, winner, rule = conflict
        return NOT_COPYABLE, (f"conflicting edit on both sides: {winner} version kept by rule '{rule}'; "
                              f"both versions in conflict {conflict_id[:12]} ('platsync conflicts show')")
    if there is None or there[0] < row["version"]:
        return COPYABLE, f"not yet on {other}; copied when the link and the workers allow"
    return NOT_COPYABLE, (f"{other} holds a different version {there[0]} of this record "
                          "(changed on both sides; see 'platsync conflicts list')")


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def render(entries: list[Entry], start_ms: int, end_ms: int | None, note: str = "") -> str:
    """The report as a text table with a summary per side and status (``note``: a line on the window)."""
    lines = [f"records entered between {_iso(start_ms)} and {_iso(end_ms) if end_ms else 'now'}"]
    if note:
        lines.append(note)
    for side in SIDES:
        mine = [e for e in entries if e.side == side]
        counts = {s: sum(1 for e in mine if e.status == s) for s in (COPIED, COPYABLE, NOT_COPYABLE)}
        lines.append(f"{side}: {len(mine)} entered: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    lines.append(f"{'side':6}  {'store/table':28}  {'record':12}  {'label':14}  {'api':11}  {'status':12}  reason")
    for e in sorted(entries, key=lambda e: (e.side, e.status != NOT_COPYABLE, e.store, e.table, e.entered_at)):
        lines.append(f"{e.side:6}  {e.store + '/' + e.table:28}  {e.row_id[:12]:12}  {str(e.label or '')[:14]:14}  "
                     f"{e.api_id:11}  {e.status:12}  {e.reason}")
    return "\n".join(lines)


def as_json(entries: list[Entry], start_ms: int, end_ms: int | None,
            window: Window | None = None) -> dict[str, Any]:
    """The report as JSON-friendly data; ``window`` adds where its start comes from (``basis``). Each entry's
    ``id`` (side/store/table/row_id) names it to ``platsync recovery-copy``."""
    described: dict[str, Any] = {"start": _iso(start_ms), "end": _iso(end_ms) if end_ms else None}
    if window is not None:
        described.update(basis=window.basis, detected=None if window.detected_ms is None else _iso(window.detected_ms),
                         note=window.note())
    return {"window": described,
            "entries": [{"id": f"{e.side}/{e.store}/{e.table}/{e.row_id}", **asdict(e)} for e in entries]}
