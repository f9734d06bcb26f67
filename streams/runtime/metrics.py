"""Prometheus metrics and health endpoints of one long-running PLAT Sync process.

Each process (capture runner per side, Faust worker per route, mode server per side) builds its
own :class:`~prometheus_client.CollectorRegistry` with a factory here (:func:`capture_metrics`,
:func:`worker_metrics`, :func:`mode_metrics`; never prometheus_client's global registry) and
serves it with :class:`MetricsServer` on ``settings.host`` and ``settings.metrics_port(process)``:

- ``GET /metrics``: the registry in the Prometheus text format;
- ``GET /healthz``: liveness, 200 while the process's loops beat (see :class:`Health`), 503 with
  a JSON reason when one stalled for ``metrics_stall_after_s`` or the process failed;
- ``GET /readyz``: readiness, 200 once connected and consuming, 503 with a JSON reason otherwise.

The hot paths count per batch (``inc(n)``, one histogram observation per batch and source
store), never per event. Everything that is a position or a state (lag, retries) is read when
scraped. docs/observability.md lists every metric.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from streams.core.errors import PlatSyncError
from streams.core.reports import BatchReport
from streams.runtime.settings import Settings

#: Commit-to-applied seconds (a replay of old changes lands in the last buckets).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))
Check = Callable[[], "str | None"]


class MetricsPortError(PlatSyncError, OSError):
    """The metrics port of a process is taken (the message names the setting to change)."""


class Health:
    """Liveness and readiness of one process, fed by its loops, read by ``/healthz`` and ``/readyz``.

    Live: every loop that :meth:`beat` beat within ``stall_after_s``, no :meth:`fail`, and every
    liveness check returns None. Ready: live, :meth:`set_ready` said so, and every readiness check
    returns None. A check returns None when fine, else the reason (ids and kinds, never values).
    """

    def __init__(self, stall_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._beats: dict[str, float] = {}
        self._failure: str | None = None
        self._not_ready: str | None = "starting"
        self._live_checks: list[Check] = []
        self._ready_checks: list[Check] = []

    def beat(self, loop: str) -> None:
        """``loop`` made progress now."""
        self._beats[loop] = self._clock()

    def fail(self, reason: str) -> None:
        """The process cannot continue (liveness 503 from now on)."""
        self._failure = self._failure or reason

    def set_ready(self, ready: bool, reason: str = "not ready") -> None:
        """Readiness as the process sees it (the readiness checks are applied on top)."""
        self._not_ready = None if ready else reason

    def add_check(self, check: Check, readiness: bool = False) -> None:
        """Add a liveness check (or a readiness one)."""
        (self._ready_checks if readiness else self._live_checks).append(check)

    @staticmethod
    def _run(checks: Iterable[Check]) -> str | None:
        for check in checks:
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a failing check is a reason, not a crash
                reason = f"health check failed: {type(exc).__name__}"
            if reason:
                return reason
        return None

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(live, JSON body)."""
        now = self._clock()
        ages = {loop: round(now - at, 3) for loop, at in self._beats.items()}
        reason = self._failure
        if reason is None:
            stalled = sorted(loop for loop, age in ages.items() if age > self.stall_after_s)
            if stalled:
                reason = f"no progress for more than {self.stall_after_s:g}s: {', '.join(stalled)}"
        reason = reason or self._run(self._live_checks)
        body: dict[str, Any] = {"status": "ok" if reason is None else "failing", "loops_age_s": ages}
        if reason is not None:
            body["reason"] = reason
        return reason is None, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, JSON body)."""
        live, body = self.liveness()
        reason = body.get("reason") if not live else (self._not_ready or self._run(self._ready_checks))
        out: dict[str, Any] = {"status": "ready" if reason is None else "not_ready"}
        if reason is not None:
            out["reason"] = reason
        return reason is None, out


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (port 0: any free one), on daemon threads."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        self.registry, self.health = registry, health
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Bind (``OSError`` if the port is taken) and serve in the background; return self."""
        registry, health = self.registry, self.health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, body = health.liveness() if path == "/healthz" else health.readiness()
                    self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b'{"error": "not found: use /metrics, /healthz or /readyz"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                """No access log (probes call every few seconds)."""

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server, self.port = server, int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def new_registry(process_collectors: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process's CPU/memory/fd and Python platform metrics if asked."""
    registry = CollectorRegistry(auto_describe=True)
    if process_collectors:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def serve(settings: Settings, process: str, registry: CollectorRegistry, health: Health) -> MetricsServer | None:
    """Start the metrics server of ``process`` (``capture-local``, ``worker-local_to_remote``,
    ``mode-remote``, ...) on its configured port; None if ``metrics_enabled`` is false.

    Raises ``OSError`` with the setting to change when the port is taken.
    """
    if not settings.metrics_enabled:
        return None
    port = settings.metrics_port(process)
    try:
        return MetricsServer(registry, health, settings.host, port).start()
    except OSError as exc:
        setting = settings.metrics_port_setting(process)
        raise MetricsPortError(f"{process}: cannot serve metrics on {settings.host}:{port} ({exc}); set {setting} to a "
                      "free port or metrics_enabled = false") from exc


class _Children:
    """``metric.labels(*values)`` looked up once per label set (``labels()`` costs ~3 us a call)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, tuple[str, ...]], Any] = {}

    def __call__(self, metric: Any, *values: str) -> Any:
        key = (id(metric), values)
        child = self._cache.get(key)
        if child is None:
            child = self._cache[key] = metric.labels(*values)
        return child


# --- capture -----------------------------------------------------------------------------------

@dataclass
class CaptureMetrics:
    """The metrics of one side's capture process."""

    side: str
    registry: CollectorRegistry
    captured: Counter
    echoes_dropped: Counter
    batches: Counter
    captured_lsn: Gauge
    captured_commit_ts: Gauge
    _child: _Children = field(default_factory=_Children)

    def record_batch(self, store: str, events: int, echoes: int, last_lsn: int, last_commit_ts_ms: int) -> None:
        """One delivered Debezium batch of ``store``: counts are increments, positions the newest."""
        child, side = self._child, self.side
        if events:
            child(self.captured, side, store).inc(events)
        if echoes:
            child(self.echoes_dropped, side, store).inc(echoes)
        child(self.batches, side, store).inc()
        child(self.captured_lsn, side, store).set(last_lsn)
        child(self.captured_commit_ts, side, store).set(last_commit_ts_ms / 1000)


def capture_metrics(side: str, stores: Iterable[str], registry: CollectorRegistry | None = None) -> CaptureMetrics:
    """The capture metrics of ``side`` in a new registry (every store's series start at 0)."""
    registry = registry or new_registry()
    labels = ("side", "store")
    metrics = CaptureMetrics(
        side, registry,
        Counter("platsync_captured_events", "Change events delivered to the broker, per source store", labels,
                registry=registry),
        Counter("platsync_echoes_dropped", "Rows applied by the sync itself, dropped instead of sent back",
                labels, registry=registry),
        Counter("platsync_capture_batches", "Debezium batches delivered and acknowledged", labels,
                registry=registry),
        Gauge("platsync_captured_lsn", "Highest source LSN delivered to the broker", labels, registry=registry),
        Gauge("platsync_captured_commit_timestamp_seconds", "Newest source commit time delivered to the broker "
              "(Unix seconds)", labels, registry=registry))
    for store in stores:
        for metric in (metrics.captured, metrics.echoes_dropped, metrics.batches):
            metric.labels(side, store)
    return metrics


# --- worker ------------------------------------------------------------------------------------

@dataclass
class WorkerMetrics:
    """The metrics of one route's worker; :meth:`record` is called once per applied batch."""

    route: str
    registry: CollectorRegistry
    batches: Counter
    consumed: Counter
    applied: Counter
    stale: Counter
    conflicts: Counter
    dead_letters: Counter
    latency: Histogram
    #: source store -> (applied LSN, applied commit ms), seeded from platsync_progress at start.
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    _child: _Children = field(default_factory=_Children)

    def record(self, report: BatchReport, now_s: float | None = None) -> None:
        """Add one applied batch (aggregated per target and source store by the applier)."""
        now_s = time.time() if now_s is None else now_s
        route, child = self.route, self._child
        child(self.batches, route).inc()
        for store, counts in report.targets.items():
            if counts.applied:
                child(self.applied, route, store).inc(counts.applied)
            if counts.stale:
                child(self.stale, route, store).inc(counts.stale)
            if counts.conflicts:
                child(self.conflicts, route, store).inc(counts.conflicts)
        for kind, n in report.dead_letter_kinds.items():
            child(self.dead_letters, route, kind).inc(n)
        for store, progress in report.progress.items():
            if progress.events_seen:
                child(self.consumed, route, store).inc(progress.events_seen)
            lsn, ts = self.positions.get(store, (0, 0))
            self.positions[store] = (max(lsn, progress.last_lsn), max(ts, progress.last_commit_ts_ms))
            if progress.last_commit_ts_ms:
                child(self.latency, route, store).observe(max(0.0, now_s - progress.last_commit_ts_ms / 1000))

    def seed_positions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Applied positions recorded before this process started (``streams.apply.progress.read_progress``)."""
        for row in rows:
            if row.get("route") == self.route:
                self.positions[str(row["source_store"])] = (int(row["last_lsn"]), int(row["last_commit_ts_ms"]))


class _WorkerStateCollector:
    """Lag, applied positions and retries, computed when scraped (nothing on the hot path)."""

    def __init__(self, metrics: WorkerMetrics, stores: Iterable[str],
                 captured: Callable[[str], Mapping[str, Any]],
                 retries: Callable[[], tuple[Mapping[str, str], Mapping[str, int]]],
                 targets: Iterable[str], clock: Callable[[], float] = time.time) -> None:
        self.metrics, self.stores, self.captured = metrics, tuple(stores), captured
        self.retries, self.targets, self.clock = retries, tuple(targets), clock

    def describe(self) -> list[Metric]:
        return [*self._families(), self._attempts()]

    @staticmethod
    def _attempts() -> CounterMetricFamily:
        return CounterMetricFamily("platsync_retry_attempts", "Failed attempts on an unreachable target "
                                   "(each followed by a back-off)", labels=["route", "target"])

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        route_store = ["route", "store"]
        return (
            GaugeMetricFamily("platsync_lag_seconds", "Seconds since the newest applied source commit while captured "
                              "changes are pending (0: caught up)", labels=route_store),
            GaugeMetricFamily("platsync_lag_bytes", "Source WAL bytes captured but not applied yet (LSN distance)",
                              labels=route_store),
            GaugeMetricFamily("platsync_applied_lsn", "Highest source LSN applied", labels=route_store),
            GaugeMetricFamily("platsync_applied_commit_timestamp_seconds", "Newest source commit time applied "
                              "(Unix seconds)", labels=route_store),
            GaugeMetricFamily("platsync_retrying", "1 while the route retries an unreachable target",
                              labels=["route", "target"]),
        )

    def collect(self) -> Iterable[Metric]:
        lag_s, lag_b, lsn_g, ts_g, retrying_g = self._families()
        route, now = self.metrics.route, self.clock()
        for store in self.stores:
            app_lsn, app_ts = self.metrics.positions.get(store, (0, 0))
            lsn_g.add_metric([route, store], app_lsn)
            ts_g.add_metric([route, store], app_ts / 1000)
            cap = self.captured(store)
            if not cap:  # the capture's position is unknown here: no lag claimed
                continue
            cap_lsn, cap_ts = int(cap.get("last_lsn", 0)), int(cap.get("last_commit_ts_ms", 0))
            pending = cap_lsn > app_lsn
            lag_b.add_metric([route, store], max(0, cap_lsn - app_lsn) if pending else 0)
            lag_s.add_metric([route, store], max(0.0, now - (app_ts or cap_ts) / 1000) if pending else 0.0)
        retrying, attempts = self.retries()
        attempts_c = self._attempts()
        for target in sorted(set(self.targets) | set(retrying) | set(attempts)):
            retrying_g.add_metric([route, target], 1 if target in retrying else 0)
            attempts_c.add_metric([route, target], attempts.get(target, 0))
        return [lag_s, lag_b, lsn_g, ts_g, retrying_g, attempts_c]


def worker_metrics(route: str, source_stores: Iterable[str], target_stores: Iterable[str],
                   captured: Callable[[str], Mapping[str, Any]] = lambda _store: {},
                   retries: Callable[[], tuple[Mapping[str, str], Mapping[str, int]]] = lambda: ({}, {}),
                   retry_targets: Iterable[str] = (), registry: CollectorRegistry | None = None) -> WorkerMetrics:
    """The worker metrics of ``route`` in a new registry.

    ``captured(store)`` gives the capture's published position of a source store
    (``last_lsn``, ``last_commit_ts_ms``; ``{}`` when unknown), ``retries()`` the applier's
    (targets retrying now -> error, target -> failed attempts so far).
    """
    registry = registry or new_registry()
    rs, rt = ("route", "store"), ("route", "kind")
    metrics = WorkerMetrics(
        route, registry,
        Counter("platsync_batches", "Batches applied and acknowledged", ("route",), registry=registry),
        Counter("platsync_consumed_events", "Change events processed, per source store", rs, registry=registry),
        Counter("platsync_applied_writes", "Writes that changed a target store", rs, registry=registry),
        Counter("platsync_stale_writes", "Writes skipped by the version guard (already applied or older)", rs,
                registry=registry),
        Counter("platsync_conflicts", "Concurrent edits detected and recorded, per target store", rs,
                registry=registry),
        Counter("platsync_dead_letters", "Messages sent to the route's dead-letter topic, per error kind", rt,
                registry=registry),
        Histogram("platsync_apply_latency_seconds", "Source commit to applied, per batch and source store "
                  "(the batch's newest change)", rs, buckets=LATENCY_BUCKETS, registry=registry))
    sources, targets = tuple(source_stores), tuple(target_stores)
    metrics.batches.labels(route)
    for store in sources:
        metrics.consumed.labels(route, store)
    for store in targets:
        for metric in (metrics.applied, metrics.stale, metrics.conflicts):
            metric.labels(route, store)
    registry.register(_WorkerStateCollector(metrics, sources, captured, retries, retry_targets))  # type: ignore[arg-type]
    return metrics


# --- mode server -------------------------------------------------------------------------------

@dataclass
class ModeMetrics:
    """The metrics of one side's mode server."""

    side: str
    registry: CollectorRegistry
    mode: Gauge
    open_conflicts: Gauge
    peer_age: Gauge
    modes: tuple[str, ...]

    def record(self, mode: str, open_conflicts: int, peer_last_seen_ms: int | None, now_ms: int) -> None:
        """The current decision (called every decision round)."""
        for name in self.modes:
            self.mode.labels(self.side, name).set(1 if name == mode else 0)
        self.open_conflicts.labels(self.side).set(open_conflicts)
        self.peer_age.labels(self.side).set(float("nan") if peer_last_seen_ms is None
                                            else max(0.0, (now_ms - peer_last_seen_ms) / 1000))


def mode_metrics(side: str, modes: Iterable[str], registry: CollectorRegistry | None = None) -> ModeMetrics:
    """The mode-server metrics of ``side`` in a new registry."""
    registry = registry or new_registry()
    return ModeMetrics(
        side, registry,
        Gauge("platsync_mode", "1 for the side's current operating mode, 0 for the others", ("side", "mode"),
              registry=registry),
        Gauge("platsync_open_conflicts", "Open conflicts as the mode server last counted them", ("side",),
              registry=registry),
        Gauge("platsync_peer_heartbeat_age_seconds", "Seconds since the other side's newest heartbeat (NaN: none "
              "seen yet)", ("side",), registry=registry),
        tuple(modes))
