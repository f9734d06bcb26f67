"""A subscriber's notifications, kept in its ``fructos_subscribed`` (docs/sharing.md).

Each copy that changed the subscriber's store (a new document, or a newer version) and each withdrawal
that removed one is recorded as a notification in the same transaction, keyed by the feed message's id:
so there is exactly one per change, however often the feed is replayed, and that id is the
idempotency key of every delivery. The notifier (:mod:`streams.apply.notifier`) publishes each one to
the node's notification topic, and POSTs it to the node's webhook when one is set, retrying failures
with back-off; every attempt's outcome stays visible here (``platsync notifications list``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

#: Back-off between failed webhook deliveries: doubling from 1 s, at most 5 minutes.
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 300.0


def add_notification_tables(md: MetaData) -> None:
    """The notification tables, in the subscriber's store metadata."""
    Table("notifications", md,
          Column("message_id", Text, primary_key=True),  # the idempotency key
          Column("kind", Text, nullable=False),  # new | changed | withdrawn
          Column("patient_id", Text, nullable=False), Column("record_id", Text, nullable=False),
          Column("source_node", Text, nullable=False), Column("version", BigInteger, nullable=False),
          Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Column("published_at", DateTime(timezone=True)),  # on the node's notification topic
          Column("delivered_at", DateTime(timezone=True)),  # acknowledged by the webhook (2xx)
          Column("attempts", Integer, nullable=False, server_default=text("0")),
          Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Column("last_error", Text))
    Table("notification_webhook", md,
          Column("id", Integer, primary_key=True),  # one row: 1
          Column("url", Text, nullable=False),
          Column("set_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Column("set_by", Text, nullable=False))


def _tables() -> tuple[Table, Table]:
    md = MetaData()
    add_notification_tables(md)
    return md.tables["notifications"], md.tables["notification_webhook"]


def record_notification(conn: Connection, message_id: str, kind: str, patient: str, record_id: str,
                        source_node: str, version: int) -> None:
    """Record one notification (a replay of the same feed message records nothing new)."""
    table, _ = _tables()
    conn.execute(insert(table).values(message_id=message_id, kind=kind, patient_id=patient, record_id=record_id,
                                      source_node=source_node, version=version).on_conflict_do_nothing())


def due_notifications(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Notifications not yet published, or (with a webhook set) not yet delivered to it and due for an
    attempt, oldest first."""
    table, hook = _tables()
    pending = table.c.published_at.is_(None)
    set_at = conn.execute(select(hook.c.set_at)).scalar()
    if set_at is not None:  # the webhook gets what was recorded since it was set, not the history before
        pending = pending | (table.c.delivered_at.is_(None) & (table.c.next_attempt_at <= func.now())
                             & (table.c.created_at >= set_at))
    rows = conn.execute(select(table).where(pending).order_by(table.c.created_at, table.c.message_id).limit(limit))
    return [dict(r._mapping) for r in rows]


def mark_published(conn: Connection, message_ids: Iterable[str]) -> None:
    """The notifications are on the node's topic (acknowledged by the broker)."""
    table, _ = _tables()
    conn.execute(update(table).where(table.c.message_id.in_(list(message_ids)), table.c.published_at.is_(None))
                 .values(published_at=func.now()))


def mark_delivered(conn: Connection, message_id: str) -> None:
    """The webhook acknowledged the notification."""
    table, _ = _tables()
    conn.execute(update(table).where(table.c.message_id == message_id)
                 .values(delivered_at=func.now(), attempts=table.c.attempts + 1, last_error=None))


def mark_failed(conn: Connection, message_id: str, attempts_before: int, error: str) -> datetime:
    """A delivery failed: count it, keep why, and schedule the next attempt; returns when."""
    table, _ = _tables()
    delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** attempts_before)
    when = conn.execute(select(func.now())).scalar_one() + timedelta(seconds=delay)
    conn.execute(update(table).where(table.c.message_id == message_id)
                 .values(attempts=table.c.attempts + 1, last_error=error[:500], next_attempt_at=when))
    return when


def notification_counts(conn: Connection) -> dict[str, Any]:
    """The node's notifications by delivery state (``platsync status``): ``total``, ``unpublished`` (not yet
    on its topic), ``undelivered`` (a webhook is set and has not acknowledged them), ``failing`` (undelivered
    after at least one attempt) and the ``last_error`` of the most recent failure (no PHI: an HTTP status or a
    connection error)."""
    table, hook = _tables()
    webhook = conn.execute(select(hook.c.set_at)).scalar()
    undelivered = table.c.delivered_at.is_(None) & (table.c.created_at >= webhook) if webhook is not None else None
    row = conn.execute(select(
        func.count(), func.count().filter(table.c.published_at.is_(None)),
        func.count().filter(undelivered) if undelivered is not None else text("0"),
        func.count().filter(undelivered & (table.c.attempts > 0)) if undelivered is not None else text("0"),
    )).one()
    last_error = conn.execute(select(table.c.last_error).where(table.c.last_error.is_not(None), table.c.delivered_at
                              .is_(None)).order_by(table.c.next_attempt_at.desc()).limit(1)).scalar()
    return {"total": row[0], "unpublished": row[1], "undelivered": row[2], "failing": row[3],
            "webhook": webhook is not None, "last_error": last_error}


def list_notifications(conn: Connection, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every notification (created at or after ``since``), oldest first, with its delivery state."""
    table, _ = _tables()
    query = select(table).order_by(table.c.created_at, table.c.message_id)
    if since is not None:
        query = query.where(table.c.created_at >= since)
    return [dict(r._mapping) for r in conn.execute(query)]


def set_webhook(conn: Connection, url: str, actor: str) -> None:
    """Set the node's webhook (an empty ``url`` removes it: notifications are then only published)."""
    _, hook = _tables()
    if not url:
        conn.execute(hook.delete())
        return
    stmt = insert(hook).values(id=1, url=url, set_by=actor)
    conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"url": url, "set_by": actor,
                                                                         "set_at": func.now()}))


def get_webhook(conn: Connection) -> str:
    """The node's webhook URL, or ``""``."""
    _, hook = _tables()
    return conn.execute(select(hook.c.url)).scalar() or ""
