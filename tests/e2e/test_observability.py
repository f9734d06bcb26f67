"""Observability on the real stack: every long-running process's /metrics move by exactly what a
real API call did, /healthz and /readyz answer, and no log file holds PHI or a secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.reference_api.service import ReferenceApi
from infra.local.process import free_port
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.core.model import ROUTES, SIDES
from streams.core.modes import MODES
from streams.runtime.connections import keycloak_db_dsn, libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import eventually, platsync

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]

PROCESSES = [f"capture-{side}" for side in SIDES] + [f"worker-{route}" for route in ROUTES] + [
    f"mode-{side}" for side in SIDES]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(settings: Settings, process: str, path: str) -> tuple[int, str]:
    url = f"http://{settings.host}:{settings.metrics_port(process)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL we built
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(settings: Settings, process: str) -> Samples:
    status, text = get(settings, process, "/metrics")
    assert status == 200, text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def synced(settings: Settings) -> None:
    assert wait_synced(settings, 90) == []


def test_every_process_serves_health_and_metrics_that_move_with_a_real_call(stack: Stack) -> None:
    s = stack.settings
    for process in PROCESSES:
        eventually(lambda process=process: get(s, process, "/readyz")[0] == 200, f"{process} ready", 30)
        status, body = get(s, process, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok", (process, body)
    synced(s)  # nothing in flight: the deltas below are this test's alone
    before = {p: scrape(s, p) for p in ("capture-local", "capture-remote", "worker-local_to_remote")}
    with ReferenceApi(s, "local") as api:
        api.call("PRV_STF_001", {"staff_code": f"obs-{uuid.uuid4().hex[:8]}", "display_name": "観測",
                                 "role": "clerk"})
    synced(s)  # one probe per source store, then every probe applied
    route = "local_to_remote"
    cap = scrape(s, "capture-local")
    meta = {"side": "local", "store": "meta"}
    # One staff row and one sync probe captured from local/meta.
    assert value(cap, "platsync_captured_events_total", **meta) - value(
        before["capture-local"], "platsync_captured_events_total", **meta) == 2
    assert value(cap, "platsync_capture_batches_total", **meta) > value(
        before["capture-local"], "platsync_capture_batches_total", **meta)
    assert value(cap, "platsync_captured_lsn", **meta) > 0
    rs = {"route": route, "store": "meta"}

    def worker_caught_up() -> bool:
        worker = scrape(s, f"worker-{route}")
        return value(worker, "platsync_lag_bytes", **rs) == 0 and value(
            worker, "platsync_applied_lsn", **rs) >= value(cap, "platsync_captured_lsn", **meta)

    eventually(worker_caught_up, "the worker's metrics to catch up", 15)
    worker, was = scrape(s, f"worker-{route}"), before[f"worker-{route}"]
    assert value(worker, "platsync_applied_writes_total", **rs) - value(was, "platsync_applied_writes_total", **rs) == 1
    assert value(worker, "platsync_stale_writes_total", **rs) == value(was, "platsync_stale_writes_total", **rs)
    assert value(worker, "platsync_consumed_events_total", **rs) - value(
        was, "platsync_consumed_events_total", **rs) == 2
    fructos = {"route": route, "store": "fructos_own"}
    assert value(worker, "platsync_applied_writes_total", **fructos) == value(
        was, "platsync_applied_writes_total", **fructos)
    assert value(worker, "platsync_apply_latency_seconds_count", **rs) > value(
        was, "platsync_apply_latency_seconds_count", **rs)
    assert ("platsync_lag_seconds", frozenset(rs.items())) in worker
    assert value(worker, "platsync_lag_seconds", **rs) == 0
    assert value(worker, "platsync_retrying", route=route, target="remote/meta") == 0
    # The remote side applied the row: its capture drops the echo instead of sending it back.
    remote_meta = {"side": "remote", "store": "meta"}
    eventually(lambda: value(scrape(s, "capture-remote"), "platsync_echoes_dropped_total", **remote_meta)
               > value(before["capture-remote"], "platsync_echoes_dropped_total", **remote_meta),
               "the remote capture to drop the echo", 15)
    for side in SIDES:
        with urllib.request.urlopen(f"http://{s.host}:{s.mode_port(side)}/status", timeout=5) as response:  # noqa: S310
            current = json.loads(response.read())["mode"]
        mode = scrape(s, f"mode-{side}")
        assert {m: value(mode, "platsync_mode", side=side, mode=m) for m in MODES} == {
            m: (1.0 if m == current else 0.0) for m in MODES}


def _log_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.data_dir / "logs").rglob("*") if p.is_file()]


@pytest.mark.embedded_broker  # expects the link proxy's log among the processes' logs
def test_no_log_holds_phi_or_a_secret(stack: Stack) -> None:
    s = stack.settings
    tag = uuid.uuid4().hex[:10]
    phi = f"PHI{tag}"  # every PHI value below contains it
    role = f"blocked-{tag}"
    constraint = f"obs_blocked_{tag}"
    letters_before = value(scrape(s, "worker-local_to_remote"), "platsync_dead_letters_total",
                           route="local_to_remote", kind="sink_rejected")
    with psycopg.connect(libpq_dsn(s, "remote", "meta"), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE staff ADD CONSTRAINT {constraint} CHECK (role <> '{role}')")
    try:
        with ReferenceApi(s, "local") as api:
            refused = api.call("PRV_STF_001", {"staff_code": f"obs-{tag}", "display_name": f"{phi} staff name",
                                               "role": role})["written"]["meta"]["staff"][0]
            api.call("PRV_STF_003", {"staff_code": f"obs3-{tag}", "display_name": f"{phi} credentialed",
                                     "role": "doctor", "username": f"obs-{tag}", "password": f"{phi}-password",
                                     "email": f"{phi.lower()}@example.jp"})
            api.call("PRV_PAT_001", {"family_name": f"{phi}family", "given_name": f"{phi}given",
                                     "birth_date": "1970-01-02", "sex": "F", "institution_code": "1310000001"})
            api.call("PRV_DOC_006", {"documents": [{"patient_id": f"p-{tag}", "doc_type": "note",
                                                    "title": f"{phi} title", "media_type": "text/plain",
                                                    "content_text": f"{phi} content", "signed_by": "dr"}]})
        synced(s)
    finally:
        with psycopg.connect(libpq_dsn(s, "remote", "meta"), autocommit=True) as conn:
            conn.execute(f"ALTER TABLE staff DROP CONSTRAINT IF EXISTS {constraint}")
    # The refused row really went the dead-letter way (and its error text quotes the row).
    eventually(lambda: value(scrape(s, "worker-local_to_remote"), "platsync_dead_letters_total",
                             route="local_to_remote", kind="sink_rejected") == letters_before + 1,
               "the refused row's dead letter", 15)
    # The operator's fix (the constraint is gone): re-drive the refused change, so that both sides
    # converge again (a later replay of the route must change nothing).
    listed = platsync(s, "dlq", "list", "--json", "--route", "local_to_remote", "--kind", "sink_rejected")
    letter = [d["id"] for d in json.loads(listed.stdout) if d["key"] == f"staff:{refused}"]
    assert len(letter) == 1, listed.stdout
    assert platsync(s, "dlq", "retry", letter[0]).returncode == 0
    synced(s)
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:
        assert conn.execute("SELECT count(*) FROM staff WHERE id = %s", (refused,)).fetchone() == (1,)
    with psycopg.connect(keycloak_db_dsn(s, "local")) as conn:
        rows = conn.execute("SELECT c.secret_data FROM credential c JOIN user_entity u ON u.id = c.user_id "
                            "WHERE u.username = %s", (f"obs-{tag}",)).fetchall()
    hashes = [json.loads(r[0])["value"] for r in rows]
    assert hashes, "the credentialed staff's Keycloak account was not created"
    keys = (s.data_dir / "secrets" / "credential.keys").read_text().strip()
    secrets = [s.pg_password, s.keycloak_admin_password, *hashes,
               *(entry.partition(":")[2] for entry in keys.split(","))]
    assert all(len(x) >= 8 for x in secrets) and s.pg_password.startswith("pw-")
    files = _log_files(s)
    names = {p.name for p in files}
    assert {f"{p}.log" for p in ("capture-local", "worker-local_to_remote", "mode-local", "link", "pg-remote")} <= names
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [(path.name, "PHI") for _ in range(text.count(phi) + text.count(phi.lower()))][:1]
        found += [(path.name, f"secret #{i}") for i, secret in enumerate(secrets) if secret in text]
    assert found == []
    # The rejection was logged, by what it was and where, without its values.
    worker_log = (s.data_dir / "logs" / "worker-local_to_remote.log").read_text(errors="replace")
    assert "dead letter on local_to_remote" in worker_log and "sink_rejected (CheckViolation)" in worker_log


def test_an_entry_point_writes_json_lines_with_log_format_json(tmp_path: Path) -> None:
    """The link proxy (no stack needed) started with PLATSYNC_LOG_FORMAT=json logs JSON lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATSYNC_")}
    env.update(PYTHONPATH=str(REPO), PLATSYNC_LOG_FORMAT="json", PLATSYNC_DATA_DIR=str(tmp_path),
               PLATSYNC_BROKER_PORT=str(free_port()), PLATSYNC_BROKER_LISTEN_PORT=str(free_port()))
    proc = subprocess.Popen([sys.executable, "-m", "infra.local.link"], stdout=subprocess.PIPE,  # noqa: S603
                            stderr=subprocess.STDOUT, cwd="/", env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    doc = json.loads(line)
    assert doc["process"] == "link" and doc["level"] == "INFO" and doc["logger"] == "platsync.link"
    assert "link proxy on" in doc["message"] and doc["time"].endswith("Z")
    bad = subprocess.run([sys.executable, "-m", "infra.local.link"], capture_output=True, text=True, cwd="/",
                         env={**env, "PLATSYNC_LOG_FORMAT": "xml"}, timeout=30)
    assert bad.returncode == 2 and "log_format 'xml': expected one of text, json" in bad.stdout + bad.stderr
