"""Both sides' mode servers as real processes against the real broker (and real PostgreSQL for the
default hooks): normal, a lost peer, recovery, an operator override, a lost broker, clean stops."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from infra.local.broker import Broker
from infra.local.process import free_port, pid_alive, read_pid, start_process, stop_process, wait_until
from infra.local.stack import write_settings_file
from streams.apply.mode_state import read_mode, state_path
from streams.cli import mode as mode_cli
from streams.core.modes import heartbeat_topic
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from tests.support.mode_hooks import CATCHING_UP, OPEN_CONFLICTS, set_hooks
from tests.support.stack import make_data_dir, remove_data_dir

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PEER_TIMEOUT_S = 3.0
RECOVERY_MIN_S = 1.0
HOOKS_S = 2.0  # the mode server evaluates its hooks every 2 s
Status = tuple[str | None, dict[str, Any] | None]


@dataclasses.dataclass
class ModeEnv:
    """Two mode servers (local with test-controlled hooks, remote with the real ones) and a broker."""

    settings: Settings
    config: Path
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    all_pids: list[int] = dataclasses.field(default_factory=list)

    @property
    def broker(self) -> Broker:
        return Broker(self.settings.host, self.settings.broker_port)

    def start_broker(self) -> None:
        start_process(self.settings.data_dir, self.broker.spec())
        wait_until(self.broker.ready, 30, "broker",
                   alive=lambda: read_pid(self.settings.data_dir, "broker") is not None)

    def start(self, side: str) -> None:
        hooks = ["--catching-up-hook", CATCHING_UP, "--conflicts-hook", OPEN_CONFLICTS] if side == "local" else []
        log = open(self.settings.data_dir / "logs" / f"mode-{side}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[side] = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "streams.apply.mode_server", "--side", side, "--config", str(self.config),
             "--data-dir", str(self.settings.data_dir), "--port", str(self.ports[side]),
             "--peer-timeout", str(PEER_TIMEOUT_S), "--recovery-min-s", str(RECOVERY_MIN_S), *hooks],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.all_pids.append(self.procs[side].pid)

    def status(self, side: str, path: str = "/status") -> Status:
        """``(X-Hybridmode, JSON body)``, or ``(None, None)`` if the server does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[side]}{path}", timeout=2) as response:
                assert response.status == 200
                body = response.read()
                return response.headers.get("X-Hybridmode"), json.loads(body) if path == "/status" else {}
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, None

    def wait_for(self, side: str, check: Callable[[dict[str, Any]], bool], timeout_s: float, what: str) -> Status:
        """Poll ``side``'s /status until ``check(body)`` holds; fail with the last answer and log tail."""
        deadline = time.monotonic() + timeout_s
        header, body = None, None
        while time.monotonic() < deadline:
            header, body = self.status(side)
            if body is not None and check(body):
                return header, body
            time.sleep(0.1)
        log = (self.settings.data_dir / "logs" / f"mode-{side}.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"{side}: {what} not reached in {timeout_s:g}s; last: {header} {body}\n--- log ---\n{log}")

    def wait_mode(self, side: str, mode: str, timeout_s: float, words: str = "") -> dict[str, Any]:
        header, body = self.wait_for(side, lambda b: b["mode"] == mode and words in b["reason"], timeout_s,
                                     f"mode {mode} ({words!r})")
        assert header == mode and body is not None
        return body

    def alive(self, side: str) -> bool:
        return self.procs[side].poll() is None


@pytest.fixture(scope="module")
def env(pg_settings: Settings) -> Iterator[ModeEnv]:
    """PostgreSQL of the session, a broker and both mode servers in a data dir of their own."""
    data_dir = make_data_dir("platsync-mode-")
    (data_dir / "logs").mkdir()
    settings = dataclasses.replace(pg_settings, data_dir=data_dir, broker_port=free_port())
    # The session's PostgreSQL: its roles' passwords were generated into its data dir (streams/ops/access_policy.py).
    shutil.copytree(pg_settings.data_dir / "secrets", data_dir / "secrets")
    config = write_settings_file(settings, data_dir / "mode-test.toml")
    running = ModeEnv(settings, config, {"local": free_port(), "remote": free_port()})
    set_hooks(data_dir)
    try:
        running.start_broker()
        for side in ("local", "remote"):
            running.start(side)
        yield running
    finally:
        for proc in running.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)
        stop_process(data_dir, "broker")
        leftovers = [pid for pid in running.all_pids if pid_alive(pid)]
        remove_data_dir(data_dir)
        assert leftovers == [], f"processes left running: {leftovers}"


def test_both_sides_start_normal_with_the_header(env: ModeEnv) -> None:
    for side in ("local", "remote"):
        env.wait_mode(side, "normal", 15, "side is reachable")
        # The peer's mode is what its last heartbeat said: a start-up "recovery" may still be
        # shown for one heartbeat after the peer itself turned normal.
        header, body = env.wait_for(side, lambda b: b["mode"] == "normal" and b["peer"]["mode"] == "normal",
                                    5, "peer seen normal")
        assert header == "normal" and body is not None
        assert body["side"] == side and body["since"] and body["peer_last_seen_ts_ms"] > 0
        assert body["peer"]["side"] != side and body["peer"]["mode"] == "normal"
        assert env.status(side, "/healthz")[0] == "normal"
    remote = env.wait_for("remote", lambda b: b["hooks_checked_ts_ms"] is not None, HOOKS_S + 5, "hooks checked")[1]
    assert remote is not None and remote["hook_errors"] == []
    assert remote is not None and remote["catching_up"] is False and remote["open_conflicts"] >= 0
    topics = AdminClient(client_config(env.settings)).list_topics(timeout=5).topics
    assert len(topics[heartbeat_topic(env.settings)].partitions) == 1
    assert read_mode(env.settings, "local")["running"] is True


