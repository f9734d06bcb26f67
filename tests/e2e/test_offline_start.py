"""A hospital starts, restarts and stops its processes while the link to the cloud is down (issue 13).

The premise of the product: the hospital keeps working through a network cut, including a crash or
a reboot of its server during the cut. ``platsync up`` must bring the whole side up (stores, API,
capture holding changes in its replication slots, worker waiting for the broker, mode server
reporting ``emergency``) instead of waiting for a broker it cannot reach; a process without a broker
must stop in seconds; and the cut must not turn into a reconnect storm or a flood of log lines.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.process import log_path, pid_alive, read_pid, stop_pid
from infra.local.stack import Stack
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from streams.runtime.state_files import worker_state
from tests.support.helpers import hybridmode, platsync, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]

#: The hospital's processes on the embedded stack (the broker and the link stand in for the cloud).
HOSPITAL = ("pg-local", "keycloak-local", "capture-local", "worker-remote_to_local", "mode-local")


@pytest.fixture()
def cut(stack: Stack) -> Iterator[Settings]:
    """The link cut for the test; restored (and the stack completed) whatever happens."""
    s = stack.settings
    try:  # a cut that failed half-way is restored too: the tests after this module need the link
        down = platsync(s, "link", "down", "--note", "offline start test")
        assert down.returncode == 0, down.stdout + down.stderr
        yield s
    finally:
        restored = platsync(s, "link", "up", timeout=300)
        assert restored.returncode == 0, restored.stdout + restored.stderr


def staff_on(s: Settings, side: str, staff_id: str) -> tuple | None:
    with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
        return conn.execute("SELECT id, staff_code, display_name, version FROM staff WHERE id = %s",
                            (staff_id,)).fetchone()


def register_staff(s: Settings, code: str) -> str:
    with ReferenceApi(s, "local") as api:
        return api.call("PRV_STF_001", {"staff_code": code, "display_name": "職員", "role": "nurse"})[
            "written"]["meta"]["staff"][0]


def kill_9(s: Settings, name: str) -> int:
    pid = read_pid(s.data_dir, name)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    return pid


def up_detached(s: Settings) -> str:
    """``platsync up --detach`` as an operator runs it; its output (fails the test if it fails)."""
    result = platsync(s, "up", "--detach", timeout=400)
    assert result.returncode == 0, f"up failed while the link is down:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def assert_hospital_fully_up(s: Settings, output: str) -> None:
    for name in HOSPITAL:
        assert read_pid(s.data_dir, name) is not None, f"{name} is not running after up:\n{output}"
    assert "broker is out of reach (link down)" in output, output
    assert wait_for(lambda: hybridmode(s, "local") == "emergency", s.mode_peer_timeout_s + 20), \
        hybridmode(s, "local")
    with ReferenceApi(s, "local") as api:  # its API works: a call during the cut is accepted
        assert api.call("PRV_STF_001", {"staff_code": "S-offline-after-up", "display_name": "職員",
                                        "role": "nurse"})["written"]["meta"]["staff"]


def test_up_right_after_a_postgres_crash_during_a_cut_starts_the_hospital(stack: Stack, cut: Settings) -> None:
    s = cut
    staff_id = register_staff(s, "S-crash-in-cut")
    kill_9(s, "pg-local")  # no pause: 'up' meets the crashed postmaster's lock file
    output = up_detached(s)
    assert_hospital_fully_up(s, output)
    worker = read_pid(s.data_dir, "worker-remote_to_local")
    assert staff_on(s, "remote", staff_id) is None  # nothing crossed the cut
    assert platsync(s, "link", "up", timeout=300).returncode == 0
    synced = platsync(s, "wait-synced", "--timeout", "120", timeout=180)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert staff_on(s, "remote", staff_id) == staff_on(s, "local", staff_id) is not None
    # The worker started during the cut waited for the broker instead of giving up.
    assert read_pid(s.data_dir, "worker-remote_to_local") == worker


def test_a_hospital_server_rebooted_during_a_cut_starts_fully(stack: Stack, cut: Settings) -> None:
    s = cut
    staff_id = register_staff(s, "S-reboot-in-cut")
    for name in HOSPITAL:
        kill_9(s, name)
    output = up_detached(s)
    assert_hospital_fully_up(s, output)
    worker = read_pid(s.data_dir, "worker-remote_to_local")
    time.sleep(5)  # well past Faust's bootstrap attempt, which gave up at once before issue 13
    assert read_pid(s.data_dir, "worker-remote_to_local") == worker, "the worker gave up during the cut"
    state = worker_state(s, "remote_to_local")
    assert state.get("waiting_for", "").startswith("broker"), state  # what 'status' shows meanwhile
    assert platsync(s, "link", "up", timeout=300).returncode == 0
    synced = platsync(s, "wait-synced", "--timeout", "120", timeout=180)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert staff_on(s, "remote", staff_id) == staff_on(s, "local", staff_id) is not None
    assert read_pid(s.data_dir, "worker-remote_to_local") == worker, state


def test_a_worker_without_a_broker_stops_by_itself(stack: Stack, cut: Settings) -> None:
    s = cut
    pid = read_pid(s.data_dir, "worker-remote_to_local")
    assert pid is not None
    log = log_path(s.data_dir, "worker-remote_to_local")
    start = log.stat().st_size
    time.sleep(3)  # its consumer is now retrying the broker it lost
    # Before issue 13 it never exited by itself (aiokafka's cancelled fetch crashed the consumer thread):
    # 'up' and 'down' waited 60 s, then killed it. The grace period here is a bound, not a speed.
    assert stop_pid(pid, timeout_s=30.0), "the worker had to be killed: it did not stop without its broker"
    assert not pid_alive(pid)
    tail = log.read_bytes()[start:].decode(errors="replace")
    assert "Exception in thread" not in tail, tail[-3000:]
    (s.data_dir / "run" / "worker-remote_to_local.pid").unlink(missing_ok=True)
    up_detached(s)


def test_a_cut_is_not_a_reconnect_storm(stack: Stack, cut: Settings) -> None:
    s = cut
    names = ("capture-local", "worker-remote_to_local", "mode-local")
    with ReferenceApi(s, "local") as api:  # a change waiting to cross: the capture retries its batch
        api.call("PRV_STF_001", {"staff_code": "S-storm", "display_name": "職員", "role": "nurse"})
    time.sleep(3)  # past the cut's first log lines
    sizes = {n: log_path(s.data_dir, n).stat().st_size for n in names}
    before = json.loads(platsync(s, "link", "status", "--json").stdout)
    window_s = 30.0
    time.sleep(window_s)
    after = json.loads(platsync(s, "link", "status", "--json").stdout)
    attempts = (after["refused"] - before["refused"]) / window_s
    grown = {n: log_path(s.data_dir, n).stat().st_size - sizes[n] for n in names}
    # Before issue 13: ~120 refused connections a second (57,000 in 8 minutes) and ~20 kB of log a
    # second. The reconnect back-off makes a few attempts per client and second at most; the logs
    # get the cut once and then a summary a minute.
    assert attempts < 30, f"{attempts:.1f} connection attempts/s during the cut"
    assert sum(grown.values()) < 20_000, f"log growth in {window_s:.0f}s of cut: {grown}"
