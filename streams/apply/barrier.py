"""Sync barriers: prove that everything committed on the sources so far has been applied.

``wait_synced`` inserts a probe row into every source database. Each capture carries the
probe through the same ordered topic as the data, and the worker records the probe id only
after every change before it was applied; so once the target side reports a probe id at
least as new as ours for every source store, every change committed before the probe is in
the target stores. This measures from source positions, never from the broker's watermark.

A probe not applied after :data:`PROBE_RENEW_S` is sent again: Debezium's resume after a restart can
drop the first change of the first transaction it streams (connectors/capture/envelope.py), and a
probe's transaction has no other change. Probe ids only grow, so a later probe applied proves as much.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from streams.apply.progress import read_progress
from streams.core.model import REPLICA_SOURCE_SIDES, REPLICA_STORE, SIDES, other_side, replica_route, route_for_source
from streams.routing.matrix_model import load_matrix
from streams.runtime.connections import keycloak_db_dsn, libpq_dsn
from streams.runtime.kept_connections import KeptConnections
from streams.runtime.settings import Settings
from streams.runtime.state_files import capture_state

PROBE_RENEW_S = 10.0
PROBE_SQL = (
    "INSERT INTO platsync_probe (probe_id) "
    "SELECT lpad(nextval(pg_get_serial_sequence('platsync_probe', 'id'))::text, 20, '0') RETURNING probe_id"
)


@dataclass(frozen=True)
class PendingRoute:
    """A source store whose probe has not been applied yet."""

    route: str
    source_store: str
    probe_id: str
    applied_probe_id: str | None


def insert_probes(settings: Settings) -> dict[tuple[str, str], str]:
    """Insert one probe into every source database; return its id per (side, store)."""
    probes: dict[tuple[str, str], str] = {}
    for side in SIDES:
        for store in settings.captured_stores(side):
            if store == "keycloak":
                with psycopg.connect(keycloak_db_dsn(settings, side, "operator") + " connect_timeout=5") as conn:
                    probes[(side, store)] = _emit_keycloak_probe(conn)
                continue
            with psycopg.connect(libpq_dsn(settings, side, store, "operator") + " connect_timeout=5") as conn:
                probes[(side, store)] = conn.execute(PROBE_SQL).fetchone()[0]  # type: ignore[index]
    return probes


def _emit_keycloak_probe(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
    """Keycloak's schema is not ours: its probe is a transactional logical-decoding message whose
    id is the database clock in microseconds (ordered like the sequence ids of the other stores)."""
    probe_id = conn.execute("SELECT lpad((extract(epoch from clock_timestamp()) * 1000000)::bigint::text, 20, '0')"
                            ).fetchone()[0]  # type: ignore[index]
    conn.execute("SELECT pg_logical_emit_message(true, 'platsync_probe', %s)", (probe_id,))
    return str(probe_id)


def expected_probes(settings: Settings, probes: dict[tuple[str, str], str],
                    replicas: bool = True) -> dict[tuple[str, str], str]:
    """(route, progress key) -> the probe it must have applied: each side's probes on its home route and,
    with ``replicas``, the feeding store's probes of both sides on every replica route (key ``<side>.<store>``)."""
    expected = {(route_for_source(side), store): probe for (side, store), probe in probes.items()}
    if replicas and settings.replica_nodes:
        feed = load_matrix().feed_source(REPLICA_STORE)
        for node in settings.replica_nodes:
            for side in REPLICA_SOURCE_SIDES:
                if (side, feed) in probes:
                    expected[(settings.progress_route(replica_route(node)), f"{side}.{feed}")] = probes[(side, feed)]
    return expected


