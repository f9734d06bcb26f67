"""The least-privilege policy as data: who may read and write what (no database, no broker)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.capture.debezium import captured_tables, connector_properties
from connectors.stores.tables import SYNCED_TABLES, metadata_for
from streams.cli.access_report import BEGIN, END, generated_section, policy_json, policy_markdown, replace_section
from streams.core.model import CAPTURED_STORES, DATABASE_STORES, ROUTES, SIDES
from streams.ops.access_policy import (
    APP,
    APPLY,
    BY_SYNC_COLUMN,
    CAPTURE,
    MARKER,
    OPERATOR,
    KafkaAcl,
    db_grants,
    db_roles,
    kafka_acls,
)
from streams.runtime.connections import libpq_dsn
from streams.runtime.credentials import (
    AccessPolicyError,
    ensure_role_password,
    kafka_principals,
    role_credentials,
    secret_path,
)
from streams.runtime.settings import Settings, load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
WRITE = {"INSERT", "UPDATE", "DELETE", "TRUNCATE"}


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=tmp_path)


def privileges(side: str, role: str, database: str, table: str) -> set[str]:
    return {p for g in db_grants(side) if (g.role, g.database, g.name) == (role, database, table)
            for p in g.privileges}


def test_every_captured_table_is_readable_by_the_capture_and_nothing_more() -> None:
    for side in SIDES:
        for store in CAPTURED_STORES[side]:
            for qualified in captured_tables(store):
                assert privileges(side, CAPTURE, store, qualified.removeprefix("public.")) == {"SELECT"}
        capture = [g for g in db_grants(side) if g.role == CAPTURE]
        assert capture and all(g.privileges == ("SELECT",) for g in capture)


def test_only_the_capture_role_replicates_and_no_role_but_the_admin_is_privileged(settings: Settings) -> None:
    roles = {r.key: r for r in db_roles(settings)}
    assert "REPLICATION" in roles[CAPTURE].attributes
    for key in (APPLY, APP, OPERATOR):
        assert "NOREPLICATION" in roles[key].attributes
    for key in (CAPTURE, APPLY, APP, OPERATOR):
        assert {"NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE"} <= set(roles[key].attributes)


def test_apply_writes_every_target_table_but_holds_no_ddl_privilege() -> None:
    for side in SIDES:
        for store in DATABASE_STORES[side]:
            for table in SYNCED_TABLES[store]:
                assert {"SELECT", "INSERT", "UPDATE", "DELETE"} <= privileges(side, APPLY, store, table)
        for g in db_grants(side):
            assert not {"TRUNCATE", "REFERENCES", "TRIGGER", "CREATE", "ALL"} & set(g.privileges), g


def test_only_the_sync_may_mark_a_transaction_as_applied_by_it() -> None:
    for side in SIDES:
        for store in DATABASE_STORES[side]:
            inserts = {g.role: g.columns for g in db_grants(side)
                       if (g.database, g.name) == (store, MARKER) and "INSERT" in g.privileges}
            assert set(inserts) == {APPLY, APP}
            assert BY_SYNC_COLUMN in inserts[APPLY] and BY_SYNC_COLUMN not in inserts[APP]
            assert "txid" not in inserts[APP]  # the transaction id comes from txid_current()


def test_the_operator_reads_the_stores_but_never_keycloak_credentials_and_writes_no_row() -> None:
    for side in SIDES:
        for store in DATABASE_STORES[side]:
            for table in metadata_for(store).tables:
                assert "SELECT" in privileges(side, OPERATOR, store, table)
            for table in SYNCED_TABLES[store]:
                assert not WRITE & privileges(side, OPERATOR, store, table)
        assert not [g for g in db_grants(side) if g.role == OPERATOR and g.database == "keycloak"]
        assert not [g for g in db_grants(side) if g.role == APP and g.database == "keycloak"]


def test_role_passwords_are_generated_once_per_side_and_kept_private(settings: Settings) -> None:
    with pytest.raises(AccessPolicyError, match="platsync up"):
        role_credentials(settings, "local", CAPTURE)
    local = ensure_role_password(settings, "local", CAPTURE)
    assert ensure_role_password(settings, "local", CAPTURE) == local
    assert ensure_role_password(settings, "remote", CAPTURE) != local
    assert secret_path(settings, "local", CAPTURE).stat().st_mode & 0o077 == 0
    assert role_credentials(settings, "local", CAPTURE) == ("platsync_capture", local)
    assert f"user=platsync_capture password={local}" in libpq_dsn(settings, "local", "meta", CAPTURE).replace("'", "")
    given = dataclasses.replace(settings, pg_apply_password="given it")
    assert role_credentials(given, "remote", APPLY) == ("platsync_apply", "given it")
    off = dataclasses.replace(settings, pg_least_privilege=False)
    assert role_credentials(off, "local", APP) == (settings.pg_user, settings.pg_password)


def test_the_capture_uses_its_role_and_a_publication_made_in_advance(settings: Settings) -> None:
    ensure_role_password(settings, "local", CAPTURE)
    props = connector_properties(settings, "local", "meta")
    assert props["database.user"] == "platsync_capture"
    assert props["publication.autocreate.mode"] == "disabled"


def acls_of(settings: Settings, process: str) -> list[KafkaAcl]:
    return [a for a in kafka_acls(settings) if a.principal == kafka_principals(settings)[process]]


def allowed(acls: list[KafkaAcl], resource_type: str, name: str, operation: str) -> bool:
    return any(a.resource_type == resource_type and operation in a.operations
               and (name == a.name if a.pattern == "literal" else name.startswith(a.name)) for a in acls)


def test_kafka_principals_are_named_per_process(settings: Settings) -> None:
    users = kafka_principals(settings)
    assert users["capture-local"] == "platsync-capture-local"
    assert set(users) == {"capture-local", "capture-remote", "worker-local_to_remote", "worker-remote_to_local",
                          "mode-local", "mode-remote", "operator"}


def test_captures_write_only_their_own_side_and_read_nothing(settings: Settings) -> None:
    for side in SIDES:
        acls = acls_of(settings, f"capture-{side}")
        for other in SIDES:
            for store in CAPTURED_STORES[other]:
                topic = settings.topic(other, store)
                assert allowed(acls, "topic", topic, "Write") == (other == side)
                assert not allowed(acls, "topic", topic, "Read")
        assert not [a for a in acls if a.resource_type == "group"]


def test_workers_read_their_source_and_cannot_write_it(settings: Settings) -> None:
    for route, (source, target) in ROUTES.items():
        acls = acls_of(settings, f"worker-{route}")
        for store in CAPTURED_STORES[source]:
            assert allowed(acls, "topic", settings.topic(source, store), "Read")
            assert not allowed(acls, "topic", settings.topic(source, store), "Write")
        for store in CAPTURED_STORES[target]:
            assert not allowed(acls, "topic", settings.topic(target, store), "Read")
        assert allowed(acls, "topic", settings.dead_letter_topic(route), "Write")
        assert allowed(acls, "group", settings.consumer_group(route), "Read")
        other = next(r for r in ROUTES if r != route)
        assert not allowed(acls, "group", settings.consumer_group(other), "Read")
        assert not allowed(acls, "topic", settings.dead_letter_topic(other), "Write")


def test_acls_follow_the_topic_prefix(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path, topic_prefix="h1")
    assert {a.name.split(".")[0].split("-")[0] for a in kafka_acls(settings)
            if a.resource_type == "topic"} == {"h1"}


def test_security_doc_tables_equal_the_command_output(settings: Settings) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert generated_section(text) == policy_markdown(settings), (
        "docs/security.md is stale: run 'platsync access --format markdown --update docs/security.md'")
    assert replace_section(f"a\n{BEGIN}\nold\n{END}\nb", "new\n") == f"a\n{BEGIN}\nnew\n{END}\nb"
    assert policy_json(settings)["kafka_principals"]["operator"] == "platsync-operator"
