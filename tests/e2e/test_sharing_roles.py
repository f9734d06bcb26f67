"""The sharing processes' database roles on a real PostgreSQL (streams/ops/sharing_access.py, docs/security.md).

Provisioned as ``platsync up --topology`` does (infra/local/sharing_roles.py), each role does exactly what its
process does, through the process's own store functions, and PostgreSQL refuses it what it must not do: the
fan-out cannot ask for a subscription, the subscription APIs cannot read the fan-out's copies, the subscriber
cannot set its webhook nor reach the cloud's ``sharing`` or the hospital's own stores, the indexer cannot read
the query audit, the declarer cannot read or write a signed record, and none of them may create a table.
"""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from connectors.reference_api.subscriptions_api import SubscriptionsApi
from connectors.stores.fanout_state import create_sharing_schema, fan_out
from connectors.stores.fructos import PostgresSignedRecordStore
from connectors.stores.index_outbox import pending, published
from connectors.stores.notifications import due_notifications, mark_published, set_webhook
from connectors.stores.patient_index import apply_declarations, create_index_schema, index_metadata
from connectors.stores.subscribed import apply_feed, create_subscribed_schema
from infra.local.databases import postgres_instance
from infra.local.sharing_roles import grant_sharing_database
from streams.core.model import REPLICA_STORE
from streams.routing.matrix_model import load_matrix
from streams.runtime.connections import dsn, libpq_dsn
from streams.runtime.credentials import APP, DECLARER, FANOUT, INDEXER, SUBSCRIBER, role_credentials, role_name
from streams.runtime.settings import Settings
from streams.sharing.feed import FeedMessage
from streams.sharing.index import Declaration
from tests.e2e.test_fanout_state import document
from tests.e2e.test_patient_index import approved
from tests.e2e.test_subscribed_store import row

pytestmark = pytest.mark.e2e
CLOUD, HOSPITAL = "remote", "local"
#: (node, database, schema, tables emptied first)
STORES = ((CLOUD, "sharing", create_sharing_schema, "subscriptions, fanout_subscriptions, shared_documents"),
          (CLOUD, "patient_index", create_index_schema, "index_entries, index_queries"),
          (HOSPITAL, "fructos_subscribed", create_subscribed_schema,
           "signed_records, subscribed_patients, withdrawn_records, notifications, notification_webhook"))


def admin(s: Settings, node: str, database: str) -> Engine:
    return create_engine(dsn(s, node, database), poolclass=NullPool)


def as_role(s: Settings, node: str, database: str, role: str) -> Engine:
    """An engine on ``database`` as ``role`` (the process's own connection string)."""
    return create_engine(dsn(s, node, database, role), poolclass=NullPool)


def connect(s: Settings, node: str, database: str, role: str) -> psycopg.Connection:
    return psycopg.connect(libpq_dsn(s, node, database, role) + " connect_timeout=5", autocommit=True)


@pytest.fixture(scope="module")
def settings(pg_settings: Settings) -> Settings:
    """The session's PostgreSQL with the sharing databases emptied and their roles provisioned."""
    for node, database, create, tables in STORES:
        postgres_instance(pg_settings, node).ensure_databases((database,))
        engine = admin(pg_settings, node, database)
        with engine.begin() as conn:
            create(conn)
            conn.execute(text(f"TRUNCATE {tables}"))
        app = [role_name(pg_settings, CLOUD, APP)] if database == "sharing" else []
        assert grant_sharing_database(pg_settings, node, database, app_roles=app)
    assert grant_sharing_database(pg_settings, CLOUD, REPLICA_STORE) == ["platsync_declarer"]
    with admin(pg_settings, CLOUD, REPLICA_STORE).begin() as conn:
        conn.execute(text("TRUNCATE signed_records, platsync_index_outbox, platsync_tombstone"))
    return pg_settings


def refused(engine: Engine, statement: str) -> None:
    """PostgreSQL refuses ``statement`` to the engine's role for want of a privilege."""
    with pytest.raises(Exception) as info, engine.begin() as conn:
        conn.execute(text(statement))
    assert isinstance(getattr(info.value, "orig", None), errors.InsufficientPrivilege), info.value


