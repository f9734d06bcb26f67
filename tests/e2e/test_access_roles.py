"""The least-privilege database roles on the running stack: enforced by PostgreSQL, and used by its processes."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from connectors.capture.debezium import slot_name
from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.core.model import CAPTURED_STORES, ROUTES, SIDES
from streams.runtime.connections import libpq_dsn, pg_credentials
from streams.runtime.settings import Settings

pytestmark = pytest.mark.e2e


def as_role(s: Settings, side: str, store: str, role: str) -> psycopg.Connection:
    return psycopg.connect(libpq_dsn(s, side, store, role) + " connect_timeout=5", autocommit=True)


def sessions(s: Settings, side: str) -> set[tuple[str, str]]:
    """(application_name, user) of every client session on ``side``'s instance."""
    with psycopg.connect(libpq_dsn(s, side, "meta") + " connect_timeout=5") as conn:
        rows = conn.execute("SELECT application_name, usename FROM pg_stat_activity "
                            "WHERE usename IS NOT NULL AND application_name <> ''").fetchall()
    return {(str(app), str(user)) for app, user in rows}


def test_stack_processes_connect_with_their_roles(stack: Stack) -> None:
    s = stack.settings
    for side in SIDES:
        with psycopg.connect(libpq_dsn(s, side, "meta") + " connect_timeout=5") as conn:
            users = dict(conn.execute(
                "SELECT s.slot_name, a.usename FROM pg_replication_slots s "
                "JOIN pg_stat_activity a ON a.pid = s.active_pid").fetchall())
        assert {slot_name(s, side, store): "platsync_capture" for store in CAPTURED_STORES[side]} == users
        seen = sessions(s, side)
        for route, (_source, target) in ROUTES.items():
            worker = {user for app, user in seen if app == f"worker-{route}"}
            # The worker of a route holds sessions on its target side only, all as the apply role.
            assert worker == ({"platsync_apply"} if side == target else set()), (route, side, seen)
        admin = {app for app, user in seen if user == s.pg_user and app.startswith(("capture-", "worker-", "mode-"))}
        assert not admin, f"engine processes connected as the admin: {admin}"


def test_the_reference_api_connects_as_the_app_role(stack: Stack) -> None:
    s = stack.settings
    with ReferenceApi(s, "local") as api, psycopg.connect(libpq_dsn(s, "local", "meta")) as conn:
        api.call("PRV_STF_001", {"staff_code": "ROLE-1", "display_name": "権限 確認", "role": "clerk"})
        count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'platsync_app'").fetchone()
    assert count is not None and count[0] >= 1


def test_postgres_enforces_the_roles(stack: Stack) -> None:
    s = stack.settings
    with as_role(s, "remote", "meta", "capture") as conn:
        assert conn.execute("SELECT count(*) FROM staff").fetchone() is not None
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO staff (id, staff_code, display_name, role) VALUES ('cap-1', 'c', 'c', 'c')")
    with as_role(s, "remote", "meta", "apply") as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE apply_ddl (x int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT pg_create_logical_replication_slot('apply_slot', 'pgoutput')")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("TRUNCATE staff")
    with as_role(s, "local", "meta", "app") as conn:
        with pytest.raises(errors.InsufficientPrivilege):  # an application cannot disguise its writes as echoes
            conn.execute("INSERT INTO platsync_txn_marker (api_id, origin_side, applied_by_sync) "
                         "VALUES ('PRV_STF_001', 'local', true)")
        assert conn.execute("SELECT platsync_mark_api('PRV_STF_001')").fetchone() is not None
    with as_role(s, "local", "meta", "operator") as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE staff SET display_name = 'x'")
    with pytest.raises(psycopg.OperationalError, match="permission denied|not permitted"):
        as_role(s, "local", "keycloak", "app").close()  # no CONNECT on Keycloak's database


def test_one_sides_credentials_do_not_open_the_other_side(stack: Stack) -> None:
    s = stack.settings
    user, password = pg_credentials(s, "local", "apply")
    dsn = (f"host={s.pg_host('remote')} port={s.pg_port('remote')} dbname=meta user={user} "
           f"password='{password}' connect_timeout=5")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn).close()
