"""The embedded two-site stack: every process both sides need, on 127.0.0.1, in one data dir.

Start order: PostgreSQL (local, remote) -> broker -> captures (local, remote) -> workers
(local_to_remote, remote_to_local). ``up`` is idempotent: it starts only what is not running,
so after a crash or ``kill -9`` of any process, ``up`` again resumes it. ``down`` stops the
captures, waits until the workers applied everything they produced, then stops the rest; the
broker keeps its log in memory, and draining is what makes that safe across ``down``/``up``.
"""

from __future__ import annotations

import sys
import threading
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from connectors.keycloak.crypto import key_ring_for
from connectors.keycloak.schema import ACCOUNT_TABLES
from infra.local.api_runtime import api_process_names, apis_up
from infra.local.broker import Broker
from infra.local.broker_secrets import ensure_broker_secrets
from infra.local.databases import postgres_instance, provision_side
from infra.local.db_roles import provision_keycloak_access
from infra.local.fhir_runtime import fhir_process_names, fhir_up
from infra.local.keycloak_standin import standin_ready
from infra.local.link import CUT_SIDE, link_is_up
from infra.local.process import (
    ProcessError,
    ProcessSpec,
    log_path,
    port_open,
    read_pid,
    start_process,
    stop_pid,
    wait_until,
)
from infra.local.recovery import (
    broker_lost_log,
    ensure_incarnation,
    pending_sides,
    recapture_all,
    recapture_pending,
)
from streams.apply.barrier import wait_drained
from streams.apply.fhir_worker import PROCESS as FHIR_WORKER
from streams.apply.mode_server import mode_server_ready
from streams.core.model import DATABASE_STORES, ROUTES, SIDES, replica_route, route_for_target
from streams.core.modes import heartbeat_topic
from streams.runtime.connections import database_name, keycloak_db_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import LOOPBACK, Settings
from streams.runtime.settings_file import settings_to_toml
from streams.runtime.state_files import capture_retrying, capture_waiting_for_broker, worker_state, worker_state_path
from streams.runtime.topics import incarnation_topic

Say = Callable[[str], None]
#: How long a Kafka client of a broker that is gone gets to stop before SIGKILL (``_stop_brokerless``).
BROKERLESS_STOP_S = 10.0


@dataclass(frozen=True)
class Component:
    """One process of the stack."""

    name: str
    kind: str  # postgres | keycloak | broker | link | capture | worker | mode | api | fhir
    side_or_route: str


def embedded_keycloak_sides(settings: Settings) -> list[str]:
    """Sides whose Keycloak is the embedded stand-in (no Keycloak URL configured)."""
    return [side for side in SIDES
            if not settings.node(side).keycloak_url]


def components(settings: Settings) -> list[Component]:
    """Every process of the stack, in start order."""
    return (
        # A node whose PostgreSQL another supervisor runs (a network's shared cloud server) has none here.
        [Component(f"pg-{side}", "postgres", side) for side in SIDES if settings.node(side).pg_managed]
        + [Component(f"keycloak-{side}", "keycloak", side) for side in embedded_keycloak_sides(settings)]
        # A Kafka cluster of its own (broker_bootstrap_servers) replaces the embedded broker and the link.
        + ([] if settings.broker_bootstrap_servers
           else [Component("broker", "broker", ""), Component("link", "link", "")])
        + [Component(f"capture-{side}", "capture", side) for side in SIDES]
        + [Component(f"worker-{route}", "worker", route) for route in settings.applied_routes]
        + [Component(f"mode-{side}", "mode", side) for side in SIDES]
        + [Component(name, "api", name.partition("-")[2]) for name in api_process_names(settings)]
        + [Component(name, "fhir", "remote") for name in fhir_process_names(settings)]
    )


#: Processes that depend on nothing but PostgreSQL, Keycloak and the broker: stopped together.
_CLIENT_KINDS = frozenset(("fhir", "api", "mode", "worker"))


def stop_tiers(order: list[Component]) -> list[list[Component]]:
    """``order`` (reverse start order) cut into groups stopped one after the other, each group at once.

    The clients of the stores and the broker (workers, mode servers, APIs, the FHIR worker) stop together,
    then the link, the broker, the Keycloak stand-ins together, the PostgreSQL servers together: nothing
    stops before what still uses it.
    """
    def tier(component: Component) -> str:
        return "client" if component.kind in _CLIENT_KINDS else component.kind

    tiers: list[list[Component]] = []
    for component in order:
        if tiers and tier(component) in ("client", "keycloak", "postgres") and tier(tiers[-1][0]) == tier(component):
            tiers[-1].append(component)
        else:
            tiers.append([component])
    return tiers