def test_the_subscription_apis_and_the_fan_out_do_their_part_only(settings: Settings) -> None:
    api = SubscriptionsApi(dataclasses.replace(settings, network_link="hosp-b"), "local")
    try:
        assert api.call("PLAT_SUB_001", {"patient_id": "p-1", "requested_by": "dr-b"})["subscribed"] is True
        fanout = as_role(settings, CLOUD, "sharing", FANOUT)
        with fanout.begin() as conn:  # the fan-out's batch: opens the subscription, records the document
            messages = fan_out(conn, [("hosp-a", document("r-roles", 1))], load_matrix())
        assert [(m.kind, m.subscriber) for m in messages] == [("subscribe", "hosp-b"), ("copy", "hosp-b")]
        (listed,) = api.call("PLAT_SUB_003", {})["subscriptions"]
        assert (listed["patient_id"], listed["documents"], listed["opened_at"] is not None) == ("p-1", 1, True)
        assert api.call("PLAT_SUB_002", {"patient_id": "p-1", "requested_by": "dr-b"})["unsubscribed"] is True
    finally:
        api.close()
    refused(fanout, "INSERT INTO subscriptions (node, patient_id, subscribed_by) VALUES ('hosp-c', 'p-1', 'x')")
    refused(fanout, "INSERT INTO subscription_audit (actor, action, node, patient_id) VALUES ('x', 'x', 'x', 'x')")
    refused(fanout, "DELETE FROM shared_documents")
    refused(fanout, "CREATE TABLE fanout_ddl (x int)")
    app = as_role(settings, CLOUD, "sharing", APP)
    refused(app, "SELECT copy_message FROM shared_documents")  # other institutions' copies: never
    refused(app, "UPDATE fanout_subscriptions SET subscription_id = 'x'")
    refused(app, "SELECT nextval('shared_documents_seq')")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect(settings, CLOUD, "patient_index", APP).close()


def test_the_subscriber_applies_its_feed_and_notifies_but_reaches_nothing_else(settings: Settings) -> None:
    with admin(settings, HOSPITAL, "fructos_subscribed").begin() as conn:
        set_webhook(conn, "http://127.0.0.1:9/hook", "operator:test")  # an operator sets it, as the admin
    subscriber = as_role(settings, HOSPITAL, "fructos_subscribed", SUBSCRIBER)
    messages = [FeedMessage("subscribe", "hosp-b", "p-1", "s:subscribe", 1),
                FeedMessage("copy", "hosp-b", "p-1", "e-role", 1, record_id="role-1", source_node="hosp-a",
                            version=1, row=row("role-1", 1)),
                FeedMessage("withdraw", "hosp-b", "p-1", "e-role-w", 2, record_id="role-1", source_node="hosp-a",
                            version=1, seq=1)]
    with subscriber.begin() as conn:
        result = apply_feed(conn, messages)
        assert (result.subscribed, result.applied, result.removed) == (1, 1, 1)
        due = due_notifications(conn)
        assert [n["message_id"] for n in due] == ["e-role", "e-role-w"]
        mark_published(conn, [n["message_id"] for n in due])
    refused(subscriber, "UPDATE notification_webhook SET url = 'http://elsewhere.example'")
    refused(subscriber, "INSERT INTO notification_webhook (id, url, set_by) VALUES (2, 'http://x', 'x')")
    refused(subscriber, "UPDATE notifications SET kind = 'new', record_id = 'other'")  # delivery state only
    refused(subscriber, "DELETE FROM notifications")
    refused(subscriber, "CREATE TABLE subscriber_ddl (x int)")
    for database in ("meta", "fructos_own"):  # the hospital's own stores
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            connect(settings, HOSPITAL, database, SUBSCRIBER).close()
    # The cloud's sharing database: the subscriber's credentials (its hospital's) open nothing on the cloud.
    user, password = role_credentials(settings, HOSPITAL, SUBSCRIBER)
    with pytest.raises(psycopg.OperationalError, match="authentication failed|does not exist"):
        psycopg.connect(host=settings.pg_host(CLOUD), port=settings.pg_port(CLOUD), dbname="sharing", user=user,
                        password=password, connect_timeout=5).close()


