"""The cloud's ``sharing`` database: subscriptions, and the fan-out's record of what it has sent.

- ``subscriptions``: what operators and the API asked for (node, patient, when, by whom);
- ``fanout_subscriptions``: the subscriptions the fan-out has opened on their subscriber's feed (a
  ``subscribe`` and its snapshot sent), each with an id that names its messages;
- ``shared_documents``: every document the shared store holds (or held: withdrawn ones stay, with
  their state's rank), as the fan-out has seen them go by, each with its latest ``copy`` message.

Which state of a document wins is the conflict rule's (:mod:`connectors.sinks.conflict_rule`), the
rule of the shared store's own sink, so the subscribers hold what that store holds even when the two
parties of a home link wrote the same version during a cut. Every state the fan-out accepts draws the
next value of a database sequence, carried by its messages as ``seq``: the subscribers keep the
greatest, and a value is never reused, even by a batch rolled back and replayed in another order.

:func:`fan_out` turns one batch of captured changes into feed messages. It first opens the
subscriptions asked for since the last batch (their snapshot comes from ``shared_documents``, i.e.
from exactly the changes processed before this batch) and closes the ones removed, then routes the
batch with the subscriptions now open: a change is either in a snapshot or routed live, never
neither. The caller produces the messages, then commits this transaction, then the consumer offsets;
a crash in between replays the batch, which the subscriber's version guard absorbs.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

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
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from connectors.sinks import conflict_rule as rule
from connectors.stores.tables import ADDED_COLUMNS, coerce_row, signed_records_table
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
          Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          *(Column(name, type_, nullable=False, server_default=default)
            for name, (type_, default) in RANK_COLUMNS.items()))
    return md


#: The conflict rule's rank of the state kept, beside ``version`` (added to data dirs made before it).
RANK_COLUMNS = {"rank_deleted": (Boolean, text("false")), "rank_approved": (Boolean, text("false")),
                "rank_content_hash": (Text, text("''")),
                "rank_updated_at": (DateTime(timezone=True), text("'epoch'")),
                "rank_row_hash": (Text, text("''")), "seq": (BigInteger, text("0"))}
SEQUENCE = "shared_documents_seq"


def create_sharing_schema(conn: Connection) -> None:
    """Create the ``sharing`` database's tables (idempotent; adds the rank columns to older ones)."""
    md = sharing_metadata()
    md.create_all(conn)
    conn.execute(text(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE}"))
    docs = md.tables["shared_documents"]
    for name in RANK_COLUMNS:
        column = docs.c[name]
        conn.execute(text(f"ALTER TABLE shared_documents ADD COLUMN IF NOT EXISTS {name} "
                          f"{column.type.compile(conn.dialect)} NOT NULL DEFAULT {column.server_default.arg.text}"))


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


def subscription_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Per node: the subscriptions asked for and those the fan-out has opened on its feed (``platsync status``)."""
    md = sharing_metadata()
    counts: dict[str, dict[str, int]] = {}
    for name, table in (("asked", md.tables["subscriptions"]), ("open", md.tables["fanout_subscriptions"])):
        for node, n in conn.execute(select(table.c.node, func.count()).group_by(table.c.node)):
            counts.setdefault(node, {"asked": 0, "open": 0})[name] = n
    return counts


def fan_out(conn: Connection, changes: Sequence[tuple[str, ChangeEvent]], matrix: Matrix,
            now_ms: int | None = None) -> list[FeedMessage]:
    """The feed messages for one batch of ``(home, change)`` pairs, in order (see the module docstring)."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    md = sharing_metadata()
    messages, open_now = _open_and_close(conn, md, now_ms)
    subscribers: dict[str, list[str]] = {}
    for node, patient in sorted(open_now):
        subscribers.setdefault(patient, []).append(node)
    signed_records = signed_records_table(MetaData())
    for home, change in changes:
        # A change that does not beat what was already seen (a replay, a conflict's loser) is not sent: the
        # messages of a first pass were produced before its transaction committed.
        seq = _record(conn, md.tables["shared_documents"], signed_records, home, change, matrix)
        if seq is not None:
            for feed in feed_for_change(change, matrix, home, subscribers).values():
                messages.extend(dataclasses.replace(m, seq=seq) for m in feed)
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
        held = conn.execute(select(docs.c.home, docs.c.copy_message, docs.c.seq).where(
            docs.c.patient_id == patient, docs.c.home != node, docs.c.withdrawn.is_(False)).order_by(docs.c.id))
        messages.extend(subscribe_feed(node, patient, ((home, _row(encoded), seq) for home, encoded, seq in held),
                                       subscription_id, now_ms))
        conn.execute(insert(opened).values(node=node, patient_id=patient, subscription_id=subscription_id))
    return messages, wanted


def _row(encoded: bytes) -> dict[str, RowValue]:
    row = decode_feed_message(encoded).row
    assert row is not None  # a copy message always carries its row (FeedMessage checks it)
    return row


def _record(conn: Connection, docs: Table, signed_records: Table, home: str, change: ChangeEvent,
            matrix: Matrix) -> int | None:
    """Keep ``shared_documents`` equal to what the shared store holds of documents (ranked by the conflict
    rule); the state's new ``seq``, or None if the change concerns no subscriber's document or does not beat
    what was seen."""
    decision = route_replica(change, matrix, REPLICA_STORE)
    image = change.row if change.row is not None else change.before
    if not decision.writes or not is_document_record(change.table, image) or image is None:
        return None
    patient = image.get("patient_id")
    if not isinstance(patient, str) or not patient:
        return None
    (write,) = decision.writes
    withdrawn = write.op != "upsert"
    encoded = None if withdrawn or write.row is None else encode_feed_message(FeedMessage(
        "copy", "", patient, write.event_id, change.commit_ts_ms, record_id=write.key, source_node=home,
        version=write.version, row={**write.row, SOURCE_COLUMN: home}))  # its seq is the column's (snapshots)
    values = {"id": write.key, "home": home, "patient_id": patient, "version": write.version,
              "withdrawn": withdrawn, "copy_message": encoded, **_rank(signed_records, write.row)}
    # Every attempt draws a sequence value, kept only if the state wins: gaps are harmless, reuse is not.
    stmt = insert(docs).values(**values, seq=func.nextval(SEQUENCE))
    kept, offered = tuple_(*(docs.c[n] for n in RANKED)), tuple_(*(stmt.excluded[n] for n in RANKED))
    return conn.execute(stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={**{k: stmt.excluded[k] for k in (*values, "seq") if k != "id"}, "updated_at": func.now()},
        where=kept < offered,  # the conflict rule: the greater rank wins; replays and losers change nothing
    ).returning(docs.c.seq)).scalar()


#: The rank columns in the conflict rule's order (connectors/sinks/conflict_rule.py).
RANKED = ("rank_deleted", "rank_approved", "version", "rank_content_hash", "rank_updated_at", "rank_row_hash")


def _rank(signed_records: Table, row: dict[str, RowValue] | None) -> dict[str, object]:
    """The rank columns of a state but its version: the conflict rule's key of the row the shared store's
    sink would hold (a hard delete, without a row, ranks as deleted)."""
    if row is None:
        return {"rank_deleted": True, "rank_approved": False, "rank_content_hash": "",
                "rank_updated_at": datetime(1970, 1, 1, tzinfo=UTC), "rank_row_hash": ""}
    key = rule.rank_key(coerce_row(signed_records, {**ADDED_COLUMNS["signed_records"], **row}))
    return {"rank_deleted": key.deleted, "rank_approved": key.approved, "rank_content_hash": key.content_hash,
            "rank_updated_at": key.updated_at, "rank_row_hash": key.row_sha256 or ""}
