"""One Keycloak account changed on both sides during a link cut (PRV_ATH_001 twice): both sides
end with the same account, decided by the documented rule, and the conflict is recorded once per
side with both versions and no credential material."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import can_login, platsync, users

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def synced(s: Settings) -> None:
    result = platsync(s, "wait-synced", "--timeout", "120", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


def conflicts(s: Settings, username: str) -> dict[str, list[tuple]]:
    found = {}
    for side in ("local", "remote"):
        with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
            found[side] = conn.execute(
                "SELECT conflict_id, winner, rule, local_row, remote_row FROM platsync_conflict "
                "WHERE store = 'keycloak' AND row_id = %s", (username,)).fetchall()
    return found


def staff_account(s: Settings, password: str) -> str:
    username = f"kc-{uuid.uuid4().hex[:8]}"
    with ReferenceApi(s, "local") as api:
        api.call("PRV_STF_003", {"staff_code": f"K-{username}", "display_name": "競合 医師", "role": "doctor",
                                 "username": username, "password": password, "email": f"{username}@example.jp"})
    synced(s)
    return username


def cut_and_change(s: Settings, username: str, local_change: dict, remote_change: dict) -> None:
    assert platsync(s, "link", "down").returncode == 0
    try:
        for side, change in (("local", local_change), ("remote", remote_change)):
            with ReferenceApi(s, side) as api:
                api.call("PRV_ATH_001", {"username": username, **change})
    finally:
        assert platsync(s, "link", "up").returncode == 0
    synced(s)


def test_password_changed_on_both_sides_converges_and_is_recorded(stack: Stack) -> None:
    s = stack.settings
    username = staff_account(s, "first-pw-1")
    cut_and_change(s, username, {"password": "local-pw-2"}, {"password": "remote-pw-2"})
    works = {pw: [can_login(s, side, username, pw) for side in ("local", "remote")]
             for pw in ("local-pw-2", "remote-pw-2", "first-pw-1")}
    assert sorted(works.values()) == [[False, False], [False, False], [True, True]], works
    assert users(s, "local")[username] == users(s, "remote")[username]
    found = conflicts(s, username)
    assert len(found["local"]) == len(found["remote"]) == 1, found
    (lc, rc) = found["local"][0], found["remote"][0]
    assert lc[0] == rc[0] and lc[1] == rc[1] and lc[2] == rc[2] == "greater state fingerprint"
    for row in (lc[3], lc[4]):
        assert row["password_set"] is True and "pw" not in json.dumps(row)
    listed = platsync(s, "conflicts", "list", "--json")
    assert listed.returncode == 0 and lc[0] in listed.stdout, listed.stdout + listed.stderr
    shown = platsync(s, "conflicts", "show", lc[0][:16])
    assert shown.returncode == 0 and username in shown.stdout and "pw-2" not in shown.stdout, shown.stderr
    resolved = platsync(s, "conflicts", "resolve", lc[0][:16], "--note", "checked with the user")
    assert resolved.returncode == 0, resolved.stderr
    assert {r[0] for r in conflicts(s, username)["local"]} == {lc[0]}


def test_disable_beats_a_concurrent_password_change(stack: Stack) -> None:
    s = stack.settings
    username = staff_account(s, "first-pw-1")
    cut_and_change(s, username, {"password": "local-pw-2"}, {"enabled": False})
    for side in ("local", "remote"):
        assert users(s, side)[username][0]["enabled"] is False
        assert not can_login(s, side, username, "local-pw-2")
    found = conflicts(s, username)
    assert [r[2] for r in found["local"]] == [r[2] for r in found["remote"]] == ["disabled beats enabled"]
    assert found["local"][0][1] == found["remote"][0][1] == "remote"


def test_a_change_made_after_the_other_sides_change_arrived_is_no_conflict(stack: Stack) -> None:
    s = stack.settings
    username = staff_account(s, "first-pw-1")
    with ReferenceApi(s, "remote") as api:
        api.call("PRV_ATH_001", {"username": username, "password": "remote-pw-2"})
    synced(s)
    with ReferenceApi(s, "local") as api:
        api.call("PRV_ATH_001", {"username": username, "password": "local-pw-3"})
    synced(s)
    assert can_login(s, "remote", username, "local-pw-3") and can_login(s, "local", username, "local-pw-3")
    assert conflicts(s, username) == {"local": [], "remote": []}