def test_the_indexer_records_declarations_but_cannot_read_the_query_audit(settings: Settings) -> None:
    indexer = as_role(settings, CLOUD, "patient_index", INDEXER)
    declaration = Declaration("cloud", 1, "d-role", "p-1", "hosp-a", "referral", 2, True, 1_700_000_000_000)
    with indexer.begin() as conn:
        assert apply_declarations(conn, [declaration]) == 1
        assert apply_declarations(conn, [dataclasses.replace(declaration, seq=2, present=False)]) == 1
    with admin(settings, CLOUD, "patient_index").connect() as conn:
        entries = index_metadata().tables["index_entries"]
        assert conn.execute(entries.select()).mappings().one()["present"] is False
    refused(indexer, "SELECT * FROM index_queries")
    refused(indexer, "INSERT INTO index_queries (asked_by, asked_from, patient_id, locations) VALUES ('x','x','x',0)")
    refused(indexer, "DELETE FROM index_entries")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect(settings, CLOUD, "sharing", INDEXER).close()


def test_the_declarer_reads_and_forgets_the_outbox_but_no_signed_record(settings: Settings) -> None:
    with admin(settings, CLOUD, REPLICA_STORE).begin() as conn:  # the cloud's API copying a document
        assert PostgresSignedRecordStore(conn).copy(approved("d-declared"))
    declarer = as_role(settings, CLOUD, REPLICA_STORE, DECLARER)
    with declarer.begin() as conn:
        (due,) = pending(conn, "cloud")
        assert (due.record_id, due.present) == ("d-declared", True)
        assert published(conn, due.seq) == 1
    with declarer.begin() as conn:
        assert pending(conn, "cloud") == []
    refused(declarer, "SELECT * FROM signed_records")
    refused(declarer, "UPDATE signed_records SET shared = false")
    refused(declarer, "DELETE FROM signed_records")
    refused(declarer, "INSERT INTO platsync_index_outbox (record_id, version, present) VALUES ('forged', 1, true)")
    refused(declarer, "CREATE TABLE declarer_ddl (x int)")
    for database in ("meta", "fructos_own"):
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            connect(settings, CLOUD, database, DECLARER).close()


def test_provisioning_again_takes_back_what_the_policy_does_not_grant(settings: Settings) -> None:
    """A privilege granted by hand, and a role of a hospital that left the network, lose their access."""
    with admin(settings, CLOUD, "sharing").begin() as conn:
        conn.execute(text("GRANT INSERT ON subscriptions TO platsync_fanout"))
        conn.execute(text("DROP ROLE IF EXISTS platsync_app_gone"))
        conn.execute(text("CREATE ROLE platsync_app_gone LOGIN PASSWORD 'gone-pw'"))
        conn.execute(text("GRANT CONNECT ON DATABASE sharing TO platsync_app_gone"))
        conn.execute(text("GRANT SELECT ON subscriptions TO platsync_app_gone"))
    grant_sharing_database(settings, CLOUD, "sharing", app_roles=[role_name(settings, CLOUD, APP)])
    refused(as_role(settings, CLOUD, "sharing", FANOUT),
            "INSERT INTO subscriptions (node, patient_id, subscribed_by) VALUES ('hosp-c', 'p-9', 'x')")
    gone = (f"host={settings.host} port={settings.pg_port(CLOUD)} dbname=sharing user=platsync_app_gone "
            "password=gone-pw connect_timeout=5")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(gone).close()
    with admin(settings, CLOUD, "sharing").begin() as conn:
        conn.execute(text("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM platsync_app_gone"))
        conn.execute(text("REVOKE ALL ON DATABASE sharing FROM platsync_app_gone"))
        conn.execute(text("DROP ROLE platsync_app_gone"))