def test_a_second_server_on_a_taken_port_exits_2_without_touching_the_running_one(env: ModeEnv) -> None:
    second = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "streams.apply.mode_server", "--side", "local", "--config", str(env.config),
         "--data-dir", str(env.settings.data_dir), "--port", str(env.ports["local"])],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert second.returncode == 2 and "cannot serve on" in second.stderr
    assert env.alive("local") and read_mode(env.settings, "local")["running"] is True


def test_a_lost_peer_is_an_emergency_then_recovery_then_normal(env: ModeEnv) -> None:
    set_hooks(env.settings.data_dir, catching_up=True)  # the outage's writes still have to cross
    remote = env.procs["remote"]
    remote.send_signal(signal.SIGSTOP)  # hung: connections stay open, heartbeats stop
    body = env.wait_mode("local", "emergency", PEER_TIMEOUT_S + 4, "no heartbeat from the remote side")
    assert env.status("local", "/healthz")[0] == "emergency"

    remote.kill()  # and now it crashes
    remote.wait(10)
    env.start("remote")
    body = env.wait_mode("local", "recovery", 20, "not yet applied")
    env.wait_mode("remote", "normal", 15)
    time.sleep(HOOKS_S + RECOVERY_MIN_S + 1)  # not a timing assertion: recovery must *hold* while catching up
    body = env.wait_mode("local", "recovery", 1, "not yet applied")

    set_hooks(env.settings.data_dir, catching_up=False)
    body = env.wait_mode("local", "normal", HOOKS_S + RECOVERY_MIN_S + 4, "recovery complete")
    doc = json.loads(state_path(env.settings, "local").read_text())
    assert [(h["from"], h["to"]) for h in doc["history"][-3:]] == [
        ("normal", "emergency"), ("emergency", "recovery"), ("recovery", "normal")]
    window = doc["emergencies"][-1]
    assert window["start_ts_ms"] < window["end_ts_ms"] <= body["since_ts_ms"]
    assert doc["last_emergency_end_ts_ms"] == window["end_ts_ms"]


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="platsync")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path)
    common.add_argument("--config", type=Path)
    mode_cli.register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_an_operator_override_shows_at_once_and_clear_returns_to_automatic(env: ModeEnv) -> None:
    where = ["--data-dir", str(env.settings.data_dir), "--config", str(env.config)]
    assert _cli("mode", "set", "emergency", "--side", "local", "--note", "switch drill", *where) == 0
    header, body = env.status("local")  # the command returned once the server applied it: no polling
    assert header == "emergency" and body is not None
    assert "set by operator at" in body["reason"] and "switch drill" in body["reason"]
    assert body["override"]["mode"] == "emergency"
    assert env.status("remote")[0] == "normal"
    assert read_mode(env.settings, "local")["mode"] == "emergency"

    assert _cli("mode", "set", "--clear", "--side", "local", *where) == 0
    header, body = env.status("local")
    assert header == "recovery" and body is not None and body["override"] is None  # a cleared emergency
    env.wait_mode("local", "normal", RECOVERY_MIN_S + 4)
    windows = json.loads(state_path(env.settings, "local").read_text())["emergencies"]
    assert "set by operator" in windows[-1]["reason"] and windows[-1]["end_ts_ms"] is not None


def test_a_lost_broker_is_an_emergency_naming_the_broker_and_nobody_dies(env: ModeEnv) -> None:
    stop_process(env.settings.data_dir, "broker")
    for side in ("local", "remote"):
        body = env.wait_mode(side, "emergency", PEER_TIMEOUT_S + 6, "cannot publish this side's heartbeat")
        assert f"broker at {env.settings.broker_bootstrap}" in body["reason"]
    time.sleep(PEER_TIMEOUT_S)  # not a timing assertion: both must survive a while without a broker
    for side in ("local", "remote"):
        assert env.alive(side), f"{side} mode server died without a broker"
        assert env.status(side)[0] == "emergency"

    env.start_broker()  # an empty broker (in-memory log): both must reconnect and find each other again
    env.wait_mode("local", "normal", 30)  # test-controlled hooks: nothing pending
    # The remote runs the real hooks on the session's stores, where other tests leave open conflicts.
    from streams.apply.conflicts import open_conflict_count

    if open_conflict_count(env.settings):
        env.wait_mode("remote", "recovery", 30, "open conflict")
    else:
        env.wait_mode("remote", "normal", 30)


def test_mode_servers_stop_cleanly_on_sigterm(env: ModeEnv) -> None:
    for proc in env.procs.values():
        proc.send_signal(signal.SIGTERM)
    for side, proc in env.procs.items():
        assert proc.wait(15) == 0, f"{side} mode server exit code"
        shown = read_mode(env.settings, side)
        assert shown["running"] is False and shown["stopped_ts_ms"] is not None
    assert not any(pid_alive(pid) for pid in env.all_pids)
    assert os.path.exists(state_path(env.settings, "local"))