def applied_progress(settings: Settings, replicas: bool = True,
                     connections: KeptConnections | None = None) -> list[dict[str, object]]:
    """Every progress row of the stack: both sides' META and, with ``replicas``, each regional server's
    (``connections``: kept open between calls)."""
    rows = [row for target in SIDES for row in read_progress(settings, target, connections=connections)]
    if replicas:
        rows += [row for node in settings.replica_nodes
                 for row in read_progress(settings, node, store=REPLICA_STORE, connections=connections)]
    return rows


def pending_routes(settings: Settings, probes: dict[tuple[str, str], str], replicas: bool = True) -> list[PendingRoute]:
    """The probes not yet reported as applied by the other side (and, with ``replicas``, the regional servers)."""
    applied = {(str(row["route"]), str(row["source_store"])): row["last_probe_id"]
               for row in applied_progress(settings, replicas)}
    pending: list[PendingRoute] = []
    for (route, store), probe in expected_probes(settings, probes, replicas).items():
        seen = applied.get((route, store))
        if seen is None or str(seen) < probe:
            pending.append(PendingRoute(route, store, probe, None if seen is None else str(seen)))
    return pending


def wait_synced(settings: Settings, timeout_s: float,
                on_wait: Callable[[list[PendingRoute]], None] | None = None,
                replicas: bool = True) -> list[PendingRoute]:
    """Block until every source store's probe was applied (with ``replicas``: by the regional servers too);
    return what is still pending on timeout."""
    probes = insert_probes(settings)
    deadline = time.monotonic() + timeout_s
    last_report = renewed = time.monotonic()
    while True:
        try:
            pending = pending_routes(settings, probes, replicas)
        except psycopg.OperationalError:
            pending = [PendingRoute(route, key, p, None)
                       for (route, key), p in expected_probes(settings, probes, replicas).items()]
        if not pending or time.monotonic() >= deadline:
            return pending
        if time.monotonic() - renewed >= PROBE_RENEW_S:
            try:
                insert_probes(settings)  # the first ids stay the ones waited for: any later probe proves them
            except psycopg.OperationalError:
                pass  # a store is down: the pending list says so, and the next turn tries again
            renewed = time.monotonic()
        if on_wait and time.monotonic() - last_report >= 5:
            on_wait(pending)
            last_report = time.monotonic()
        time.sleep(0.1)



def undrained(settings: Settings, connections: KeptConnections | None = None) -> list[str]:
    """Source stores whose last produced position (per the capture) is not applied yet, on every route
    (a replica route's: the feeding store of both sides; ``connections``: kept open between calls)."""
    applied = {(str(r["route"]), str(r["source_store"])): int(str(r["last_lsn"]))
               for r in applied_progress(settings, connections=connections)}
    wanted: list[tuple[str, str, str, str]] = []  # route, progress key, source side, source store
    for target in SIDES:
        source = other_side(target)
        wanted += [(route_for_source(source), store, source, store) for store in settings.captured_stores(source)]
    if settings.replica_nodes:
        feed = load_matrix().feed_source(REPLICA_STORE)
        wanted += [(settings.progress_route(replica_route(node)), f"{side}.{feed}", side, feed)
                   for node in settings.replica_nodes for side in REPLICA_SOURCE_SIDES]
    pending: list[str] = []
    for route, key, side, store in wanted:
        captured = int(capture_state(settings, side, store).get("last_lsn", 0))
        if captured > applied.get((route, key), 0):
            pending.append(f"{route}/{key}")
    return pending


def wait_drained(settings: Settings, timeout_s: float, skip_route: str | None = None) -> list[str]:
    """With the captures stopped, wait until the workers applied everything they produced.

    Unlike :func:`wait_synced` this needs no running capture: it compares the captures' final
    produced positions with the applied ones. Returns what is still pending on timeout.
    ``skip_route`` (one that cannot drain, e.g. cut off by the link) is not waited for.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pending = [p for p in undrained(settings) if not skip_route or not p.startswith(f"{skip_route}/")]
        except psycopg.OperationalError as exc:
            pending = [f"stores unreachable: {exc}"]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.1)
