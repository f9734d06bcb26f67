"""Helpers shared by the end-to-end tests: the real CLI, Keycloak account views and logins, a side's
``X-Hybridmode`` and a bounded wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.keycloak.admin import KeycloakAuthError, login
from connectors.keycloak.admin import accounts_for as accounts
from streams.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def platsync_command(settings: Settings, *args: str) -> dict[str, Any]:
    """``subprocess`` arguments running the real CLI against a stack's data dir, from another directory."""
    return {"args": [sys.executable, "-m", "streams.cli.main", *args, "--data-dir", str(settings.data_dir)],
            "cwd": "/", "env": {**os.environ, "PYTHONPATH": str(REPO)}}


def platsync(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against a stack's data dir, from another directory."""
    return subprocess.run(**platsync_command(settings, *args), capture_output=True, text=True, timeout=timeout)


def can_login(s: Settings, side: str, username: str, password: str) -> bool:
    """True if ``username`` obtains a token with ``password`` on that side's Keycloak."""
    try:
        login(s.keycloak_url(side), s.keycloak_realm, username, password)
        return True
    except KeycloakAuthError:
        return False


def users(s: Settings, side: str) -> dict[str, Any]:
    """Every account of the realm (without volatile ids and timestamps) and its password credential count."""
    kc = accounts(s, side)
    result = {}
    for user in kc.list_users():
        creds = kc.password_credentials(user["id"])
        result[user["username"]] = ({k: v for k, v in user.items() if k not in ("id", "createdTimestamp")},
                                    len(creds))
    return result


def hybridmode(settings: Settings, side: str) -> str | None:
    """The ``X-Hybridmode`` a side's mode server answers now (None if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{settings.host}:{settings.mode_port(side)}/status", timeout=2) as r:
            return r.headers.get("X-Hybridmode")
    except OSError:
        return None


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` once ``timeout_s`` passed."""
    assert wait_for(check, timeout_s), f"timed out after {timeout_s:.0f} s waiting for {what}"


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False
