"""The metrics factories, the /metrics, /healthz and /readyz endpoints (real HTTP on a free port)."""

from __future__ import annotations

import asyncio
import json
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from infra.local.isolated import PORT_SETTINGS
from infra.local.process import free_port
from streams.apply.app import _add_apply_checks
from streams.apply.pipeline import ApplyPipeline
from streams.core.reports import BatchReport, StoreProgress, TargetCounts
from streams.runtime.metrics import (
    Health,
    MetricsPortError,
    MetricsServer,
    capture_metrics,
    mode_metrics,
    serve,
    worker_metrics,
)
from streams.runtime.settings import SettingsError, load_settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def worker() -> Iterator[tuple[MetricsServer, Health, Clock, dict]]:
    clock = Clock()
    captured = {"meta": {"last_lsn": 500, "last_commit_ts_ms": 1_700_000_010_000}}
    retrying: dict[str, str] = {}
    attempts: dict[str, int] = {}
    metrics = worker_metrics("local_to_remote", ["meta", "keycloak"], ["meta", "fructos_own"],
                             captured=lambda store: captured.get(store, {}),
                             retries=lambda: (retrying, attempts), retry_targets=["remote/meta", "progress"])
    health = Health(stall_after_s=5, clock=clock)
    health.beat("event_loop")
    server = MetricsServer(metrics.registry, health, "127.0.0.1", 0).start()
    state = {"metrics": metrics, "retrying": retrying, "attempts": attempts}
    try:
        yield server, health, clock, state
    finally:
        server.stop()


def test_each_factory_builds_its_own_registry_and_never_the_global_one() -> None:
    before = set(REGISTRY._names_to_collectors)
    a, b = capture_metrics("local", ["meta"]), capture_metrics("local", ["meta"])  # no duplicate error
    assert a.registry is not b.registry
    a.record_batch("meta", 3, 1, 42, 1_700_000_000_000)
    assert a.registry.get_sample_value("platsync_captured_events_total", {"side": "local", "store": "meta"}) == 3
    assert b.registry.get_sample_value("platsync_captured_events_total", {"side": "local", "store": "meta"}) == 0
    assert a.registry.get_sample_value("platsync_captured_commit_timestamp_seconds",
                                       {"side": "local", "store": "meta"}) == 1_700_000_000
    assert set(REGISTRY._names_to_collectors) == before


def test_worker_metrics_over_http_count_per_batch_and_compute_lag_when_scraped(worker) -> None:
    server, _health, _clock, state = worker
    metrics = state["metrics"]
    report = BatchReport(targets={"meta": TargetCounts(applied=4, stale=2, conflicts=1, rejected=1)},
                         dead_letter_kinds={"sink_rejected": 1},
                         progress={"meta": StoreProgress(last_lsn=300, last_commit_ts_ms=1_700_000_000_000,
                                                         events_seen=7)})
    metrics.record(report, now_s=1_700_000_000.25)
    metrics.record(BatchReport(targets={"meta": TargetCounts(applied=1)}), now_s=1_700_000_001)
    state["retrying"]["remote/meta"] = "down"
    state["attempts"]["remote/meta"] = 3
    status, text = get(server.port, "/metrics")
    assert status == 200
    got = samples(text)
    rs = (("route", "local_to_remote"), ("store", "meta"))
    assert got[("platsync_applied_writes_total", rs)] == 5
    assert got[("platsync_stale_writes_total", rs)] == 2
    assert got[("platsync_conflicts_total", rs)] == 1
    assert got[("platsync_consumed_events_total", rs)] == 7
    assert got[("platsync_batches_total", (("route", "local_to_remote"),))] == 2
    assert got[("platsync_dead_letters_total", (("kind", "sink_rejected"), ("route", "local_to_remote")))] == 1
    assert got[("platsync_applied_writes_total", (("route", "local_to_remote"), ("store", "fructos_own")))] == 0
    assert got[("platsync_apply_latency_seconds_count", rs)] == 1
    assert got[("platsync_apply_latency_seconds_bucket", (("le", "0.25"), *rs))] == 1
    assert got[("platsync_apply_latency_seconds_bucket", (("le", "0.1"), *rs))] == 0
    assert got[("platsync_lag_bytes", rs)] == 200  # captured 500, applied 300
    assert got[("platsync_lag_seconds", rs)] > 0
    assert got[("platsync_applied_lsn", rs)] == 300
    # No capture position known for keycloak: no lag claimed, the applied position is still shown.
    assert not any(name == "platsync_lag_seconds" and ("store", "keycloak") in labels for name, labels in got)
    rt = (("route", "local_to_remote"), ("target", "remote/meta"))
    assert got[("platsync_retrying", rt)] == 1 and got[("platsync_retry_attempts_total", rt)] == 3
    assert got[("platsync_retrying", (("route", "local_to_remote"), ("target", "progress")))] == 0
    assert ("process_resident_memory_bytes", ()) in got

    metrics.record(BatchReport(progress={"meta": StoreProgress(last_lsn=500, last_commit_ts_ms=1)}), now_s=2)
    caught_up = samples(get(server.port, "/metrics")[1])
    assert caught_up[("platsync_lag_bytes", rs)] == 0 and caught_up[("platsync_lag_seconds", rs)] == 0


