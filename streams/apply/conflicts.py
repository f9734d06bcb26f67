"""Conflicts recorded by the sinks (``platsync_conflict``), read and resolved across both sides.

Every database store of both sides keeps the conflicts its sink detected (see
``docs/conflicts.md``). A conflict between the two sides is usually detected on both, under the
same id (it names the store, the row and the version that lost); :func:`collect` merges those
detections into one :class:`Conflict`. Resolving marks every detection resolved, on every side
and store where it was recorded. Nothing here changes a data row; restoring a lost document
version is a new API call (:func:`restore_document_loser`), which syncs like any other.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.sinks import conflict_rule as rule
from streams.core.errors import PlatSyncError, RetryableError
from streams.core.model import DATABASE_STORES, SIDES, other_side
from streams.runtime.connections import libpq_dsn
from streams.runtime.kept_connections import KeptConnections, connection
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

STATUSES = ("open", "resolved", "all")
_COLUMNS = ("conflict_id, store, table_name, row_id, local_row, remote_row, local_api_id, remote_api_id, "
            "winner, rule, detected_on, detected_at, event_id, status, resolved_at, resolution")


class ConflictLookupError(PlatSyncError, LookupError):
    """No conflict, or more than one, matches the id (prefix) given."""


class StoresUnreachableError(RetryableError, RuntimeError):
    """Some stores could not be read or written; what was done is described in the message."""


@dataclass(frozen=True)
class Detection:
    """One side's record of a conflict (one ``platsync_conflict`` row)."""

    side: str
    store: str
    conflict_id: str
    table: str
    row_id: str
    local_row: dict[str, Any]
    remote_row: dict[str, Any]
    local_api_id: str | None
    remote_api_id: str | None
    winner: str
    rule: str
    detected_at: datetime
    event_id: str | None
    status: str
    resolved_at: datetime | None
    resolution: str | None

    def winner_key(self) -> rule.RankKey | str:
        """Ordering key of the version this detection kept (a Keycloak account: its fingerprint)."""
        kept = self.local_row if self.winner == "local" else self.remote_row
        if "version" not in kept:  # Keycloak account summaries (connectors/sinks/keycloak_conflicts.py)
            return str(kept.get("fingerprint", ""))
        return rule.rank_key(kept)


@dataclass
class Conflict:
    """A conflict with every detection of it (one per side that saw it)."""

    conflict_id: str
    detections: list[Detection] = field(default_factory=list)

    @property
    def primary(self) -> Detection:
        """The detection whose kept version is the greatest: the latest view of the conflict."""
        return max(self.detections, key=lambda d: (d.winner_key(), d.side))

    @property
    def status(self) -> str:
        """``open`` while any side still has it open, else ``resolved``."""
        return "open" if any(d.status == "open" for d in self.detections) else "resolved"

    @property
    def detected_on(self) -> list[str]:
        """Sides that detected it, sorted."""
        return sorted({d.side for d in self.detections})

    @property
    def loser(self) -> str:
        """The side whose version lost."""
        return other_side(self.primary.winner)

    def differing_fields(self) -> list[str]:
        """Columns whose value differs between the local and the remote version."""
        p = self.primary
        return sorted(k for k in set(p.local_row) | set(p.remote_row) if p.local_row.get(k) != p.remote_row.get(k))

    def as_json(self) -> dict[str, Any]:
        """JSON-friendly view (times as ISO 8601)."""
        p = self.primary
        resolved = [d for d in self.detections if d.status == "resolved"]
        return {
            "conflict_id": self.conflict_id, "store": p.store, "table": p.table, "row_id": p.row_id,
            "status": self.status, "winner": p.winner, "rule": p.rule, "detected_on": self.detected_on,
            "local_api_id": p.local_api_id, "remote_api_id": p.remote_api_id,
            "local_row": p.local_row, "remote_row": p.remote_row, "differing_fields": self.differing_fields(),
            "resolution": resolved[0].resolution if resolved and self.status == "resolved" else None,
            "detections": [{"side": d.side, "winner": d.winner, "rule": d.rule, "status": d.status,
                            "detected_at": d.detected_at.isoformat(), "event_id": d.event_id,
                            "resolved_at": d.resolved_at.isoformat() if d.resolved_at else None,
                            "resolution": d.resolution,
                            "local_version": d.local_row.get("version"),
                            "remote_version": d.remote_row.get("version")} for d in self.detections],
        }


