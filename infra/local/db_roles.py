"""Provision the least-privilege database roles of :mod:`streams.ops.access_policy` on one side (as the admin).

Idempotent, run by every ``platsync up``: creates or updates each role (attributes, password),
revokes what a role held before and grants exactly the policy's privileges in one transaction per
database (no window in which a running process loses a privilege it keeps), and creates or
updates the Debezium publications, so that the capture role needs no table ownership.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

from connectors.capture.debezium import captured_tables, slot_name
from connectors.stores.origins import ORIGIN_FUNCTIONS
from connectors.stores.tables import ROW_FILTERS
from streams.core.model import DATABASE_STORES, REPLICA_STORE, SHARED_STORES
from streams.ops.access_policy import KEYCLOAK_DB, DbGrant, DbRole, connect_roles, db_grants, db_roles
from streams.runtime.connections import database_name, libpq_dsn
from streams.runtime.credentials import CAPTURE, ROLE_NAMES, ensure_role_password, role_name
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.provision")
Say = Callable[[str], None]


def admin_conninfo(settings: Settings, side: str, database: str) -> str:
    """libpq DSN of ``database`` on ``side`` as the admin."""
    return libpq_dsn(settings, side, database) + " connect_timeout=5"


def ensure_role(conn: psycopg.Connection, settings: Settings, side: str, role: DbRole) -> str:
    """Create or update one login role on ``side``'s instance (``conn``: the admin's, autocommit); its name."""
    password = ensure_role_password(settings, side, role.key)
    name = role_name(settings, side, role.key)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None
    conn.execute(sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
        sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(name), sql.SQL(" ".join(role.attributes)),
        sql.Literal(password)))
    return name


def ensure_roles(settings: Settings, side: str) -> None:
    """Create or update every login role of the policy on ``side``'s instance (cluster-wide objects)."""
    with psycopg.connect(admin_conninfo(settings, side, "postgres"), autocommit=True) as conn:
        for role in db_roles(settings):
            if role.key in ROLE_NAMES:  # not the admin, nor a network's sharing roles (infra/local/sharing_roles.py)
                ensure_role(conn, settings, side, role)


def revoke_all(conn: psycopg.Connection, database: str, names: Iterable[str]) -> None:
    """Revoke CONNECT/TEMPORARY on ``database`` from PUBLIC and every privilege ``names`` held in it
    (in schema ``public``, and on the system functions the policy grants)."""
    db = sql.Identifier(database)
    conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
    for name in names:
        role = sql.Identifier(name)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, role))
        conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role))
        conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(role))
        for function in ORIGIN_FUNCTIONS:
            conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM {}").format(sql.SQL(function), role))


def apply_grants(conn: psycopg.Connection, database: str, connecting: Iterable[str],
                 grants: Iterable[tuple[str, DbGrant]]) -> list[str]:
    """Grant CONNECT on ``database`` to ``connecting`` and each ``(role name, grant)``; the objects missing."""
    db = sql.Identifier(database)
    for name in connecting:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, sql.Identifier(name)))
    present = {r[0] for r in conn.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S')")}
    missing = []
    for name, grant in grants:
        sequence = None
        if grant.object_type == "identity":
            table, column = grant.name.split(".", 1)
            row = conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column)).fetchone()
            sequence = row[0] if row else None
            if sequence is None:
                missing.append(grant.name)
                continue
        elif grant.object_type != "function" and grant.name not in present:
            missing.append(grant.name)
            continue
        conn.execute(grant.sql(name, sequence))  # type: ignore[arg-type]
    return missing


def publication_statements(conn: psycopg.Connection, name: str, tables: tuple[str, ...]) -> list[sql.Composable]:
    """What makes publication ``name`` publish exactly ``tables`` (schema-qualified), each with its row filter
    (:data:`connectors.stores.tables.ROW_FILTERS`), if anything."""
    current = {(f"{s}.{t}", (f or "").strip("()")) for s, t, f in conn.execute(
        "SELECT schemaname, tablename, rowfilter FROM pg_publication_tables WHERE pubname = %s", (name,))}
    wanted = {(t, ROW_FILTERS.get(t.split(".", 1)[1], "")) for t in tables}
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is not None
    if exists and current == wanted:
        return []
    listed = sql.SQL(", ").join(_published(t) for t in tables)
    verb = "ALTER PUBLICATION {} SET TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}"
    return [sql.SQL(verb).format(sql.Identifier(name), listed)]


def _published(table: str) -> sql.Composable:
    """One table of a publication's list, with its row filter (the filter is code, never input)."""
    name = sql.Identifier(*table.split(".", 1))
    row_filter = ROW_FILTERS.get(table.split(".", 1)[1])
    return name if row_filter is None else sql.SQL("{} WHERE ({})").format(name, sql.SQL(row_filter))  # type: ignore[arg-type]


def grant_database(settings: Settings, side: str, database: str) -> None:
    """Revoke and re-grant every role's privileges on the database of store ``database`` (one transaction),
    and its publication."""

    grants = [g for g in db_grants(side) if g.database == database]
    connecting = connect_roles(side, database)
    # One institution's capture never captures a shared store (it holds every institution's records):
    # its capture role gets nothing there, and the store gets no publication from it.
    tenant_shared = database in SHARED_STORES and database not in settings.captured_stores(side)
    if tenant_shared:
        grants = [g for g in grants if g.role != CAPTURE]
        connecting = tuple(r for r in connecting if r != CAPTURE)
    names = {key: role_name(settings, side, key) for key in ROLE_NAMES}
    with psycopg.connect(admin_conninfo(settings, side, database)) as conn:
        revoke_all(conn, database_name(settings, side, database), names.values())
        missing = apply_grants(conn, database_name(settings, side, database), (names[k] for k in connecting),
                               ((names[g.role], g) for g in grants))
        # The capture's publication: created here, so that Debezium needs no table ownership.
        if not tenant_shared:
            for statement in publication_statements(conn, slot_name(settings, side, database),
                                                    captured_tables(database, side)):
                conn.execute(statement)
    if missing:
        log.warning("%s/%s: not granted, objects missing: %s", side, database, ", ".join(sorted(set(missing))))


def _store_databases(side: str) -> tuple[str, ...]:
    """A side's store databases; a regional server's replica store."""
    return DATABASE_STORES.get(side, (REPLICA_STORE,))


def provision_store_access(settings: Settings, side: str) -> None:
    """Roles, grants and publications of ``side``'s store databases (the schemas must exist)."""
    ensure_roles(settings, side)
    for database in _store_databases(side):
        grant_database(settings, side, database)


def provision_keycloak_access(settings: Settings, side: str, say: Say) -> None:
    """Grants and the publication on ``side``'s embedded Keycloak database (its tables must exist).

    A configured (external) Keycloak database is left to its owner: docs/security.md lists what to grant.
    """
    if settings.node(side).keycloak_db:
        return
    try:
        ensure_roles(settings, side)
        grant_database(settings, side, KEYCLOAK_DB)
    except psycopg.Error as exc:
        say(f"WARNING: cannot grant the capture/apply roles on {side} Keycloak's database ({exc})")
