"""``platsync dlq list|show|retry`` on the real stack: a change a target store refuses is dead-lettered,
shown without its values, re-driven after the store is fixed, and a repeated retry changes nothing."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from tests.support.helpers import platsync

pytestmark = pytest.mark.e2e


def _remote_staff(stack: Stack, staff_id: str) -> tuple | None:
    with psycopg.connect(libpq_dsn(stack.settings, "remote", "meta")) as conn:
        return conn.execute("SELECT display_name, version FROM staff WHERE id = %s", (staff_id,)).fetchone()


def _letters(stack: Stack, *extra: str) -> list[dict]:
    listed = platsync(stack.settings, "dlq", "list", "--json", "--route", "local_to_remote", *extra)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_refused_change_is_listed_shown_redacted_and_re_driven_after_the_fix(stack: Stack) -> None:
    s = stack.settings
    tag = uuid.uuid4().hex[:8]
    name = f"秘匿患者名-{tag}"  # stands for patient/staff data that must not be printed by default
    role = f"blocked-{tag}"
    constraint = f"no_blocked_{tag}"
    with psycopg.connect(libpq_dsn(s, "remote", "meta"), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE staff ADD CONSTRAINT {constraint} CHECK (role <> '{role}')")
    try:
        with ReferenceApi(s, "local") as api:
            staff_id = api.call("PRV_STF_001", {"staff_code": f"dlq-{tag}", "display_name": name,
                                                "role": role})["written"]["meta"]["staff"][0]
        assert wait_synced(s, 90) == []
        assert _remote_staff(stack, staff_id) is None
        mine = [d for d in _letters(stack, "--kind", "sink_rejected") if d["key"] == f"staff:{staff_id}"]
        assert len(mine) == 1, mine
        letter = mine[0]
        assert letter["status"] == "pending" and constraint in letter["error"]
        assert name not in json.dumps(letter, ensure_ascii=False)
        assert "Failing row contains (…)" in letter["error"]

        shown = platsync(s, "dlq", "show", letter["id"])
        assert shown.returncode == 0, shown.stderr
        assert name not in shown.stdout and "PRV_STF_001" in shown.stdout and staff_id in shown.stdout
        assert f"display_name: <str, {len(name)} chars>" in shown.stdout
        revealed = json.loads(platsync(s, "dlq", "show", letter["id"], "--json", "--reveal").stdout)
        assert revealed["original"]["row"]["display_name"] == name and name in revealed["error"]
        assert platsync(s, "dlq", "show", "local_to_remote:0:999999999").returncode == 3

        dry = platsync(s, "dlq", "retry", letter["id"], "--dry-run")
        assert dry.returncode == 0 and "would re-drive" in dry.stdout
        assert _remote_staff(stack, staff_id) is None
    finally:
        with psycopg.connect(libpq_dsn(s, "remote", "meta"), autocommit=True) as conn:  # the operator's fix
            conn.execute(f"ALTER TABLE staff DROP CONSTRAINT IF EXISTS {constraint}")

    retried = platsync(s, "dlq", "retry", letter["id"])
    assert retried.returncode == 0, retried.stderr
    assert "1 dead letter(s) re-driven" in retried.stdout
    assert wait_synced(s, 90) == []
    assert _remote_staff(stack, staff_id) == (name, 1)
    after = next(d for d in _letters(stack) if d["id"] == letter["id"])
    assert after["status"] == "retried" and after["retried"]["to"].startswith(s.topic("local", "meta"))
    assert not [d for d in _letters(stack, "--status", "pending") if d["key"] == f"staff:{staff_id}"]

    twice = platsync(s, "dlq", "retry", letter["id"])
    assert twice.returncode == 0 and "already retried" in twice.stdout and "0 dead letter(s)" in twice.stdout
    again = platsync(s, "dlq", "retry", letter["id"], "--again")
    assert again.returncode == 0 and "1 dead letter(s) re-driven" in again.stdout
    assert wait_synced(s, 90) == []
    assert _remote_staff(stack, staff_id) == (name, 1)  # the repeated apply is idempotent
    assert not [d for d in _letters(stack) if d["key"] == f"staff:{staff_id}" and d["id"] != letter["id"]]


def test_retry_refuses_unknown_ids_and_needs_a_selection(stack: Stack) -> None:
    s = stack.settings
    unknown = platsync(s, "dlq", "retry", "remote_to_local:0:987654321")
    assert unknown.returncode == 3 and "no dead letter(s) remote_to_local:0:987654321" in unknown.stderr
    nothing = platsync(s, "dlq", "retry")
    assert nothing.returncode == 2 and "--all" in nothing.stderr
    bad_time = platsync(s, "dlq", "list", "--since", "2026-11-22T09:00:00")
    assert bad_time.returncode == 1 and "needs a UTC offset" in bad_time.stderr