def _stores() -> list[tuple[str, str]]:
    return [(side, store) for side in SIDES for store in DATABASE_STORES[side]]


def _dsn(settings: Settings, side: str, store: str) -> str:
    return libpq_dsn(settings, side, store, "operator") + " connect_timeout=5"


def _connect(settings: Settings, side: str, store: str) -> psycopg.Connection[Any]:
    return psycopg.connect(_dsn(settings, side, store), row_factory=dict_row)


def _has_table(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('platsync_conflict') IS NOT NULL AS present").fetchone()
    return bool(row and row["present"])


def read_detections(settings: Settings, where: str = "", params: tuple[Any, ...] = ()
                    ) -> tuple[list[Detection], list[str]]:
    """Every detection in every store of both sides (optionally filtered by a SQL ``where``),
    and a description of each store that could not be read."""
    found: list[Detection] = []
    unreachable: list[str] = []
    for side, store in _stores():
        try:
            with _connect(settings, side, store) as conn:
                if not _has_table(conn):
                    continue
                rows = conn.execute(f"SELECT {_COLUMNS} FROM platsync_conflict {where} "  # noqa: S608
                                    "ORDER BY detected_at, conflict_id", params).fetchall()
        except psycopg.OperationalError as exc:
            unreachable.append(f"{side}/{store}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
            continue
        for r in rows:
            found.append(Detection(side, store, r["conflict_id"], r["table_name"], r["row_id"], r["local_row"],
                                   r["remote_row"], r["local_api_id"], r["remote_api_id"], r["winner"], r["rule"],
                                   r["detected_at"], r["event_id"], r["status"], r["resolved_at"],
                                   r["resolution"]))
    return found, unreachable


def merge(detections: list[Detection]) -> list[Conflict]:
    """Group detections by conflict id, in order of first detection."""
    merged: dict[str, Conflict] = {}
    for d in sorted(detections, key=lambda d: (d.detected_at, d.conflict_id, d.side)):
        merged.setdefault(d.conflict_id, Conflict(d.conflict_id)).detections.append(d)
    return list(merged.values())


def collect(settings: Settings, status: str = "open") -> tuple[list[Conflict], list[str]]:
    """Conflicts of both sides with the given merged status (``open``, ``resolved``, ``all``),
    and the stores that could not be read."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
    detections, unreachable = read_detections(settings)
    conflicts = merge(detections)
    return [c for c in conflicts if status == "all" or c.status == status], unreachable


def find(settings: Settings, id_prefix: str) -> Conflict:
    """The one conflict whose id starts with ``id_prefix``; :class:`ConflictLookupError` otherwise."""
    prefix = id_prefix.strip().lower()
    if not prefix or any(ch not in "0123456789abcdef" for ch in prefix):
        raise ConflictLookupError(f"no conflict with id {id_prefix!r}: ids are hexadecimal (see 'platsync "
                                  "conflicts list')")
    detections, unreachable = read_detections(settings, "WHERE conflict_id LIKE %s", (prefix + "%",))
    conflicts = merge(detections)
    if not conflicts:
        where = f" (unreadable: {'; '.join(unreachable)})" if unreachable else ""
        raise ConflictLookupError(f"no conflict with id {id_prefix!r}{where}; see 'platsync conflicts list "
                                  "--status all'")
    if len(conflicts) > 1:
        raise ConflictLookupError(f"id prefix {id_prefix!r} is ambiguous: "
                                  f"{', '.join(c.conflict_id for c in conflicts)}")
    return conflicts[0]


def resolve(settings: Settings, conflict: Conflict, note: str) -> list[str]:
    """Mark ``conflict`` resolved with ``note`` wherever it is recorded; return ``side/store`` of each
    record changed (empty if it was already resolved everywhere)."""
    changed: list[str] = []
    failed: list[str] = []
    for side, store in sorted({(d.side, d.store) for d in conflict.detections}):
        try:
            with _connect(settings, side, store) as conn:
                cur = conn.execute("UPDATE platsync_conflict SET status = 'resolved', resolved_at = now(), "
                                   "resolution = %s WHERE conflict_id = %s AND status = 'open'",
                                   (note, conflict.conflict_id))
                if cur.rowcount:
                    changed.append(f"{side}/{store}")
        except psycopg.OperationalError as exc:
            failed.append(f"{side}/{store}: {exc}")
    if failed:
        raise StoresUnreachableError(f"conflict {conflict.conflict_id} resolved in {', '.join(changed) or 'no store'}"
                                     f", but not in: {'; '.join(failed)}; run the command again when they are up")
    return changed


def open_conflict_count(settings: Settings, connections: KeptConnections | None = None) -> int:
    """How many distinct conflicts are open on either side (stores that cannot be read are
    skipped and logged: a conflict is normally recorded on both sides; ``connections``: kept open
    between calls)."""
    ids: set[str] = set()
    for side, store in _stores():
        try:
            with connection(connections, _dsn(settings, side, store), row_factory=dict_row) as conn:
                if _has_table(conn):
                    ids.update(r["conflict_id"] for r in conn.execute(
                        "SELECT conflict_id FROM platsync_conflict WHERE status = 'open'").fetchall())
        except psycopg.OperationalError as exc:
            log.warning("open conflicts: %s/%s unreadable: %s", side, store, exc)
    return len(ids)


def restore_document_loser(settings: Settings, conflict: Conflict, side: str,
                           signed_by: str | None = None) -> tuple[dict[str, Any], Conflict | None]:
    """Re-apply the lost version of a META document on ``side`` with PRV_DOC_007 (title, doc_type
    and, from the companion conflict of its signed record, media type and content).

    The call makes a new version on top of the kept one; it syncs to the other side like any
    update. Returns the API's result and the companion signed-record conflict (if found).
    Raises ``ValueError`` for a conflict that is not about a document, and the API's own errors
    (for example when the kept version is a deletion).
    """
    # deferred: the reference API (SQLAlchemy stores, Keycloak client): ~0.6 s
    from connectors.reference_api.service import ReferenceApi

    p = conflict.primary
    if (p.store, p.table) != ("meta", "documents"):
        raise ValueError(f"--restore-loser handles META documents; conflict {conflict.conflict_id} is about "
                         f"{p.store}/{p.table}: re-enter the lost values with the API that owns that record")
    lost = p.local_row if conflict.loser == "local" else p.remote_row
    change: dict[str, Any] = {"id": p.row_id, "title": lost["title"], "doc_type": lost["doc_type"]}
    detections, _ = read_detections(settings, "WHERE store = 'fructos_own' AND row_id = %s", (lost["record_id"],))
    records = [c for c in merge(detections) if (c.primary.local_row if c.loser == "local" else
                                                c.primary.remote_row).get("content_hash") == lost["content_hash"]]
    companion = records[-1] if records else None
    if records:
        rec = records[-1].primary
        rec_row = rec.local_row if records[-1].loser == "local" else rec.remote_row
        base64.b64decode(rec_row["content"], validate=True)  # stored base64: must decode
        change.update(media_type=rec_row["media_type"], content_base64=rec_row["content"],
                      signed_by=signed_by or rec_row["signed_by"])
    elif signed_by:
        change["signed_by"] = signed_by
    else:
        raise ValueError(f"the lost version's signed record is not in any fructos_own conflict: give --signed-by "
                         f"to re-sign document {p.row_id} with its lost title and type")
    with ReferenceApi(settings, side) as api:
        return api.call("PRV_DOC_007", {"documents": [change]}), companion
