"""One institution's stores on a multi-tenant PostgreSQL server: databases, roles and slots of its own
(issue 14). Two tenants are provisioned on one real server; each one's roles can reach only its own
databases and the shared patient-management store."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from connectors.capture.debezium import slot_name
from infra.local.databases import postgres_instance, provision_side
from infra.local.process import stop_process
from streams.runtime.connections import database_name, libpq_dsn
from streams.runtime.credentials import role_name
from streams.runtime.settings import Settings
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenants() -> Iterator[tuple[Settings, Settings]]:
    data_dir = make_data_dir("platsync-tenants-")
    base = isolated_settings(data_dir)
    a, b = (base.with_node("remote", db_suffix=suffix) for suffix in ("_hosp_a", "_hosp_b"))
    pg = postgres_instance(base, "remote")
    try:
        pg.init()
        pg.start()
        provision_side(a, "remote")
        provision_side(b, "remote")
        provision_side(a, "remote")  # idempotent, and b's roles and grants survive a's re-provisioning
        yield a, b
    finally:
        stop_process(data_dir, pg.name)
        remove_data_dir(data_dir)


def test_each_tenant_has_its_own_databases_and_the_shared_store_is_one(tenants: tuple[Settings, Settings]) -> None:
    a, _ = tenants
    with psycopg.connect(libpq_dsn(a, "remote", "postgres")) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'platsync_%'")}
    assert {"meta_hosp_a", "fructos_own_hosp_a", "meta_hosp_b", "fructos_own_hosp_b", "fructos_patient"} <= names
    assert "meta" not in names
    assert {"platsync_capture_hosp_a", "platsync_apply_hosp_b", "platsync_app_hosp_a"} <= roles
    assert database_name(a, "remote", "fructos_patient") == "fructos_patient"
    assert slot_name(a, "remote", "meta") == "platsync_remote_meta_hosp_a"
    with psycopg.connect(libpq_dsn(a, "remote", "meta")) as conn:  # the side setting names the role, not the tenant
        assert conn.execute("SHOW platsync.side").fetchone() == ("remote",)


@pytest.mark.parametrize("role", ["app", "apply", "capture", "operator"])
def test_a_tenant_s_roles_cannot_reach_another_tenant_s_databases(tenants: tuple[Settings, Settings],
                                                                 role: str) -> None:
    a, b = tenants
    with psycopg.connect(libpq_dsn(a, "remote", "meta", role) + " connect_timeout=5"):
        pass  # its own database: fine
    assert role_name(a, "remote", role).endswith("_hosp_a")
    for store in ("meta", "fructos_own"):
        theirs = database_name(b, "remote", store)
        foreign = libpq_dsn(a, "remote", store, role).replace(f"dbname={database_name(a, 'remote', store)}",
                                                              f"dbname={theirs}")
        with pytest.raises(psycopg.OperationalError, match=f'permission denied for database "{theirs}"'):
            psycopg.connect(foreign + " connect_timeout=5").close()


def test_a_tenant_s_capture_role_cannot_read_the_shared_store(tenants: tuple[Settings, Settings]) -> None:
    """The shared patient-management store holds every institution's records: no tenant captures it."""
    a, _ = tenants
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "fructos_patient"'):
        psycopg.connect(libpq_dsn(a, "remote", "fructos_patient", "capture") + " connect_timeout=5").close()
    with psycopg.connect(libpq_dsn(a, "remote", "fructos_patient", "apply") + " connect_timeout=5") as conn:
        conn.execute("SELECT count(*) FROM signed_records").fetchone()  # the home link's worker writes it
