"""PostgreSQL ≥ 16: the engine's own applies left out of the captured stream by the server itself.

On PostgreSQL 15 every transaction a sink applies is decoded, converted and only then dropped as an
echo (its ``platsync_txn_marker`` row says ``applied_by_sync``: :mod:`connectors.capture.envelope`,
:mod:`connectors.capture.echo_filter`). From PostgreSQL 16, pgoutput's ``origin = none`` skips every
transaction that carries a replication origin, so:

- each sink session sets up a replication origin of its own (:func:`setup_session_origin`), which
  tags every transaction it commits;
- each capture streams with ``slot.stream.params=origin=none`` (:func:`capture_stream_properties`).

The set of transactions dropped does not change, only where: the sinks
(:class:`connectors.sinks.postgres_rows.PostgresRowSink`) are the only sessions that set up an origin,
and every transaction they commit is also marked ``applied_by_sync``, which the capture drops as an
echo anyway. Onward feeds (a regional server's replica worker, the sharing processes) read the
captures' topics, which never held echoes, so nothing they read disappears. And nothing depends on
the filter: a sink that cannot set up an origin (no grant, every origin of the pool in use, an
older server) commits untagged transactions, which the echo rule still drops.

An origin is active in one session at a time, so a sink takes the first free one of a small pool
of names (:data:`ORIGIN_POOL`); origins are cluster-wide and kept (PostgreSQL remembers each one's
progress until it is dropped), so the pool also bounds what the engine leaves in the catalog.
The apply role needs EXECUTE on :data:`ORIGIN_FUNCTIONS` (granted by the provisioning:
:mod:`streams.ops.access_policy`).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import errors

from streams.runtime.settings import Settings

log = logging.getLogger("platsync.origins")

#: The first server version whose pgoutput accepts ``origin = none``.
ORIGIN_FILTER_MIN_VERSION = 160000
#: Replication origins a sink may take, ``platsync_apply_<n>`` (n < pool size).
ORIGIN_POOL = 16
ORIGIN_PREFIX = "platsync_apply_"
#: Functions the apply role calls (``GRANT EXECUTE``).
ORIGIN_FUNCTIONS = ("pg_catalog.pg_replication_origin_create(text)",
                    "pg_catalog.pg_replication_origin_session_setup(text)",
                    "pg_catalog.pg_replication_origin_xact_reset()")
#: First statement of every transaction of a session with an origin (:func:`fresh_commit_time`).
FRESH_COMMIT_TIME = "SELECT pg_catalog.pg_replication_origin_xact_reset()"


def filters_origins(server_version_num: int) -> bool:
    """Whether a server of this ``server_version_num`` (e.g. 150014, 180006) can leave origins out."""
    return server_version_num >= ORIGIN_FILTER_MIN_VERSION


def wants_origin_filter(settings: Settings, store: str) -> bool:
    """Whether the capture of ``store`` streams ``origin = none`` where its server can: the setting is on
    and the sinks write the store by SQL (Keycloak's accounts go through Keycloak: no origin there)."""
    return settings.pg_origin_filter and store != "keycloak"


def capture_stream_properties(server_version_num: int | None) -> dict[str, str]:
    """Debezium properties making the capture stream ``origin = none``; none for an older or unknown server
    (ask :func:`wants_origin_filter` first)."""
    if server_version_num is None or not filters_origins(server_version_num):
        return {}
    return {"slot.stream.params": "origin=none"}


def server_version(conninfo: str) -> int | None:
    """The ``server_version_num`` of the server behind ``conninfo``, or None (with a warning) if unreachable."""
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return conn.info.server_version
    except psycopg.Error as exc:
        log.warning("cannot read the server version (%s): streaming without origin = none this run",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return None


def setup_session_origin(conn: psycopg.Connection[Any], what: str, pool: int = ORIGIN_POOL) -> str | None:
    """Tag this session's transactions with the first free origin of the pool; its name, or None.

    None when the server is older than PostgreSQL 16 (its pgoutput cannot leave origins out) or no
    origin can be set up: the sink then commits untagged transactions, which the capture drops as
    echoes by their marker (a warning names the reason once per session). ``conn`` is left idle
    (committed).
    """
    if not filters_origins(conn.info.server_version):
        return None
    reason = "every origin of the pool is in use"
    for n in range(pool):
        name = f"{ORIGIN_PREFIX}{n}"
        try:
            _setup(conn, name)
            return name
        except errors.ObjectInUse:
            continue  # another session holds it
        except (errors.InsufficientPrivilege, errors.ConfigurationLimitExceeded,
                errors.ObjectNotInPrerequisiteState) as exc:
            reason = str(exc).strip()
            break
    log.warning("%s: no replication origin (%s): its applies are dropped as echoes by the capture instead "
                "of by the server", what, reason)
    return None


def fresh_commit_time(conn: psycopg.Connection[Any]) -> None:
    """In a transaction of a session with an origin: let its commit record the time it commits.

    A session with an origin records the origin's timestamp as each transaction's commit time
    (``track_commit_timestamp``); none being given, PostgreSQL takes the first commit's time and keeps
    it for every later one of the session (measured on 18.6: applies stamped minutes in the past).
    Resetting it first in each transaction makes the commit take its own time again, which the
    operators' diagnostics and the benchmark's latencies read.
    """
    conn.execute(FRESH_COMMIT_TIME)


def _setup(conn: psycopg.Connection[Any], name: str) -> None:
    """Set up origin ``name`` in this session, creating it first if it does not exist."""
    try:
        with conn.transaction():
            conn.execute("SELECT pg_catalog.pg_replication_origin_session_setup(%s)", (name,))
        return
    except errors.UndefinedObject:
        pass
    try:
        with conn.transaction():
            conn.execute("SELECT pg_catalog.pg_replication_origin_create(%s)", (name,))
    except errors.UniqueViolation:
        pass  # created meanwhile by another session
    with conn.transaction():
        conn.execute("SELECT pg_catalog.pg_replication_origin_session_setup(%s)", (name,))