def settings_file(settings: Settings) -> Path:
    """The settings file every child process reads (written by ``up``)."""
    return settings.data_dir / "platsync.toml"


def write_settings_file(settings: Settings, path: Path | None = None) -> Path:
    """Write ``settings`` as the TOML file child processes read (default: the data dir's); return its path."""
    text = "# Effective settings of this data dir, written by 'platsync up'. Edit and restart to change.\n"
    path = path or settings_file(settings)
    path.write_text(text + settings_to_toml(settings), encoding="utf-8")
    tomllib.loads(path.read_text(encoding="utf-8"))  # never leave a file the children cannot read
    return path


def prepare_keycloak_capture(settings: Settings, side: str, say: Say) -> None:
    """Full before-images on Keycloak's account tables, so a deleted row still names its user; the
    least-privilege grants and the capture's publication on the embedded Keycloak database."""
    try:
        with psycopg.connect(keycloak_db_dsn(settings, side) + " connect_timeout=5", autocommit=True) as conn:
            for table in ACCOUNT_TABLES:
                conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    except psycopg.Error as exc:
        say(f"WARNING: cannot set REPLICA IDENTITY FULL on {side} Keycloak's account tables ({exc}); "
            "ask the database owner to run it (docs/keycloak.md), or deletions cannot be synced")

    provision_keycloak_access(settings, side, say)  # the capture and apply roles' grants, the publication


def mode_server_spec(settings: Settings, side: str, config: Path, name: str | None = None) -> ProcessSpec:
    """How the stack runs a side's mode server (port and timeout from the settings)."""
    return ProcessSpec(name=name or f"mode-{side}",
                       argv=[sys.executable, "-m", "streams.apply.mode_server", "--side", side,
                             "--config", str(config), "--data-dir", str(settings.data_dir)])


