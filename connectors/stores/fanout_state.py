"""The cloud's ``sharing`` database: subscriptions, and the fan-out's record of what it has sent.

- ``subscriptions``: what operators and the API asked for (node, patient, when, by whom);
- ``fanout_subscriptions``: the subscriptions the fan-out has opened on their subscriber's feed (a
  ``subscribe`` and its snapshot sent), each with an id that names its messages;
- ``shared_documents``: every document the shared store holds (or held: withdrawn ones stay, with
  their version), as the fan-out has seen them go by, each with its latest ``copy`` message.

:func:`fan_out` turns one batch of captured changes into feed messages. It first opens the
subscriptions asked for since the last batch (their snapshot comes from ``shared_documents``, i.e.
from exactly the changes processed before this batch) and closes the ones removed, then routes the
batch with the subscriptions now open: a change is either in a snapshot or routed live, never
neither. The caller produces the messages, then commits this transaction, then the consumer offsets;
a crash in between replays the batch, which the subscriber's version guard absorbs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from streams.core.model import REPLICA_STORE, ChangeEvent, RowValue
from streams.routing.matrix_model import Matrix
from streams.routing.replica import route_replica
from streams.sharing.feed import (
    FeedMessage,
    decode_feed_message,
    encode_feed_message,
    feed_for_change,
    subscribe_feed,
    unsubscribe_feed,
)
from streams.sharing.gate import is_document_record
from streams.sharing.subscriptions import SOURCE_COLUMN

SHARING_DATABASE = "sharing"


def sharing_metadata() -> MetaData:
    """The tables of the cloud's ``sharing`` database."""
    md = MetaData()
    Table("subscriptions", md,
          Column("node", Text, nullable=False), Column("patient_id", Text, nullable=False),
          Column("subscribed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Column("subscribed_by", Text, nullable=False),
          PrimaryKeyConstraint("node", "patient_id"))
    Table("fanout_subscriptions", md,
          Column("node", Text, nullable=False), Column("patient_id", Text, nullable=False),
          Column("subscription_id", Text, nullable=False),
          Column("opened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          PrimaryKeyConstraint("node", "patient_id"))
    Table("subscription_audit", md,
          Column("id", BigInteger, Identity(), primary_key=True),
          Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Column("actor", Text, nullable=False), Column("action", Text, nullable=False),
          Column("node", Text, nullable=False), Column("patient_id", Text, nullable=False))
    Table("shared_documents", md,
          Column("id", Text, primary_key=True), Column("home", Text, nullable=False),
          Column("patient_id", Text, nullable=False), Column("version", BigInteger, nullable=False),
          Column("withdrawn", Boolean, nullable=False),
          Column("copy_message", LargeBinary),  # the latest copy (subscriber ""); None once withdrawn
          Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()))
    return md


def create_sharing_schema(conn: Connection) -> None:
    """Create the ``sharing`` database's tables (idempotent)."""
    sharing_metadata().create_all(conn)


def add_subscription(conn: Connection, node: str, patient: str, actor: str) -> bool:
    """Ask for ``node``'s subscription to ``patient`` (audited); False if it was already asked for."""
    md = sharing_metadata()
    asked = md.tables["subscriptions"]
    added = bool(conn.execute(insert(asked).values(node=node, patient_id=patient, subscribed_by=actor)
                              .on_conflict_do_nothing().returning(asked.c.node)).all())
    conn.execute(insert(md.tables["subscription_audit"]).values(
        actor=actor, action="subscribe" if added else "subscribe (already subscribed)", node=node,
        patient_id=patient))
    return added


def remove_subscription(conn: Connection, node: str, patient: str, actor: str) -> bool:
    """End ``node``'s subscription to ``patient`` (audited); False if there was none."""
    md = sharing_metadata()
    asked = md.tables["subscriptions"]
    removed = bool(conn.execute(delete(asked).where(asked.c.node == node, asked.c.patient_id == patient)
                                .returning(asked.c.node)).all())
    conn.execute(insert(md.tables["subscription_audit"]).values(
        actor=actor, action="unsubscribe" if removed else "unsubscribe (not subscribed)", node=node,
        patient_id=patient))
    return removed


def list_subscriptions(conn: Connection, node: str | None = None) -> list[dict[str, object]]:
    """The subscriptions asked for (of ``node``, or all), each with whether the fan-out has opened it yet and
    how many shared documents of other institutions it covers."""
    md = sharing_metadata()
    asked, opened, docs = (md.tables[n] for n in ("subscriptions", "fanout_subscriptions", "shared_documents"))
    covered = (select(func.count()).where(docs.c.patient_id == asked.c.patient_id, docs.c.home != asked.c.node,
                                          docs.c.withdrawn.is_(False)).scalar_subquery())
    query = (select(asked.c.node, asked.c.patient_id, asked.c.subscribed_at, asked.c.subscribed_by,
                    opened.c.opened_at, covered.label("documents"))
             .outerjoin(opened, (opened.c.node == asked.c.node) & (opened.c.patient_id == asked.c.patient_id))
             .order_by(asked.c.node, asked.c.patient_id))
    if node is not None:
        query = query.where(asked.c.node == node)
    return [dict(r._mapping) for r in conn.execute(query)]


def fan_out(conn: Connection, changes: Sequence[tuple[str, ChangeEvent]], matrix: Matrix,
            now_ms: int | None = None) -> list[FeedMessage]:
    """The feed messages for one batch of ``(home, change)`` pairs, in order (see the module docstring)."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    md = sharing_metadata()
    messages, open_now = _open_and_close(conn, md, now_ms)
    subscribers: dict[str, list[str]] = {}
    for node, patient in sorted(open_now):
        subscribers.setdefault(patient, []).append(node)
    for home, change in changes:
        # A change older than what was already seen (a replay) is not sent again: the messages of the
        # first pass were produced before its transaction committed.
        if _record(conn, md.tables["shared_documents"], home, change, matrix):
            for feed in feed_for_change(change, matrix, home, subscribers).values():
                messages.extend(feed)
    return messages


def _open_and_close(conn: Connection, md: MetaData, now_ms: int) -> tuple[list[FeedMessage], set[tuple[str, str]]]:
    """Open the subscriptions asked for and close the removed ones: their messages, and the (node, patient)
    pairs open now (what ``subscriptions`` asks for)."""
    asked, opened, docs = (md.tables[n] for n in ("subscriptions", "fanout_subscriptions", "shared_documents"))
    wanted = {(n, p) for n, p in conn.execute(select(asked.c.node, asked.c.patient_id))}
    have = {(n, p): s for n, p, s in conn.execute(select(opened.c.node, opened.c.patient_id,
                                                         opened.c.subscription_id))}
    messages: list[FeedMessage] = []
    for node, patient in sorted(have.keys() - wanted):
        messages.append(unsubscribe_feed(node, patient, have[node, patient], now_ms))
        conn.execute(delete(opened).where(opened.c.node == node, opened.c.patient_id == patient))
    for node, patient in sorted(wanted - have.keys()):
        subscription_id = f"sub-{uuid.uuid4()}"
        held = conn.execute(select(docs.c.home, docs.c.copy_message).where(
            docs.c.patient_id == patient, docs.c.home != node, docs.c.withdrawn.is_(False)).order_by(docs.c.id))
        messages.extend(subscribe_feed(node, patient, ((home, _row(encoded)) for home, encoded in held),
                                       subscription_id, now_ms))
        conn.execute(insert(opened).values(node=node, patient_id=patient, subscription_id=subscription_id))
    return messages, wanted


def _row(encoded: bytes) -> dict[str, RowValue]:
    row = decode_feed_message(encoded).row
    assert row is not None  # a copy message always carries its row (FeedMessage checks it)
    return row


def _record(conn: Connection, docs: Table, home: str, change: ChangeEvent, matrix: Matrix) -> bool:
    """Keep ``shared_documents`` equal to what the shared store holds of documents (version-guarded);
    False if the change concerns no subscriber's document or is older than what was seen."""
    decision = route_replica(change, matrix, REPLICA_STORE)
    image = change.row if change.row is not None else change.before
    if not decision.writes or not is_document_record(change.table, image) or image is None:
        return False
    patient = image.get("patient_id")
    if not isinstance(patient, str) or not patient:
        return False
    (write,) = decision.writes
    withdrawn = write.op != "upsert"
    encoded = None if withdrawn or write.row is None else encode_feed_message(FeedMessage(
        "copy", "", patient, write.event_id, change.commit_ts_ms, record_id=write.key, source_node=home,
        version=write.version, row={**write.row, SOURCE_COLUMN: home}))
    values = {"id": write.key, "home": home, "patient_id": patient, "version": write.version,
              "withdrawn": withdrawn, "copy_message": encoded}
    stmt = insert(docs).values(**values)
    return bool(conn.execute(stmt.on_conflict_do_update(
        index_elements=["id"], set_={**{k: stmt.excluded[k] for k in values if k != "id"}, "updated_at": func.now()},
        # A withdrawal at the same version as the copy it removes wins; an older change never lands.
        where=(docs.c.version < stmt.excluded.version)
        | ((docs.c.version == stmt.excluded.version) & stmt.excluded.withdrawn & ~docs.c.withdrawn),
    ).returning(docs.c.id)).all())
