"""``kill -9`` of the broker or of a PostgreSQL instance while both sides write, then ``up``.

The broker keeps its log in memory, so its crash loses what it held: ``up`` notices (the
broker no longer holds the data dir's incarnation token) and re-captures both sides from the
stores before the engine resumes (``infra.local.recovery``). A PostgreSQL crash loses nothing
committed: the captures resume from their slots, the sinks retry.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
import sqlalchemy.exc

from connectors.reference_api.service import ReferenceApi
from infra.local.databases import postgres_instance
from infra.local.process import read_pid, wait_until
from infra.local.stack import Stack
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from streams.runtime.state_files import capture_state
from tests.support.helpers import can_login, platsync, platsync_command
from tests.support.snapshot import snapshot

pytestmark = pytest.mark.e2e


def write_until(settings: Settings, side: str, stop: threading.Event, acked: list[str],
                errors: list[BaseException], seed: int) -> None:
    """Register, update and approve documents on ``side``; record every acknowledged document id."""
    rng = random.Random(seed)
    api = ReferenceApi(settings, side)
    try:
        while not stop.is_set():
            try:
                tag = f"{side}-{rng.random():.6f}"
                docs = api.call("PRV_DOC_006", {"documents": [
                    {"patient_id": f"p-{tag}", "doc_type": "note", "title": f"{tag}-{i}", "media_type": "text/plain",
                     "content_text": f"{tag} body {i}", "signed_by": "dr"} for i in range(rng.randint(1, 4))]})
                ids = docs["written"]["meta"]["documents"]
                acked.extend(ids)
                if rng.random() < 0.5:
                    api.call("PRV_DOC_007", {"documents": [{"id": ids[0], "title": f"upd-{tag}", "signed_by": "x"}]})
                if rng.random() < 0.3:
                    api.call("PRV_DOC_009", {"documents": [{"id": ids[-1], "approved_by": "chief"}]})
            except (psycopg.OperationalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError):
                # This side's database is down: the call was not acknowledged.
                api.close()
                time.sleep(0.2)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        api.close()


def run_writers_and_kill(stack: Stack, victim: str) -> list[str]:
    """Write on both sides for a few seconds, ``kill -9`` ``victim`` in the middle; return acked ids."""
    s = stack.settings
    stop, acked, errors = threading.Event(), [], []
    threads = [threading.Thread(target=write_until, args=(s, side, stop, acked, errors, n))
               for n, side in enumerate(("local", "remote"))]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        pid = read_pid(s.data_dir, victim)
        assert pid is not None, f"{victim} is not running"
        os.kill(pid, signal.SIGKILL)
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert len(acked) > 20
    return acked


def assert_converged(stack: Stack, acked: list[str]) -> None:
    s = stack.settings
    result = platsync(s, "wait-synced", "--timeout", "180", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    snap = snapshot(s)
    for store, table in (("meta", "documents"), ("fructos_own", "signed_records")):
        local, remote = snap[("local", store, table)], snap[("remote", store, table)]
        assert set(local) == set(remote), f"{store}.{table}: ids differ: {len(set(local) ^ set(remote))}"
        differing = [i for i in local if local[i] != remote[i]]
        assert not differing, f"{store}.{table}: {len(differing)} rows differ, e.g. {differing[:3]}"
    missing = set(acked) - set(snap[("local", "meta", "documents")])
    assert not missing, f"{len(missing)} acknowledged documents lost"


@pytest.mark.embedded_broker
def test_broker_kill_9_mid_stream_is_recovered_by_recapture(stack: Stack) -> None:
    acked = run_writers_and_kill(stack, "broker")
    result = platsync(stack.settings, "up", "--detach", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restarted without its log" in result.stdout and "re-capture local/meta" in result.stdout, result.stdout
    assert_converged(stack, acked)


@pytest.mark.parametrize("victim", ["pg-remote", "pg-local"])
def test_postgres_kill_9_mid_stream_then_up_converges(stack: Stack, victim: str) -> None:
    acked = run_writers_and_kill(stack, victim)
    result = platsync(stack.settings, "up", "--detach", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_converged(stack, acked)


@pytest.mark.embedded_broker
def test_changes_the_broker_held_but_nobody_applied_are_recaptured(stack: Stack) -> None:
    """Deterministic loss: the worker is stopped, the capture published, then the broker dies."""
    s = stack.settings
    worker = read_pid(s.data_dir, "worker-local_to_remote")
    assert worker is not None
    os.kill(worker, signal.SIGTERM)
    wait_until(lambda: read_pid(s.data_dir, "worker-local_to_remote") is None, 60, "worker stopped")
    produced = {store: int(capture_state(s, "local", store).get("events_produced", 0))
                for store in ("meta", "keycloak")}
    username, password = f"crash-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with ReferenceApi(s, "local") as api:
        docs = api.call("PRV_DOC_006", {"documents": [
            {"patient_id": "p-crash", "doc_type": "note", "title": f"held-{i}", "media_type": "text/plain",
             "content_text": f"held {i}", "signed_by": "dr"} for i in range(3)]})["written"]["meta"]["documents"]
        api.call("PRV_STF_003", {"staff_code": f"C-{username}", "display_name": "救急 医師", "role": "doctor",
                                 "username": username, "password": password, "email": f"{username}@example.jp"})
    wait_until(lambda: all(int(capture_state(s, "local", st).get("events_produced", 0)) > n
                           for st, n in produced.items()), 60, "the capture published to the broker")
    broker = read_pid(s.data_dir, "broker")
    assert broker is not None
    os.kill(broker, signal.SIGKILL)
    result = platsync(s, "up", "--detach", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "re-capture local/meta" in result.stdout, result.stdout
    synced = platsync(s, "wait-synced", "--timeout", "180", timeout=240)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:
        titles = {r[0] for r in conn.execute("SELECT title FROM documents WHERE id = ANY(%s)", (docs,))}
    assert titles == {"held-0", "held-1", "held-2"}
    assert can_login(s, "remote", username, password)


@pytest.mark.embedded_broker
def test_broker_lost_during_a_cut_recaptures_the_cloud_now_and_the_hospital_at_link_up(stack: Stack) -> None:
    s = stack.settings
    assert platsync(s, "link", "down").returncode == 0
    try:
        made = {}
        for side in ("local", "remote"):
            with ReferenceApi(s, side) as api:
                made[side] = api.call("PRV_DOC_006", {"patient_id": "p-double", "doc_type": "note",
                                                      "title": f"double fault {side}", "media_type": "text/plain",
                                                      "content_text": side, "signed_by": "dr"})[
                    "written"]["meta"]["documents"][0]
        broker = read_pid(s.data_dir, "broker")
        assert broker is not None
        os.kill(broker, signal.SIGKILL)
        result = platsync(s, "up", "--detach", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "re-capture remote/meta" in result.stdout and "re-captured at 'platsync link up'" in result.stdout
    finally:
        restored = platsync(s, "link", "up", timeout=300)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "re-capture local/meta" in restored.stdout, restored.stdout
    synced = platsync(s, "wait-synced", "--timeout", "180", timeout=240)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    for side in ("local", "remote"):
        with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
            titles = {r[0] for r in conn.execute("SELECT title FROM documents WHERE id = ANY(%s)",
                                                 (list(made.values()),))}
        assert titles == {"double fault local", "double fault remote"}, (side, titles)


def test_up_starts_again_a_capture_that_exits_while_up_waits_for_it(stack: Stack) -> None:
    """The capture that ran before ``up`` may exit while ``up`` waits for its slots: after a crash of its
    database its engine gives up and asks its supervisor for a restart, and ``up`` is that supervisor.

    Made deterministic: the capture is frozen (alive, not streaming), its walsenders are ended, and it is
    killed once ``up`` is waiting for it.
    """
    s = stack.settings
    capture = read_pid(s.data_dir, "capture-remote")
    assert capture is not None
    os.kill(capture, signal.SIGSTOP)
    try:
        with psycopg.connect(postgres_instance(s, "remote").conninfo(), autocommit=True) as conn:
            ended = conn.execute("SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots "
                                 "WHERE active_pid IS NOT NULL").fetchone()
        assert ended and ended[0] >= 1
        up = subprocess.Popen(**platsync_command(s, "up", "--detach"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        assert up.stdout is not None
        seen = []
        for line in up.stdout:  # 'up' waits for the local capture first, then for this one
            seen.append(line)
            if "capture local" in line:
                break
        os.kill(capture, signal.SIGKILL)
        rest, _ = up.communicate(timeout=300)
        output = "".join(seen) + rest
    finally:
        if read_pid(s.data_dir, "capture-remote") == capture:
            os.kill(capture, signal.SIGKILL)
    assert up.returncode == 0, output
    assert "capture remote exited while 'up' waited for it" in output, output
    assert "capture remote streaming" in output, output
    new = read_pid(s.data_dir, "capture-remote")
    assert new is not None and new != capture
    synced = platsync(s, "wait-synced", "--timeout", "180", timeout=240)
    assert synced.returncode == 0, synced.stdout + synced.stderr
