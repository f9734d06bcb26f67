"""A subscriber's store, ``fructos_subscribed``: other institutions' shared documents of its patients.

The hospital keeps here, read-only, the copies its feed (``platsync.<node>.sub``,
:mod:`streams.sharing.feed`) brings: each a signed record as the cloud's shared store holds it, marked
with ``source_node``, its home institution. Nothing here is captured or sent back. Applying a batch of
feed messages is idempotent and never lets an older version overwrite a newer one:

- ``subscribe`` records the patient; ``unsubscribe`` deletes every copy of the patient and forgets it, so
  a copy still in flight for it afterwards is ignored;
- ``copy`` upserts the record if the patient is subscribed and it is later than both the copy held and
  any withdrawal seen (a replayed old copy cannot bring back a withdrawn document);
- ``withdraw`` deletes a copy it is later than, and remembers the withdrawal.

"Later" is the order ``(seq, version)``: ``seq`` is the fan-out's order of a record's states
(:mod:`connectors.stores.fanout_state`), which the version alone is not -- the two states of a conflict
share a version, and the conflict rule may put a copy after a withdrawal at the same version. Copies and
withdrawals received before ``seq`` existed have 0 and compare by version, as they did.

Each copy or withdrawal that changed the store records a notification in the same transaction
(:mod:`connectors.stores.notifications`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    delete,
    func,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from connectors.stores.notifications import add_notification_tables, notification_counts, record_notification
from connectors.stores.tables import ADDED_COLUMNS, coerce_row, signed_records_table
from streams.sharing.feed import FeedMessage
from streams.sharing.subscriptions import SOURCE_COLUMN, SUBSCRIBED_STORE

__all__ = ["SUBSCRIBED_STORE", "FeedApplyResult", "apply_feed", "create_subscribed_schema", "subscribed_metadata",
           "subscriber_counts"]


def subscribed_metadata() -> MetaData:
    """The tables of ``fructos_subscribed``: the copies, the subscribed patients, the withdrawals seen."""
    md = MetaData()
    signed_records_table(md, Column(SOURCE_COLUMN, Text, nullable=False),
                         Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
                         Column(SEQ_COLUMN, BigInteger, nullable=False, server_default=text("0")))
    Table("subscribed_patients", md,
          Column("patient_id", Text, primary_key=True),
          Column("subscribed_at", DateTime(timezone=True), nullable=False, server_default=func.now()))
    add_notification_tables(md)
    Table("withdrawn_records", md,
          Column("id", Text, primary_key=True),
          Column("patient_id", Text, nullable=False),
          Column(SOURCE_COLUMN, Text, nullable=False),
          Column("version", BigInteger, nullable=False),
          Column(SEQ_COLUMN, BigInteger, nullable=False, server_default=text("0")))
    return md


#: The column keeping the fan-out's ``seq`` of a copy or a withdrawal (see the module docstring).
SEQ_COLUMN = "feed_seq"


def create_subscribed_schema(conn: Connection) -> None:
    """Create the store's tables (idempotent; adds ``feed_seq`` to tables made before it)."""
    subscribed_metadata().create_all(conn)
    for table in ("signed_records", "withdrawn_records"):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {SEQ_COLUMN} bigint NOT NULL DEFAULT 0"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS signed_records_patient ON signed_records (patient_id)"))


