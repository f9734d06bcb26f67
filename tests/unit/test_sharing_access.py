"""The sharing processes' database roles as data (streams/ops/sharing_access.py; no database).

Each role holds privileges only in the database its process uses, never DDL, and every table of the
sharing stores' metadata is accounted for; the roles appear in ``platsync access`` and docs/security.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.stores.fanout_state import SEQUENCE, sharing_metadata
from connectors.stores.index_outbox import OUTBOX
from connectors.stores.patient_index import index_metadata
from connectors.stores.subscribed import subscribed_metadata
from streams.cli.access_report import policy_json, policy_markdown
from streams.ops.access_policy import db_roles, process_roles
from streams.ops.sharing_access import SHARING_DATABASES, sharing_connect_roles, sharing_grants
from streams.runtime.credentials import (
    APP,
    DECLARER,
    FANOUT,
    INDEXER,
    SHARING_ROLE_NAMES,
    SUBSCRIBER,
    AccessPolicyError,
    ensure_role_password,
    role_credentials,
    secret_path,
)
from streams.runtime.settings import Settings, load_settings

DDL = {"TRUNCATE", "REFERENCES", "TRIGGER", "CREATE", "ALL"}


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=tmp_path)


def privileges(role: str, database: str, name: str) -> set[str]:
    return {p for g in sharing_grants() if (g.role, g.database, g.name) == (role, database, name) for p in g.privileges}


def test_each_sharing_role_holds_privileges_in_its_own_database_only() -> None:
    where = {FANOUT: {"sharing"}, SUBSCRIBER: {"fructos_subscribed"}, INDEXER: {"patient_index"},
             DECLARER: {"fructos_patient"}, APP: {"sharing"}}
    assert {g.role for g in sharing_grants()} == set(where)
    for g in sharing_grants():
        assert g.database in where[g.role], g
        assert not DDL & set(g.privileges), g
    assert {db: sharing_connect_roles(db) for db in SHARING_DATABASES} == {
        "sharing": (APP, FANOUT), "patient_index": (INDEXER,), "fructos_subscribed": (SUBSCRIBER,),
        "fructos_patient": (DECLARER,)}


def test_every_table_of_the_sharing_stores_is_accounted_for() -> None:
    """A table added to a sharing store must be given to its process (or stay the admin's on purpose)."""
    admin_only = {("patient_index", "index_queries")}  # 'platsync index find|queries': an operator's, audited
    for database, md in (("sharing", sharing_metadata()), ("fructos_subscribed", subscribed_metadata()),
                         ("patient_index", index_metadata())):
        granted = {g.name for g in sharing_grants() if g.database == database and g.object_type == "table"}
        assert granted | {t for d, t in admin_only if d == database} == set(md.tables), database


def test_the_fan_out_follows_subscriptions_it_cannot_ask_for() -> None:
    assert privileges(FANOUT, "sharing", "subscriptions") == {"SELECT"}
    assert privileges(FANOUT, "sharing", "subscription_audit") == set()
    assert privileges(FANOUT, "sharing", "shared_documents") == {"SELECT", "INSERT", "UPDATE"}
    assert privileges(FANOUT, "sharing", SEQUENCE) == {"USAGE"}


def test_the_subscription_apis_never_read_the_fan_outs_copies() -> None:
    columns = {g.name: g.columns for g in sharing_grants() if g.role == APP and "SELECT" in g.privileges}
    assert columns["subscriptions"] == ()  # what each hospital asked for (PLAT_SUB_003 filters its own)
    assert "copy_message" not in columns["shared_documents"] and columns["shared_documents"]
    assert columns["fanout_subscriptions"] and columns["subscription_audit"] == ("id",)
    assert privileges(APP, "sharing", "subscriptions") == {"SELECT", "INSERT", "DELETE"}


def test_the_subscriber_reads_its_webhook_but_cannot_set_it() -> None:
    assert privileges(SUBSCRIBER, "fructos_subscribed", "notification_webhook") == {"SELECT"}
    updates = [g.columns for g in sharing_grants()
               if (g.role, g.name) == (SUBSCRIBER, "notifications") and "UPDATE" in g.privileges]
    assert updates == [("published_at", "delivered_at", "attempts", "next_attempt_at", "last_error")]
    assert "DELETE" not in privileges(SUBSCRIBER, "fructos_subscribed", "notifications")


def test_the_declarer_and_the_indexer_touch_no_record_and_no_audit() -> None:
    assert [(g.name, g.privileges) for g in sharing_grants() if g.role == DECLARER] == [(OUTBOX, ("SELECT", "DELETE"))]
    assert [(g.name, g.privileges) for g in sharing_grants() if g.role == INDEXER] == [
        ("index_entries", ("SELECT", "INSERT", "UPDATE"))]


def test_the_roles_are_listed_with_their_processes(settings: Settings) -> None:
    roles = {r.key: r for r in db_roles(settings)}
    for key, name in SHARING_ROLE_NAMES.items():
        assert roles[key].name == name
        assert {"NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOREPLICATION"} <= set(roles[key].attributes)
    used = process_roles()
    assert used["fanout"] == [("remote", FANOUT)] and used["indexer"] == [("remote", INDEXER)]
    assert used["subscriber-<hospital>"] == [("local", SUBSCRIBER)]
    assert {role for _, role in used["declarer-<server>"]} == {DECLARER}
    markdown = policy_markdown(settings)
    for name in SHARING_ROLE_NAMES.values():
        assert f"| `{name}` |" in markdown
    assert "| `platsync_declarer` | fructos_patient (each common server) | SELECT, DELETE | " \
           "`platsync_index_outbox` |" in markdown
    connect = policy_json(settings)["db_connect"]
    assert connect["patient_index"] == ["platsync_indexer"] and "platsync_declarer" in connect["fructos_patient"]


def test_sharing_role_passwords_are_generated_per_node_or_configured(settings: Settings) -> None:
    with pytest.raises(AccessPolicyError, match="PLATSYNC_PG_FANOUT_PASSWORD"):
        role_credentials(settings, "remote", FANOUT)
    generated = ensure_role_password(settings, "remote", DECLARER)
    assert ensure_role_password(settings, "region-1", DECLARER) != generated
    assert secret_path(settings, "remote", DECLARER).name == "pg-remote-platsync_declarer.password"
    assert role_credentials(settings, "remote", DECLARER) == ("platsync_declarer", generated)
    given = dataclasses.replace(settings, pg_subscriber_password="from a secret")
    assert role_credentials(given, "local", SUBSCRIBER) == ("platsync_subscriber", "from a secret")
    assert load_settings(env={"PLATSYNC_PG_INDEXER_PASSWORD": "env pw"}, data_dir=settings.data_dir) \
        .pg_indexer_password == "env pw"
