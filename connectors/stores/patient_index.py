"""The patient index (the cloud's ``patient_index`` database; docs/sharing.md, "The patient index").

- ``index_entries``: per common server and document, the latest declaration the server made (held or
  no longer held), with the patient, the home institution, the document type and date. Withdrawn
  entries stay (``present`` false) so that a redelivered older declaration cannot bring them back:
  each server's declarations are ordered by ``seq`` and only a greater one replaces an entry.
- ``index_queries``: who asked where a patient's information is, when, from which node, and how many
  locations the answer named (the audit; the patient id is stored here, never logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from streams.sharing.index import Declaration, IndexEntry, Location, latest_per_record, locations

INDEX_DATABASE = "patient_index"


def index_metadata() -> MetaData:
    """The tables of the cloud's ``patient_index`` database."""
    md = MetaData()
    Table(
        "index_entries", md,
        Column("server", Text, nullable=False),
        Column("record_id", Text, nullable=False),
        Column("patient_id", Text),
        Column("home_node", Text),
        Column("doc_type", Text),
        Column("document_date", DateTime(timezone=True)),
        Column("version", BigInteger, nullable=False),
        Column("present", Boolean, nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("declared_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("server", "record_id"),
        Index("index_entries_patient", "patient_id"),
    )
    Table(
        "index_queries", md,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("asked_by", Text, nullable=False),
        Column("asked_from", Text, nullable=False),
        Column("patient_id", Text, nullable=False),
        Column("locations", Integer, nullable=False),
        Column("asked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return md


def create_index_schema(conn: Connection) -> None:
    """Create the index's tables (idempotent)."""
    index_metadata().create_all(conn)


def apply_declarations(conn: Connection, declarations: Sequence[Declaration]) -> int:
    """Record ``declarations``; an entry is replaced only by a greater ``seq`` of its server (a redelivery
    changes nothing). Returns how many entries changed."""
    entries = index_metadata().tables["index_entries"]
    rows = [{"server": d.server, "record_id": d.record_id, "patient_id": d.patient_id, "home_node": d.home_node,
             "doc_type": d.doc_type, "version": d.version, "present": d.present, "seq": d.seq,
             "document_date": None if d.document_ts_ms is None
             else datetime.fromtimestamp(d.document_ts_ms / 1000, UTC)}
            for d in latest_per_record(declarations)]
    if not rows:
        return 0
    stmt = insert(entries).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[entries.c.server, entries.c.record_id],
        set_={**{name: stmt.excluded[name] for name in rows[0] if name not in ("server", "record_id")},
              "declared_at": func.now()},
        where=entries.c.seq < stmt.excluded.seq,
    ).returning(entries.c.record_id)
    return len(conn.execute(stmt).all())


def find(conn: Connection, patient_id: str, asked_by: str, asked_from: str) -> list[Location]:
    """Where information about ``patient_id`` is (each server and home institution holding shared documents of
    the patient); the query is audited in the same transaction."""
    md = index_metadata()
    entries = md.tables["index_entries"]
    held = [IndexEntry(r.server, r.record_id, r.home_node, r.doc_type, r.document_date)
            for r in conn.execute(select(entries).where(entries.c.patient_id == patient_id,
                                                        entries.c.present.is_(True)))]
    found = locations(held)
    conn.execute(insert(md.tables["index_queries"]).values(asked_by=asked_by, asked_from=asked_from,
                                                           patient_id=patient_id, locations=len(found)))
    return found


def queries(conn: Connection, since: datetime | None = None) -> list[dict[str, object]]:
    """The audit of index queries, oldest first (``since``: those after it)."""
    q = index_metadata().tables["index_queries"]
    stmt = select(q).order_by(q.c.id)
    if since is not None:
        stmt = stmt.where(q.c.asked_at > since)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def entry_counts(conn: Connection) -> dict[str, int]:
    """Documents held per server, as declared (for status)."""
    entries = index_metadata().tables["index_entries"]
    return {r.server: r.n for r in conn.execute(select(entries.c.server, func.count().label("n"))
                                                .where(entries.c.present.is_(True)).group_by(entries.c.server))}
