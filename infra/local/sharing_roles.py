"""Provision the database roles of a network's sharing processes (:mod:`streams.ops.sharing_access`), as the admin.

Run by ``platsync up --topology`` after the sharing databases and their schemas exist
(:mod:`infra.local.sharing_runtime`); idempotent. Per database, in one transaction, like the stores' roles
(:mod:`infra.local.db_roles`): CONNECT is revoked from PUBLIC, every privilege the sharing roles held there is
revoked, and exactly the policy's are granted, so a running process never loses one it keeps. The roles'
passwords are generated once into the data dir of the settings they run with (``pg-<node>-<role>.password``):
the fan-out's, the indexer's and the declarers' in the network's, a subscriber's in its hospital's link's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from infra.local.db_roles import admin_conninfo, apply_grants, ensure_role, revoke_all
from streams.core.errors import PlatSyncError
from streams.core.model import REPLICA_STORE
from streams.ops.sharing_access import SHARING_DATABASES, sharing_db_roles, sharing_grants
from streams.runtime.connections import database_name
from streams.runtime.credentials import APP
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.provision")
#: Databases only the sharing roles use: every other grantee found there is revoked too (a hospital that left).
EXCLUSIVE = frozenset(db for db in SHARING_DATABASES if db != REPLICA_STORE)


class SharingProvisionError(PlatSyncError, RuntimeError):
    """A sharing database lacks an object its policy grants on (its schema was not created first)."""


def _grantees(conn: psycopg.Connection, database: str) -> list[str]:
    """Roles holding a privilege on ``database`` itself, but its owner and PUBLIC."""
    rows = conn.execute(
        "SELECT DISTINCT a.grantee::regrole::text FROM pg_database d, aclexplode(d.datacl) a "
        "WHERE d.datname = %s AND a.grantee <> 0 AND a.grantee <> d.datdba", (database,)).fetchall()
    return [str(r[0]).strip('"') for r in rows]


def grant_sharing_database(settings: Settings, node: str, database: str, app_roles: Sequence[str] = ()) -> list[str]:
    """Create or update the sharing roles granted on ``database`` of ``node`` and grant exactly their privileges
    there (the subscription APIs' to ``app_roles``: each tenant's ``platsync_app`` on the cloud); the role names
    granted. :class:`SharingProvisionError` if an object of the policy is missing."""
    grants = [g for g in sharing_grants() if g.database == database]
    roles = {r.key: r for r in sharing_db_roles()}
    with psycopg.connect(admin_conninfo(settings, node, "postgres"), autocommit=True) as conn:
        names = {key: ensure_role(conn, settings, node, roles[key]) for key in sorted({g.role for g in grants} - {APP})}
    pairs = [(names[g.role], g) for g in grants if g.role != APP]
    pairs += [(app, g) for g in grants if g.role == APP for app in app_roles]
    holders = list(dict.fromkeys([*names.values(), *(app_roles if any(g.role == APP for g in grants) else ())]))
    dbname = database_name(settings, node, database)
    with psycopg.connect(admin_conninfo(settings, node, database)) as conn:
        stale = [r for r in _grantees(conn, dbname) if r not in holders] if database in EXCLUSIVE else []
        revoke_all(conn, dbname, [*holders, *stale])
        missing = apply_grants(conn, dbname, holders, pairs)
    if missing:
        raise SharingProvisionError(f"{node}/{dbname}: cannot grant the sharing roles, objects missing: "
                                    f"{', '.join(sorted(set(missing)))} (create its schema first)")
    log.info("%s/%s: granted %s", node, dbname, ", ".join(holders))
    return holders