class Stack:
    """Start, stop and inspect the embedded stack described by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = Broker(settings.host, settings.broker_port, settings.broker_listen_port,
                             bootstrap_servers=settings.broker_bootstrap_servers)

    def _python_spec(self, name: str, module: str, *args: str) -> ProcessSpec:
        return ProcessSpec(name=name, argv=[sys.executable, "-m", module, *args,
                                            "--config", str(settings_file(self.settings)),
                                            "--data-dir", str(self.settings.data_dir)],
                           # PostgreSQL shows each session's process (pg_stat_activity.application_name).
                           env={"PGAPPNAME": name})

    def topics(self) -> list[str]:
        """Every topic the stack uses: one per captured database, one dead-letter topic per route."""

        names = [self.settings.topic(side, store) for side in SIDES
                 for store in self.settings.captured_stores(side)]
        return (names + [self.settings.dead_letter_topic(route) for route in self.settings.applied_routes]
                + [incarnation_topic(self.settings), heartbeat_topic(self.settings)])

    def running(self) -> dict[str, int | None]:
        """Pid of each component, or None if it is not running."""
        return {c.name: read_pid(self.settings.data_dir, c.name) for c in components(self.settings)}

    def up(self, say: Say = print) -> None:
        """Start everything not yet running and wait until the stack is ready.

        What does not depend on each other starts together (both sides' PostgreSQL, both Keycloak
        stand-ins, the captures with the workers, both mode servers, both APIs): a process's start is
        mostly imports, a JVM and connections, and waiting for one before starting the next made every
        ``up`` (and every end-to-end test's stack) several seconds slower.
        """
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        write_settings_file(s)
        timeout = s.ready_timeout_s
        with ThreadPoolExecutor(max_workers=len(SIDES), thread_name_prefix="postgres-up") as pool:
            for started in [pool.submit(self._postgres_up, side, say) for side in SIDES]:
                started.result()
        key_ring_for(s)  # create the embedded credential key file once, before any process reads it
        self._broker_security_up(say)
        self.keycloak_up(say)
        if s.broker_bootstrap_servers:
            wait_until(self.broker.ready, timeout, f"Kafka cluster {s.broker_bootstrap_servers}")
        else:
            self._embedded_broker_up(timeout, say)
        # The dead-letter topics hold whole original messages plus their metadata: twice the limit.
        self.broker.ensure_topics(self.topics(), max_message_bytes=2 * s.kafka_message_max_bytes)
        say(f"broker ready on {s.broker_bootstrap} ({len(self.topics())} topics)")
        self._recover_broker_loss(say)
        already_running = {side for side in SIDES if read_pid(s.data_dir, f"capture-{side}") is not None}
        for side in SIDES:
            if side not in already_running:
                self._start_capture(side)
        self._start_workers()  # while the captures connect: a worker needs only the broker's topics
        for side in SIDES:
            self._wait_capture(side, say, restart_if_it_exits=side in already_running)
        self._wait_workers(say)
        for node in s.replica_nodes:  # the regional server's process: it waits for its store if that is down
            say(f"worker {replica_route(node)} started (read-only replicas on {node})")
        self._modes_up(say)
        apis_up(s, self._python_spec, say)
        fhir_up(s, self._python_spec(FHIR_WORKER, "streams.apply.fhir_worker"), say)

    def _postgres_up(self, side: str, say: Say) -> None:
        """Initialise (once), start and provision the PostgreSQL of ``side``; only provision one that this
        stack does not run."""
        s = self.settings
        pg = postgres_instance(s, side)
        if not s.node(side).pg_managed:  # its supervisor started it: only provision our databases there
            wait_until(lambda: port_open(s.pg_host(side), s.pg_port(side)), s.ready_timeout_s,
                       f"PostgreSQL of {side} on {s.pg_host(side)}:{s.pg_port(side)} (not run by this stack)")
        else:
            if not pg.initialised():
                say(f"initialising PostgreSQL for {side} in {pg.pgdata}")
                pg.init()
            pg.start(s.ready_timeout_s, say=say)
        provision_side(s, side)
        say(f"PostgreSQL {side:6} ready on {s.host}:{pg.port} (databases: {', '.join(DATABASE_STORES[side])})")

    def _start_workers(self) -> None:
        s = self.settings
        for route in s.applied_routes:
            name = f"worker-{route}"
            if read_pid(s.data_dir, name) is None:
                worker_state_path(s, route).unlink(missing_ok=True)
                start_process(s.data_dir, self._python_spec(name, "streams.apply.worker", "--route", route))

    def _wait_workers(self, say: Say) -> None:
        s = self.settings
        cut_route = None if link_is_up(s) else route_for_target(CUT_SIDE)
        for route in ROUTES:
            name = f"worker-{route}"
            if route == cut_route:  # it cannot reach the broker before 'platsync link up'
                say(f"worker {route} started; the link is down: it consumes once the link is restored")
                continue
            wait_until(lambda route=route: self._worker_ready(route), s.ready_timeout_s, f"worker {route}",
                       alive=lambda name=name: self._alive(name), log=log_path(s.data_dir, name))
            say(f"worker {route} consuming")

    def _start_capture(self, side: str) -> None:
        start_process(self.settings.data_dir,
                      self._python_spec(f"capture-{side}", "connectors.capture.runner", "--side", side))

    def _wait_capture(self, side: str, say: Say, restart_if_it_exits: bool = False) -> None:
        """Wait until the capture of ``side`` streams, or holds its changes because the broker is out of
        reach: a side cut off by the link must start fully all the same (docs/outages.md).

        ``restart_if_it_exits``: the capture ran before this ``up``. It may exit while we wait, as it
        should when its database crashed under it (its engine gives up and asks its supervisor for a
        restart, and ``up`` is that supervisor here): it is then started once more and awaited again.
        """
        from connectors.capture.runner import capture_ready  # deferred: ~0.4 s of imports (SQLAlchemy, envelope)

        s = self.settings
        name = f"capture-{side}"
        stores = ", ".join(s.captured_stores(side))

        def pid() -> int:
            return read_pid(s.data_dir, name) or -1

        def started() -> bool:
            return capture_ready(s, side) or capture_waiting_for_broker(s, side, pid())

        def reason() -> str:
            what = capture_retrying(s, side, pid())
            return f"it retries {what} (unreachable)" if what else "its replication slots are not streaming yet"

        def wait() -> None:
            wait_until(started, s.ready_timeout_s, f"Debezium capture of {side}", alive=lambda: self._alive(name),
                       log=log_path(s.data_dir, name), waiting_for=reason, say=say)

        try:
            wait()
        except ProcessError:
            if not restart_if_it_exits or self._alive(name):
                raise
            say(f"capture {side:6} exited while 'up' waited for it (its database had crashed?): starting it again")
            self._start_capture(side)
            wait()
        cut = side == CUT_SIDE and not link_is_up(s)
        if not cut and not capture_waiting_for_broker(s, side, pid()):  # then its slots were streaming
            say(f"capture {side:6} streaming ({stores})")
        else:
            say(f"capture {side:6} started; the broker is out of reach{' (link down)' if cut else ''}: changes "
                f"of {stores} wait in the replication slots until it is back")

    def _embedded_broker_up(self, timeout: float, say: Say) -> None:
        """Start the embedded broker and the link proxy in front of it unless they run."""
        s = self.settings
        if read_pid(s.data_dir, self.broker.name) is None:
            self._stop_kafka_clients(say)
            start_process(s.data_dir, self.broker.spec())
        wait_until(lambda: port_open(LOOPBACK, s.broker_listen_port), timeout, "broker",
                   alive=lambda: self._alive("broker"), log=log_path(s.data_dir, "broker"))
        if read_pid(s.data_dir, "link") is None:
            start_process(s.data_dir, self._python_spec("link", "infra.local.link"))
        wait_until(self.broker.ready, timeout, "broker behind the link proxy", alive=lambda: self._alive("link"),
                   log=log_path(s.data_dir, "link"))

    def _broker_security_up(self, say: Say) -> None:
        """Generate the broker endpoint's CA, certificate and users once (docs/broker_security.md)."""

        s = self.settings
        if s.broker_security_protocol != "plaintext":

            secrets = ensure_broker_secrets(s)
            say(f"broker endpoint: {s.broker_security_protocol} (CA {secrets.ca})")
        self.broker = replace(self.broker, client_options=client_config(s))

    def _stop_kafka_clients(self, say: Say) -> None:
        """Stop captures, workers and mode servers before a broker (re)start.

        A (re)started broker is empty, and it auto-creates a topic that a client produces to with
        4 partitions; every topic must be created by ``up`` first, with one partition.
        """
        pids = self.running()
        running = [c for c in components(self.settings) if c.kind in ("capture", "worker", "mode") and pids[c.name]]
        if running:
            say("the broker is not running: stopping its clients until its topics are created again")
        self._stop_brokerless(running, pids, say)

    def _recover_broker_loss(self, say: Say) -> None:
        """If the broker restarted without its log, re-capture both sides before the engine resumes.

        A side cut off by the link cannot publish: its re-capture waits for ``platsync link up``.
        """

        link_up = link_is_up(self.settings)
        if not broker_lost_log(self.settings):
            ensure_incarnation(self.settings)
            if link_up and pending_sides(self.settings):
                recapture_pending(self.settings, say)
            return
        say("the broker restarted without its log (memory storage): stopping captures and workers, "
            "re-capturing the stores")
        pids = self.running()
        self._stop_brokerless([c for c in components(self.settings) if c.kind in ("capture", "worker")], pids, say)
        reachable = SIDES if link_up else tuple(side for side in SIDES if side != CUT_SIDE)
        recapture_all(self.settings, say, reachable)
        if not link_up:
            say(f"the link is down: the {CUT_SIDE} side is re-captured at 'platsync link up'")
        say("re-capture done: captures and workers start again from the new log")

    def _modes_up(self, say: Say) -> None:
        """Start each side's mode server (X-Hybridmode status endpoint) and wait until it answers."""

        s = self.settings
        for side in SIDES:
            if read_pid(s.data_dir, f"mode-{side}") is None:
                start_process(s.data_dir, mode_server_spec(s, side, settings_file(s)))
        for side in SIDES:
            name = f"mode-{side}"
            wait_until(lambda side=side: mode_server_ready(s, side), s.ready_timeout_s, f"mode server of {side}",
                       alive=lambda name=name: self._alive(name), log=log_path(s.data_dir, name))
            say(f"mode {side:6} served on http://{s.host}:{s.mode_port(side)}/status (X-Hybridmode)")

    def keycloak_up(self, say: Say = print) -> None:
        """Start the embedded Keycloak stand-ins (PostgreSQL must run) and prepare Keycloak capture."""
        s = self.settings
        write_settings_file(s)

        for side in embedded_keycloak_sides(s):
            postgres_instance(s, side).ensure_databases((database_name(s, side, "keycloak"),))
            if read_pid(s.data_dir, f"keycloak-{side}") is None:
                start_process(s.data_dir, self._python_spec(f"keycloak-{side}", "infra.local.keycloak_standin",
                                                            "--side", side))
        for side in embedded_keycloak_sides(s):
            name = f"keycloak-{side}"
            wait_until(lambda side=side: standin_ready(s, side), s.ready_timeout_s, f"Keycloak stand-in of {side}",
                       alive=lambda name=name: self._alive(name), log=log_path(s.data_dir, name))
            say(f"Keycloak {side:6} (embedded stand-in) ready on {s.keycloak_url(side)}, realm {s.keycloak_realm}")
        for side in SIDES:
            prepare_keycloak_capture(s, side, say)

    def _alive(self, name: str) -> bool:
        return read_pid(self.settings.data_dir, name) is not None

    def _worker_ready(self, route: str) -> bool:
        state = worker_state(self.settings, route)
        return bool(state.get("ready")) and state.get("pid") == read_pid(self.settings.data_dir, f"worker-{route}")

    def down(self, say: Say = print, drain_timeout_s: float = 60.0) -> None:
        """Stop the captures, drain what they produced into the other side, then stop the rest.

        Captures stop first (Debezium flushes its offsets): anything committed after that stays
        in the replication slot and is captured at the next ``up``. Then the workers apply
        everything the captures produced (the broker keeps it only in memory), proven by
        comparing the captures' final produced LSNs with the applied ones.
        """
        pids = self.running()
        order = list(reversed(components(self.settings)))
        self._stop_together([c for c in order if c.kind == "capture"], pids, say)
        workers_up = all(pids[c.name] for c in components(self.settings)
                         if c.kind in ("worker", "broker", "link", "postgres", "keycloak"))
        if drain_timeout_s > 0 and workers_up:

            cut_route = None if link_is_up(self.settings) else route_for_target(CUT_SIDE)
            if cut_route:
                say(f"WARNING: the link is down: {cut_route} cannot drain now; what it has not applied is "
                    "re-captured at the next 'up' (broker recovery)")
            say("draining: waiting until the workers applied everything captured ...")
            pending = wait_drained(self.settings, drain_timeout_s, skip_route=cut_route)
            if pending:
                say(f"WARNING: not drained within {drain_timeout_s:.0f}s: {', '.join(pending)}; the next 'up' "
                    "re-captures what the broker loses when it stops")
            else:
                say("drained: every captured change is applied")
        elif drain_timeout_s > 0 and any(pids.values()):
            say("WARNING: a worker, the broker or a database is down: stopping without draining")
        for tier in stop_tiers([c for c in order if c.kind != "capture"]):
            self._stop_together(tier, pids, say)

    def _stop_brokerless(self, running: list[Component], pids: dict[str, int | None], say: Say) -> None:
        """Stop Kafka clients of a broker that is gone, all at once and with a short grace: a worker's graceful
        stop waits on commits and flushes to that broker (a minute each, seen in tests), and there is nothing to
        lose by not waiting: what it applied is recorded with its position in the target store."""
        self._stop_together(running, pids, say, BROKERLESS_STOP_S)

    def _stop_together(self, running: list[Component], pids: dict[str, int | None], say: Say,
                       timeout_s: float = 60.0) -> None:
        """Stop ``running`` at once (each gracefully, within ``timeout_s``) and wait for all of them."""
        if len(running) <= 1:
            for component in running:
                self._stop(component, pids, say, timeout_s)
            return
        threads = [threading.Thread(target=self._stop, args=(c, pids, say, timeout_s), daemon=True)
                   for c in running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _stop(self, component: Component, pids: dict[str, int | None], say: Say, timeout_s: float = 60.0) -> None:
        pid = pids[component.name]
        if pid is None or read_pid(self.settings.data_dir, component.name) != pid:
            return  # not running, or it exited since ``pids`` was read (its pid may be another's now)
        sig = postgres_instance(self.settings, component.side_or_route).stop_signal() \
            if component.kind == "postgres" else 15
        clean = stop_pid(pid, timeout_s=timeout_s, sig=sig)
        (self.settings.data_dir / "run" / f"{component.name}.pid").unlink(missing_ok=True)
        say(f"stopped {component.name} (pid {pid}){'' if clean else ' after SIGKILL'}")

    def require_running(self) -> None:
        """Raise a clear error unless every process of the stack runs."""
        missing = [name for name, pid in self.running().items() if pid is None]
        if missing:
            raise ProcessError(f"the stack in {self.settings.data_dir} is not fully running (down: "
                               f"{', '.join(missing)}); start it with 'platsync up --detach'")
