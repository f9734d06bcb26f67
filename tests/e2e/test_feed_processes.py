"""The fan-out and the subscriber's worker on the real broker and PostgreSQL (issue 15, docs/sharing.md).

Their batch step, driven directly: the fan-out turns captured change events into messages of the
subscriber's feed topic; bad input on either side (bytes that are no message, a copy the store refuses)
ends in the process's dead-letter topic with the reason, and the rest of the batch is applied.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from bench.fanout_receiver import WebhookReceiver
from connectors.stores.fanout_state import create_sharing_schema, sharing_metadata
from connectors.stores.notifications import list_notifications, set_webhook
from connectors.stores.subscribed import create_subscribed_schema
from infra.local.databases import postgres_instance
from infra.local.sharing_roles import grant_sharing_database
from streams.apply.fanout import build_fanout
from streams.apply.subscriber import build_notifier, build_subscriber
from streams.core.codec import decode, encode_change
from streams.runtime.connections import dsn
from streams.runtime.credentials import APP, role_name
from streams.runtime.deadletter import IncomingMessage
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from streams.sharing.feed import FeedMessage, decode_feed_message, encode_feed_message, feed_topic
from tests.e2e.test_fanout_state import document
from tests.e2e.test_subscribed_store import row
from tests.support.stack import running_broker

pytestmark = pytest.mark.e2e
STORES = (("remote", "sharing", create_sharing_schema, "subscriptions, fanout_subscriptions, shared_documents"),
          ("local", "fructos_subscribed", create_subscribed_schema,
           "signed_records, subscribed_patients, withdrawn_records, notifications, notification_webhook"))


@pytest.fixture(scope="module")
def settings(pg_settings: Settings) -> Iterator[Settings]:
    """The session's PostgreSQL with both stores emptied, and a broker of this module's own."""
    s = dataclasses.replace(pg_settings, topic_prefix=f"feedtest{uuid.uuid4().hex[:6]}")
    for side, name, create, tables in STORES:
        postgres_instance(s, side).ensure_databases((name,))
        engine = create_engine(dsn(s, side, name))
        with engine.begin() as conn:
            create(conn)
            conn.execute(text(f"TRUNCATE {tables}"))
        engine.dispose()
        # The processes connect with their own roles (the fan-out's, the subscriber's), as on a network.
        grant_sharing_database(s, side, name, app_roles=[role_name(s, side, APP)] if name == "sharing" else [])
    with running_broker(s):
        yield s


def admin(settings: Settings, side: str, database: str) -> Engine:
    """An engine on ``database`` as the admin (what operators and the provisioning do; the processes cannot)."""
    return create_engine(dsn(settings, side, database), poolclass=NullPool)


def read_all(settings: Settings, topic: str, count: int) -> list[bytes]:
    """The first ``count`` values of ``topic`` (waits up to 30 s for them)."""
    consumer = Consumer({**client_config(settings, "platsync-test-read"), "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])  # one partition; no group join to wait for
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < count:
            assert time.monotonic() < deadline, f"{topic}: {len(values)} of {count} messages"
            values += [m.value() for m in consumer.consume(10, 1.0) if m.error() is None]
    finally:
        consumer.close()
    return values


def incoming(topic: str, offset: int, value: bytes) -> IncomingMessage:
    return IncomingMessage(topic, 0, offset, None, value)


def test_the_fan_out_feeds_the_subscriber_and_dead_letters_what_it_cannot_decode(settings: Settings) -> None:
    fanout, topics = build_fanout(settings, ["hosp-a", "hosp-b"])
    ensure_topics(client_config(settings, "platsync-test-admin"),
                  [f"{settings.topic_prefix}.dlq.fanout"], real_cluster=False)
    with admin(settings, "remote", "sharing").begin() as conn:  # what the subscription APIs do
        conn.execute(insert(sharing_metadata().tables["subscriptions"]).values(
            node="hosp-b", patient_id="p-1", subscribed_by="test"))
    home_a = f"{settings.topic_prefix}.hosp-a.local.fructos_own"
    assert home_a in topics
    try:
        fanout.apply([incoming(home_a, 0, encode_change(document("r1", 1))), incoming(home_a, 1, b"not a change"),
                      incoming(home_a, 2, encode_change(document("r2", 1, patient="p-2")))])
    finally:
        fanout.close()
    feed = [decode_feed_message(v) for v in read_all(settings, feed_topic(settings.topic_prefix, "hosp-b"), 2)]
    assert [(m.kind, m.record_id) for m in feed] == [("subscribe", None), ("copy", "r1")]  # not patient p-2
    (letter,) = [decode("dead_letter", v) for v in read_all(settings, f"{settings.topic_prefix}.dlq.fanout", 1)]
    assert (letter["error_kind"], letter["source_offset"], letter["original_value"]) == ("decode", 1, b"not a change")
    assert "ChangeEvent" in letter["hint"]


def test_the_subscriber_applies_what_it_can_and_dead_letters_the_rest(settings: Settings) -> None:
    link = dataclasses.replace(settings, topic_prefix=f"{settings.topic_prefix}.hosp-b")
    ensure_topics(client_config(link, "platsync-test-admin"), [f"{link.topic_prefix}.dlq.subscriber"],
                  real_cluster=False)
    subscriber = build_subscriber(link, "hosp-b")
    topic = feed_topic(settings.topic_prefix, "hosp-b")
    opening = FeedMessage("subscribe", "hosp-b", "p-1", "s:subscribe", 1)
    good = FeedMessage("copy", "hosp-b", "p-1", "e-good", 1, record_id="good", source_node="hosp-a", version=1,
                       row=row("good", 1))
    refused = FeedMessage("copy", "hosp-b", "p-1", "e-bad", 1, record_id="bad", source_node="hosp-a", version=1,
                          row={**row("bad", 1), "column_from_a_newer_version": "x"})
    elsewhere = FeedMessage("subscribe", "hosp-c", "p-1", "s2:subscribe", 1)
    try:
        subscriber.apply([incoming(topic, i, encode_feed_message(m)) if m else incoming(topic, i, b"\x00junk")
                          for i, m in enumerate((opening, refused, None, good, elsewhere))])
        with subscriber.engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT id FROM signed_records"))] == ["good"]
    finally:
        subscriber.close()
    letters = [decode("dead_letter", v) for v in read_all(link, f"{link.topic_prefix}.dlq.subscriber", 3)]
    assert sorted((d["error_kind"], d["source_offset"]) for d in letters) == [
        ("decode", 2), ("store_refused", 1), ("wrong_subscriber", 4)]
    refused_letter = next(d for d in letters if d["error_kind"] == "store_refused")
    assert "column_from_a_newer_version" in refused_letter["error"] and "upgrade" in refused_letter["hint"]


def test_notifications_are_published_and_delivered_once_each_through_failures(settings: Settings) -> None:
    link = dataclasses.replace(settings, topic_prefix=f"{settings.topic_prefix}.hosp-b")
    topic = f"{link.topic_prefix}.notifications"
    ensure_topics(client_config(link, "platsync-test-admin"), [topic], real_cluster=False)
    subscriber = build_subscriber(link, "hosp-b")
    notifier = build_notifier(link, "hosp-b", subscriber.engine)
    feed = feed_topic(settings.topic_prefix, "hosp-b")
    store = admin(link, "local", "fructos_subscribed")
    with store.begin() as conn:
        conn.execute(text("TRUNCATE signed_records, subscribed_patients, notifications, notification_webhook"))
    try:
        with WebhookReceiver(fail_first=2) as hook:
            with store.begin() as conn:  # an operator's 'platsync notifications webhook'
                set_webhook(conn, hook.url, "test")
            messages = [FeedMessage("subscribe", "hosp-b", "p-9", "s9:subscribe", 1),
                        *(FeedMessage("copy", "hosp-b", "p-9", f"e-n{i}", 1, record_id=f"n{i}", source_node="hosp-a",
                                      version=1, row=row(f"n{i}", 1, patient="p-9")) for i in range(3))]
            batch = [incoming(feed, i, encode_feed_message(m)) for i, m in enumerate(messages)]
            subscriber.apply(batch)
            subscriber.apply(batch)  # the feed replayed: no new notification
            deadline = time.monotonic() + 30
            while set(hook.acknowledged()) != {"e-n0", "e-n1", "e-n2"}:  # 503, 503, then back-off (1 s, 2 s)
                assert time.monotonic() < deadline, hook.requests
                notifier.run_once()
                time.sleep(0.2)
            for _ in range(3):
                notifier.run_once()  # nothing due any more: nothing sent again
            assert hook.duplicates() == [] and len(hook.requests) == 5  # 2 refused + 3 delivered
            assert {b["kind"] for _, b, _ in hook.requests} == {"new"}
            with subscriber.engine.connect() as conn:
                rows = list_notifications(conn)
            assert [(n["message_id"], n["published_at"] is not None, n["delivered_at"] is not None) for n in rows] \
                == [("e-n0", True, True), ("e-n1", True, True), ("e-n2", True, True)]
            assert sum(n["attempts"] for n in rows) == 5
            published = [decode("notification", v) for v in read_all(link, topic, 3)]
            assert sorted(p["idempotency_key"] for p in published) == ["e-n0", "e-n1", "e-n2"]
    finally:
        subscriber.close()
