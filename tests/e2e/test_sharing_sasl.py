"""The sharing processes on a TLS + SASL broker endpoint: each authenticates as its own principal.

The real broker behind the link proxy with ``sasl_ssl`` (tests/support/secure_broker.py) and the session's
PostgreSQL with the sharing roles provisioned: the fan-out, a hospital's subscriber and its notifier, the
indexer and a declarer do their work through the endpoint, and the proxy names the user each connection
authenticated as: the plan's principal of that process (``platsync access --topology``), never the operator's.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.pool import NullPool

from connectors.stores.fanout_state import create_sharing_schema, sharing_metadata
from connectors.stores.fructos import PostgresSignedRecordStore
from connectors.stores.patient_index import create_index_schema
from connectors.stores.subscribed import create_subscribed_schema
from infra.local.broker_secrets import ensure_broker_secrets
from infra.local.databases import postgres_instance
from infra.local.sharing_roles import grant_sharing_database
from streams.apply.declarer import build_declarer
from streams.apply.fanout import build_fanout
from streams.apply.indexer import build_indexer
from streams.apply.subscriber import build_notifier, build_subscriber
from streams.core.codec import decode, encode_change
from streams.core.model import REPLICA_STORE
from streams.runtime.connections import dsn
from streams.runtime.credentials import APP, role_name
from streams.runtime.kafka_config import BrokerSecurityError, client_config
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from streams.sharing.feed import decode_feed_message, feed_topic
from streams.sharing.index import decode_declaration, index_topic
from tests.e2e.test_fanout_state import document
from tests.e2e.test_feed_processes import incoming, read_all
from tests.e2e.test_patient_index import approved
from tests.support.secure_broker import running_secure_broker

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]
CLOUD, HOSPITAL = "remote", "local"
STORES = ((CLOUD, "sharing", create_sharing_schema, "subscriptions, fanout_subscriptions, shared_documents"),
          (CLOUD, "patient_index", create_index_schema, "index_entries, index_queries"),
          (HOSPITAL, "fructos_subscribed", create_subscribed_schema,
           "signed_records, subscribed_patients, withdrawn_records, notifications, notification_webhook"),
          (CLOUD, REPLICA_STORE, None, "signed_records, platsync_index_outbox, platsync_tombstone"))


@pytest.fixture(scope="module")
def network(pg_settings: Settings) -> Iterator[tuple[Settings, Settings]]:
    """(the network's settings, hospital hosp-b's link settings) on a sasl_ssl broker endpoint."""
    cloud = dataclasses.replace(pg_settings, topic_prefix=f"sasl{uuid.uuid4().hex[:6]}",
                                broker_security_protocol="sasl_ssl", network_servers="cloud")
    link = dataclasses.replace(cloud, topic_prefix=f"{cloud.topic_prefix}.hosp-b", network_link="hosp-b")
    for node, database, create, tables in STORES:
        postgres_instance(cloud, node).ensure_databases((database,))
        engine = create_engine(dsn(cloud, node, database), poolclass=NullPool)
        with engine.begin() as conn:
            if create is not None:
                create(conn)
            conn.execute(text(f"TRUNCATE {tables}"))
        grant_sharing_database(link if node == HOSPITAL else cloud, node, database,
                               [role_name(cloud, CLOUD, APP)] if database == "sharing" else [])
    ensure_broker_secrets(link)  # the hospital's subscriber user, before the endpoint reads the users
    with running_secure_broker(cloud):
        ensure_topics(client_config(cloud, "platsync-test-admin"), [
            feed_topic(cloud.topic_prefix, "hosp-b"), f"{cloud.topic_prefix}.dlq.fanout",
            f"{link.topic_prefix}.dlq.subscriber", f"{link.topic_prefix}.notifications",
            index_topic(cloud.topic_prefix, "cloud"), f"{cloud.topic_prefix}.dlq.indexer"], real_cluster=False)
        yield cloud, link


def authenticated(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The users the link proxy authenticated (its debug log)."""
    return {m.group(1) for r in caplog.records if r.name == "platsync.link"
            if (m := re.fullmatch(r"authenticated (\S+)", r.getMessage()))}


def test_each_sharing_process_authenticates_as_its_own_principal(network: tuple[Settings, Settings],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    cloud, link = network
    caplog.set_level(logging.DEBUG, logger="platsync.link")
    prefix = cloud.topic_prefix
    with create_engine(dsn(cloud, CLOUD, "sharing"), poolclass=NullPool).begin() as conn:
        conn.execute(insert(sharing_metadata().tables["subscriptions"]).values(
            node="hosp-b", patient_id="p-1", subscribed_by="test"))
    fanout, topics = build_fanout(cloud, ["hosp-a"])
    try:
        fanout.apply([incoming(topics[0], 0, encode_change(document("r-sasl", 1)))])
    finally:
        fanout.close()
    feed = read_all(link, feed_topic(prefix, "hosp-b"), 2)
    assert [decode_feed_message(v).kind for v in feed] == ["subscribe", "copy"]

    subscriber = build_subscriber(link, "hosp-b")
    notifier = build_notifier(link, "hosp-b", subscriber.engine)
    try:
        subscriber.apply([incoming(feed_topic(prefix, "hosp-b"), i, v) for i, v in enumerate(feed)])
        assert notifier.run_once().published == 1
    finally:
        subscriber.close()
    assert decode("notification", read_all(link, f"{link.topic_prefix}.notifications", 1)[0])["kind"] == "new"

    with create_engine(dsn(cloud, CLOUD, REPLICA_STORE), poolclass=NullPool).begin() as conn:
        assert PostgresSignedRecordStore(conn).copy(approved("d-sasl"))
    declarer = build_declarer(cloud, "cloud", CLOUD)
    try:
        assert declarer.run_once() == 1
    finally:
        declarer.close()
    (declared,) = read_all(cloud, index_topic(prefix, "cloud"), 1)
    indexer = build_indexer(cloud, ["cloud"])
    try:
        indexer.apply([incoming(index_topic(prefix, "cloud"), 0, declared),
                       incoming(index_topic(prefix, "cloud"), 1, b"junk")])  # its dead letter: its own producer
    finally:
        indexer.close()
    assert decode_declaration(declared).record_id == "d-sasl"
    assert decode("dead_letter", read_all(cloud, f"{prefix}.dlq.indexer", 1)[0])["error_kind"] == "decode"

    users = authenticated(caplog)
    assert {f"{prefix}-fanout", f"{link.topic_prefix}-subscriber", f"{prefix}-declarer-cloud",
            f"{prefix}-indexer"} <= users, users


def test_a_process_outside_the_network_has_no_user(network: tuple[Settings, Settings]) -> None:
    cloud, _ = network
    with pytest.raises(BrokerSecurityError, match="unknown Kafka principal"):
        client_config(cloud, "platsync-test", "declarer-elsewhere")
