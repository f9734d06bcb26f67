"""The operator console as the e2e tests run it: a realm user of the login node, and the real console process
(``python -m streams.console.server``) on a free port of the session stack, stopped by SIGTERM afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from connectors.keycloak.admin import accounts_for
from infra.local.process import free_port
from infra.local.stack import settings_file
from streams.runtime.settings import Settings
from tests.support.helpers import REPO, eventually


@dataclass
class RunningConsole:
    """A console process: its base URL, its log and, once stopped, its exit code."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]
    port: int


@contextmanager
def realm_user(settings: Settings, prefix: str, last_name: str = "山田") -> Iterator[tuple[str, str]]:
    """A new enabled user ``(username, password)`` of the console's login realm; deleted on exit."""
    kc = accounts_for(settings, settings.console_login_node)
    username, password = f"{prefix}-{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}-9!"
    user_id = kc.create_user({"username": username, "enabled": True, "email": f"{username}@hospital.example",
                              "firstName": "花子", "lastName": last_name, "emailVerified": True,
                              "credentials": [{"type": "password", "value": password, "temporary": False}]})
    try:
        yield username, password
    finally:
        kc.delete_user(user_id)


def _answers(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"the console exited with {proc.returncode}:\n{log.read_text(encoding='utf-8', errors='replace')}")
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def running_console(settings: Settings, operators: list[str], log_dir: Path) -> Iterator[RunningConsole]:
    """The console of the stack with ``settings`` for ``operators``, answering ``/healthz``; on exit SIGTERM (then
    SIGKILL after 20 s) and its exit code in ``process.returncode``."""
    port = free_port(settings.host)
    log = log_dir / "console.log"
    args = [sys.executable, "-m", "streams.console.server", "--config", str(settings_file(settings)),
            "--data-dir", str(settings.data_dir), "--port", str(port)]
    for name in operators:
        args += ["--operator", name]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    url = f"http://{settings.host}:{port}"
    try:
        eventually(lambda: _answers(url, proc, log), "the console answering /healthz", 30)
        yield RunningConsole(url, log, proc, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        print(f"[console] log: {log}")
