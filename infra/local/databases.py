"""Provision each side's PostgreSQL instance: databases, store schemas, side setting."""

from __future__ import annotations

from sqlalchemy import create_engine

from connectors.stores.tables import create_schema
from infra.local.db_roles import provision_store_access
from infra.local.postgres import PostgresInstance, find_pg_bin_dir
from streams.core.model import DATABASE_STORES, REPLICA_STORE
from streams.runtime.connections import database_name, dsn
from streams.runtime.settings import Settings


def postgres_instance(settings: Settings, side: str) -> PostgresInstance:
    """The PostgreSQL instance of ``side`` as configured by ``settings``."""
    return PostgresInstance(
        name=f"pg-{side}",
        data_dir=settings.data_dir,
        pgdata=settings.data_dir / "pg" / side,
        bin_dir=find_pg_bin_dir(settings.pg_bin_dir),
        host=settings.host,
        port=settings.pg_port(side),
        superuser=settings.pg_user,
        password=settings.pg_password,
    )


def provision_side(settings: Settings, side: str) -> None:
    """Create the side's databases, store schemas, least-privilege roles and grants, and the capture
    publications (idempotent; the server must be running). A regional server (a node other than the two
    sides) gets its replica store only, with no publication (it captures nothing)."""
    stores = DATABASE_STORES.get(side, (REPLICA_STORE,))
    postgres_instance(settings, side).ensure_databases(tuple(database_name(settings, side, s) for s in stores))
    for store in stores:
        engine = create_engine(dsn(settings, side, store))
        try:
            with engine.begin() as conn:
                create_schema(conn, store, side, database_name(settings, side, store), settings)
        finally:
            engine.dispose()
    provision_store_access(settings, side)
