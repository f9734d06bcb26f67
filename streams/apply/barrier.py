"""Sync barriers: prove that everything committed on the sources so far has been applied.

``wait_synced`` inserts a probe row into every source database. Each capture carries the
probe through the same ordered topic as the data, and the worker records the probe id only
after every change before it was applied; so once the target side reports a probe id at
least as new as ours for every source store, every change committed before the probe is in
the target stores. This measures from source positions, never from the broker's watermark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from streams.apply.progress import read_progress
from streams.core.model import SIDES, other_side, route_for_source
from streams.runtime.connections import keycloak_db_dsn, libpq_dsn
from streams.runtime.settings import Settings
from streams.runtime.state_files import capture_state

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


def pending_routes(settings: Settings, probes: dict[tuple[str, str], str]) -> list[PendingRoute]:
    """The probes not yet reported as applied by the other side."""
    pending: list[PendingRoute] = []
    applied: dict[tuple[str, str], str | None] = {}
    for target in SIDES:
        for row in read_progress(settings, target):
            applied[(row["route"], row["source_store"])] = row["last_probe_id"]
    for (side, store), probe in probes.items():
        route = route_for_source(side)
        seen = applied.get((route, store))
        if seen is None or seen < probe:
            pending.append(PendingRoute(route, store, probe, seen))
    return pending


def wait_synced(settings: Settings, timeout_s: float,
                on_wait: Callable[[list[PendingRoute]], None] | None = None) -> list[PendingRoute]:
    """Block until every source store's probe was applied; return what is still pending on timeout."""
    probes = insert_probes(settings)
    deadline = time.monotonic() + timeout_s
    last_report = time.monotonic()
    while True:
        try:
            pending = pending_routes(settings, probes)
        except psycopg.OperationalError:
            pending = [PendingRoute(route_for_source(s), st, p, None) for (s, st), p in probes.items()]
        if not pending or time.monotonic() >= deadline:
            return pending
        if on_wait and time.monotonic() - last_report >= 5:
            on_wait(pending)
            last_report = time.monotonic()
        time.sleep(0.1)



def undrained(settings: Settings) -> list[str]:
    """Source stores whose last produced position (per the capture) is not applied yet."""
    pending: list[str] = []
    for target in SIDES:
        applied = {(r["route"], r["source_store"]): int(r["last_lsn"]) for r in read_progress(settings, target)}
        source = other_side(target)
        route = route_for_source(source)
        for store in settings.captured_stores(source):
            captured = int(capture_state(settings, source, store).get("last_lsn", 0))
            if captured > applied.get((route, store), 0):
                pending.append(f"{route}/{store}")
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