@dataclass
class FeedApplyResult:
    """What one batch did: copies written, messages that changed nothing (replays, stale versions, copies of
    a patient no longer subscribed), copies removed, and patients subscribed/unsubscribed."""

    applied: int = 0
    unchanged: int = 0
    removed: int = 0
    subscribed: int = 0
    unsubscribed: int = 0

    def add(self, other: FeedApplyResult) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def apply_feed(conn: Connection, messages: Iterable[FeedMessage]) -> FeedApplyResult:
    """Apply feed messages in order, inside the caller's transaction (see the module docstring)."""
    md = subscribed_metadata()
    records, patients, withdrawn = (md.tables[n] for n in ("signed_records", "subscribed_patients",
                                                           "withdrawn_records"))
    result = FeedApplyResult()
    # Read once per batch (the caller's transaction holds it), kept in step with the batch's (un)subscribes.
    subscribed = {r[0] for r in conn.execute(select(patients.c.patient_id))}
    for m in messages:
        if m.kind == "subscribe":
            done = _count(conn, insert(patients).values(patient_id=m.patient_id).on_conflict_do_nothing()
                          .returning(patients.c.patient_id))
            subscribed.add(m.patient_id)
            result.subscribed += done
            result.unchanged += 1 - done
        elif m.kind == "unsubscribe":
            result.removed += _count(conn, delete(records).where(records.c.patient_id == m.patient_id)
                                     .returning(records.c.id))
            result.unsubscribed += _count(conn, delete(patients).where(patients.c.patient_id == m.patient_id)
                                          .returning(patients.c.patient_id))
            subscribed.discard(m.patient_id)
        elif m.patient_id not in subscribed:
            result.unchanged += 1  # in flight when the subscription ended (or before it began)
        elif m.kind == "copy":
            outcome = _upsert_copy(conn, records, withdrawn, m)
            result.applied += outcome is not None
            result.unchanged += outcome is None
            if outcome is not None:
                _notify(conn, m, outcome)
        else:
            removed = _withdraw(conn, records, withdrawn, m)
            result.removed += removed
            result.unchanged += 1 - removed
            if removed:
                _notify(conn, m, "withdrawn")
    return result


def _notify(conn: Connection, m: FeedMessage, kind: str) -> None:
    assert m.record_id is not None and m.source_node is not None  # FeedMessage checks copy and withdraw
    record_notification(conn, m.message_id, kind, m.patient_id, m.record_id, m.source_node, m.version)


def _upsert_copy(conn: Connection, records: Table, withdrawn: Table, m: FeedMessage) -> str | None:
    """``new`` or ``changed`` if the copy changed the store, None if it did not (replay, earlier state)."""
    floor = conn.execute(select(withdrawn.c[SEQ_COLUMN], withdrawn.c.version).where(
        withdrawn.c.id == m.record_id)).first()
    if floor is not None and (m.seq, m.version) <= tuple(floor):
        return None
    assert m.row is not None  # FeedMessage refuses a copy without a row
    row: dict[str, Any] = {**ADDED_COLUMNS["signed_records"], **m.row, SOURCE_COLUMN: m.source_node}
    values = {**coerce_row(records, row), SEQ_COLUMN: m.seq}
    stmt = insert(records).values(**values)
    updated = {k: stmt.excluded[k] for k in values if k != "id"}
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={**updated, "received_at": func.now()},
                                      where=tuple_(records.c[SEQ_COLUMN], records.c.version)
                                      < tuple_(stmt.excluded[SEQ_COLUMN], stmt.excluded.version))
    # xmax is 0 on a row this statement inserted, not on one it updated.
    done = conn.execute(stmt.returning(literal_column("xmax = 0"))).all()
    return None if not done else ("new" if done[0][0] else "changed")


def _withdraw(conn: Connection, records: Table, withdrawn: Table, m: FeedMessage) -> int:
    stmt = insert(withdrawn).values(id=m.record_id, patient_id=m.patient_id, source_node=m.source_node,
                                    version=m.version, **{SEQ_COLUMN: m.seq})
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["id"], set_={"version": stmt.excluded.version, SEQ_COLUMN: stmt.excluded[SEQ_COLUMN]},
        where=tuple_(withdrawn.c[SEQ_COLUMN], withdrawn.c.version) < tuple_(stmt.excluded[SEQ_COLUMN],
                                                                          stmt.excluded.version)))
    return _count(conn, delete(records).where(
        records.c.id == m.record_id, tuple_(records.c[SEQ_COLUMN], records.c.version) <= tuple_(m.seq, m.version))
        .returning(records.c.id))


def _count(conn: Connection, statement: Any) -> int:
    """Rows a statement with RETURNING touched (the driver's rowcount is not reliable for upserts)."""
    return len(conn.execute(statement).all())


def subscriber_counts(conn: Connection) -> dict[str, Any]:
    """What a subscriber holds (``platsync status``): patients, copies, when the last copy arrived, and its
    notifications (:func:`connectors.stores.notifications.notification_counts`)."""
    md = subscribed_metadata()
    records, patients = md.tables["signed_records"], md.tables["subscribed_patients"]
    copies, last = conn.execute(select(func.count(), func.max(records.c.received_at))).one()
    return {"patients": conn.execute(select(func.count()).select_from(patients)).scalar_one(), "copies": copies,
            "last_received_at": None if last is None else last.isoformat(), "notifications": notification_counts(conn)}
