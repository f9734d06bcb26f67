"""Keycloak sync under trouble: Keycloak down, engine stopped during a change, replay, bad config."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import uuid

import pytest

from connectors.keycloak.admin import KeycloakConfigError
from connectors.reference_api.service import ReferenceApi
from infra.local.process import read_pid, stop_pid
from infra.local.stack import Stack
from streams.apply.app import build_applier
from streams.apply.barrier import wait_synced
from streams.cli.status import collect_status
from streams.runtime.settings import Settings
from tests.support.helpers import can_login, platsync, users

pytestmark = pytest.mark.e2e


def staff(username: str, password: str) -> dict[str, str]:
    return {"staff_code": f"R-{username}", "display_name": "耐障害 太郎", "role": "doctor", "username": username,
            "password": password, "email": f"{username}@example.jp"}


def stop(s: Settings, name: str) -> None:
    pid = read_pid(s.data_dir, name)
    assert pid is not None, name
    stop_pid(pid, timeout_s=30, sig=signal.SIGTERM)
    (s.data_dir / "run" / f"{name}.pid").unlink(missing_ok=True)


def test_target_keycloak_down_retries_visibly_and_loses_nothing(stack: Stack) -> None:
    s = stack.settings
    username, password = f"down-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4()}"
    stop(s, "keycloak-remote")
    try:
        with ReferenceApi(s, "local") as api:
            api.call("PRV_STF_003", staff(username, password))
        deadline, retrying = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not retrying:
            retrying = collect_status(s)["routes"]["local_to_remote"]["retrying"]
            time.sleep(0.5)
        assert "remote/keycloak" in retrying, retrying
        status = json.loads(platsync(s, "status", "--json").stdout)
        assert any("remote/keycloak unavailable, retrying" in e for e in status["errors"])
        assert wait_synced(s, 3) != []  # blocked, not skipped
    finally:
        stack.up(say=lambda m: None)
    assert wait_synced(s, 90) == []
    assert can_login(s, "remote", username, password)
    assert collect_status(s)["routes"]["local_to_remote"]["retrying"] == {}


def test_change_made_while_the_engine_is_stopped_is_synced_after_restart(stack: Stack) -> None:
    s = stack.settings
    username, first, second = f"off-{uuid.uuid4().hex[:6]}", f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    with ReferenceApi(s, "remote") as api:
        api.call("PRV_STF_003", staff(username, first))
    assert wait_synced(s, 90) == []
    for name in ("capture-remote", "worker-remote_to_local"):
        stop(s, name)
    with ReferenceApi(s, "remote") as api:
        api.call("PRV_ATH_001", {"username": username, "password": second})
    assert can_login(s, "local", username, first)  # not synced while stopped
    stack.up(say=lambda m: None)
    assert wait_synced(s, 90) == []
    assert can_login(s, "local", username, second) and not can_login(s, "local", username, first)


def test_replay_keeps_keycloak_accounts_unchanged(stack: Stack) -> None:
    s = stack.settings
    with ReferenceApi(s, "local") as api:
        api.call("PRV_STF_003", staff(f"rp-{uuid.uuid4().hex[:6]}", "replay-pw"))
    assert wait_synced(s, 90) == []
    before = {side: users(s, side) for side in ("local", "remote")}
    for route in ("local_to_remote", "remote_to_local"):
        result = platsync(s, "replay", route, "--to-beginning")
        assert result.returncode == 0, result.stderr
    assert wait_synced(s, 120) == []
    assert {side: users(s, side) for side in ("local", "remote")} == before


@pytest.mark.parametrize(("change", "message"), [
    ({"keycloak_realm": "no-such-realm"}, "no-such-realm"),
    ({"keycloak_admin_password": "wrong"}, "admin"),
])
def test_bad_keycloak_configuration_fails_at_start_clearly(stack: Stack, change: dict[str, str],
                                                           message: str) -> None:
    bad = dataclasses.replace(stack.settings, **change)
    with pytest.raises(KeycloakConfigError, match=message):
        build_applier(bad, "local_to_remote")