def test_healthz_turns_503_with_a_reason_when_a_loop_stalls_or_the_process_fails(worker) -> None:
    server, health, clock, _state = worker
    assert get(server.port, "/healthz")[0] == 200
    status, body = get(server.port, "/readyz")
    assert status == 503 and json.loads(body)["reason"] == "starting"
    health.set_ready(True)
    assert get(server.port, "/readyz") == (200, json.dumps({"status": "ready"}))
    clock.now += 6  # beyond stall_after_s=5 without a beat
    status, body = get(server.port, "/healthz")
    assert status == 503 and "no progress for more than 5s: event_loop" in json.loads(body)["reason"]
    assert get(server.port, "/readyz")[0] == 503  # not live: not ready either
    health.beat("event_loop")
    assert get(server.port, "/healthz")[0] == 200
    health.add_check(lambda: "retrying unreachable remote/meta", readiness=True)
    assert get(server.port, "/healthz")[0] == 200
    status, body = get(server.port, "/readyz")
    assert status == 503 and json.loads(body)["reason"] == "retrying unreachable remote/meta"
    health.fail("a batch failed: UniqueViolation")
    status, body = get(server.port, "/healthz")
    assert status == 503 and json.loads(body) == {"status": "failing", "loops_age_s": {"event_loop": 0.0},
                                                  "reason": "a batch failed: UniqueViolation"}
    assert get(server.port, "/nope")[0] == 404


def test_a_raising_check_is_a_reason_not_a_crash(clock: Clock) -> None:
    health = Health(clock=clock)
    health.add_check(lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    assert health.liveness()[1]["reason"] == "health check failed: ZeroDivisionError"


def test_mode_gauge_is_one_for_the_current_mode_only() -> None:
    metrics = mode_metrics("remote", ("normal", "emergency", "recovery"))
    metrics.record("emergency", 2, 1000, 4000)
    value = metrics.registry.get_sample_value
    assert [value("platsync_mode", {"side": "remote", "mode": m}) for m in ("normal", "emergency", "recovery")] \
        == [0, 1, 0]
    assert value("platsync_open_conflicts", {"side": "remote"}) == 2
    assert value("platsync_peer_heartbeat_age_seconds", {"side": "remote"}) == 3


def test_ports_settings_and_a_taken_port(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    ports = [settings.metrics_port(p) for p in ("capture-local", "capture-remote", "worker-local_to_remote",
                                                "worker-remote_to_local", "mode-local", "mode-remote")]
    assert ports == list(range(19100, 19106))
    assert {f"metrics_{p.replace('-', '_')}_port" for p in ("capture-local", "mode-remote")} <= set(PORT_SETTINGS)
    with pytest.raises(SettingsError, match="no metrics port for process 'broker'"):
        settings.metrics_port("broker")
    port = free_port()
    settings = load_settings(env={}, data_dir=tmp_path, metrics_mode_local_port=port)
    first = serve(settings, "mode-local", mode_metrics("local", ("normal",)).registry, Health())
    try:
        with pytest.raises(MetricsPortError, match="set metrics_mode_local_port to a free port"):
            serve(settings, "mode-local", mode_metrics("local", ("normal",)).registry, Health())
    finally:
        assert first is not None
        first.stop()
    assert serve(load_settings(env={}, data_dir=tmp_path, metrics_enabled=False), "mode-local",
                 mode_metrics("local", ("normal",)).registry, Health()) is None


def test_worker_liveness_fails_after_a_failed_batch_and_readiness_while_retrying(clock: Clock) -> None:
    def apply(batch: object) -> None:
        raise RuntimeError("DETAIL: Key (name)=(secret) already exists")

    async def run(pipeline: ApplyPipeline) -> None:
        async def ack() -> None:
            return None
        await pipeline.submit([1], ack)
        with pytest.raises(RuntimeError):
            await pipeline.drain()

    health = Health(stall_after_s=5, clock=clock)
    health.set_ready(True)
    applier = types.SimpleNamespace(busy_since=None, retrying={})
    pipeline: ApplyPipeline = ApplyPipeline(apply, lambda _r: None)
    _add_apply_checks(health, applier, pipeline)  # type: ignore[arg-type]
    assert health.liveness()[0] and health.readiness()[0]
    applier.retrying["remote/meta"] = "connection refused"
    assert health.readiness() == (False, {"status": "not_ready", "reason": "retrying unreachable remote/meta"})
    applier.retrying.clear()
    asyncio.run(run(pipeline))
    pipeline.close()
    live, body = health.liveness()
    assert not live and body["reason"] == "a batch failed: RuntimeError"  # the class, never the text


def test_a_batch_applying_too_long_is_stuck_unless_it_waits_for_a_store() -> None:
    health = Health(stall_after_s=5)
    applier = types.SimpleNamespace(busy_since=time.monotonic() - 6, retrying={"remote/meta": "down"})
    _add_apply_checks(health, applier, types.SimpleNamespace(failure=None))  # type: ignore[arg-type]
    assert health.liveness()[0]  # waiting for the store, not stuck
    applier.retrying.clear()
    assert health.liveness()[1]["reason"] == "a batch has been applying for more than 5s"
