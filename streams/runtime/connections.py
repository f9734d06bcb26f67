"""Connection strings of the stores, with their roles' credentials (runtime layer).

The settings object only says where things are; the credentials of a database role may live in a
secret file of the embedded stack (:mod:`streams.runtime.credentials`), so they are resolved here, when a
connection string is asked for, never inside the settings.
"""

from __future__ import annotations

from urllib.parse import quote

from streams.core.model import SHARED_STORES, STORES
from streams.runtime.credentials import role_credentials
from streams.runtime.settings import Settings


def database_name(settings: Settings, node: str, store: str) -> str:
    """The PostgreSQL database of ``store`` on ``node``: the store's name plus the node's ``db_suffix``
    (one institution's stores on a multi-tenant server); shared stores and other databases (``postgres``)
    keep their names."""
    if store in STORES and store not in SHARED_STORES:
        return store + settings.node(node).db_suffix
    return store


def pg_credentials(settings: Settings, node: str, role: str = "admin") -> tuple[str, str]:
    """(user, password) of a database role on one node (roles: streams/ops/access_policy.py)."""
    return role_credentials(settings, node, role)


def dsn(settings: Settings, node: str, store: str, role: str = "admin") -> str:
    """SQLAlchemy URL of a store's database on one node as ``role`` (psycopg 3 driver)."""
    user, password = pg_credentials(settings, node, role)
    return (f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}@{settings.pg_host(node)}:"
            f"{settings.pg_port(node)}/{database_name(settings, node, store)}")


def libpq_dsn(settings: Settings, node: str, store: str, role: str = "admin") -> str:
    """Plain libpq connection string of a store's database on one node as ``role``."""
    user, password = pg_credentials(settings, node, role)
    if not password.isalnum():  # libpq's quoting of values with spaces, quotes or backslashes
        password = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return (f"host={settings.pg_host(node)} port={settings.pg_port(node)} "
            f"dbname={database_name(settings, node, store)} user={user} "
            f"password={password}")


def keycloak_db_dsn(settings: Settings, node: str, role: str = "admin") -> str:
    """libpq DSN of the database holding a node's Keycloak account tables (captured), as ``role``.

    A configured DSN is used as given, whatever the role (its user is Keycloak's database owner's
    choice; docs/security.md)."""
    return settings.node(node).keycloak_db or libpq_dsn(settings, node, "keycloak", role)
