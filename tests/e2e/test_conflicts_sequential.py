"""Sequential changes on a healthy link are fast-forwards, never conflicts (docs/conflicts.md).

Issue 13, item 5: with the link up and a sync barrier between every step, a document registered
on the local side, approved on the remote side, then approved again on the local side was listed
as a conflict in the remote ``fructos_patient`` store. The remote APIs that write 患者管理FRUCtoS
(PRV_DOC_009, PRV_USR_001) copy the record they wrote to ``fructos_own``; the copy must be the
same state (same ``version`` *and* ``updated_at``), or the next change of the record, whose
before-image is the ``fructos_own`` state, does not match it. And since ``fructos_patient``
receives only some states of a record (not PRV_DOC_007 or PRV_DOC_008), a change there that does
not fast-forward proves no concurrent edit: conflicts are recorded where every state arrives.
The real running stack (captures, broker, workers, sinks); the last tests at sink level, as in
tests/e2e/test_conflicts.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.apply.conflicts import open_conflict_count
from streams.apply.mode_state import read_mode
from streams.core.model import DATABASE_STORES
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.e2e.test_conflicts import Sides, assert_one_conflict_each_side

pytestmark = pytest.mark.e2e


def synced(s: Settings) -> None:
    pending = wait_synced(s, timeout_s=90)
    assert pending == [], f"not synced: {pending}"


def row(s: Settings, side: str, store: str, table: str, row_id: str) -> dict[str, Any] | None:
    with psycopg.connect(libpq_dsn(s, side, store), row_factory=dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} WHERE id = %s", (row_id,)).fetchone()  # noqa: S608


def conflicts_about(s: Settings, row_ids: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every conflict (open or resolved) any side or store recorded about these rows."""
    found = []
    for side, stores in DATABASE_STORES.items():
        for store in stores:
            with psycopg.connect(libpq_dsn(s, side, store), row_factory=dict_row) as conn:
                found.extend((side, store, c) for c in conn.execute(
                    "SELECT conflict_id, table_name, row_id, winner, rule, status FROM platsync_conflict "
                    "WHERE row_id = ANY(%s)", (sorted(row_ids),)).fetchall())
    return found


def assert_record_converged(s: Settings, record_id: str, in_patient_store: bool = True) -> dict[str, Any]:
    """The signed record is the same state, every column, in both sides' fructos_own and the
    remote fructos_patient; return it."""
    own = {side: row(s, side, "fructos_own", "signed_records", record_id) for side in ("local", "remote")}
    assert own["local"] is not None and own["local"] == own["remote"]
    if in_patient_store:
        assert row(s, "remote", "fructos_patient", "signed_records", record_id) == own["remote"]
    return own["local"]


def assert_mode_can_be_normal(s: Settings, open_before: int) -> None:
    """No new open conflict; both sides normal, and without any open conflict in their reason when
    none is open at all (other tests of the session may leave some)."""
    open_now = open_conflict_count(s)
    assert open_now == open_before
    deadline = time.monotonic() + 15
    while True:
        modes = {side: read_mode(s, side) for side in ("local", "remote")}
        ok = all(m["mode"] == "normal" and m.get("open_conflicts", open_now) == open_now for m in modes.values())
        if open_now == 0:
            ok = ok and not any("open conflict" in str(m.get("reason", "")) for m in modes.values())
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ok, modes


def new_document(api: ReferenceApi, title: str) -> tuple[str, str]:
    written = api.call("PRV_DOC_006", {"documents": [
        {"patient_id": f"p-seq-{uuid.uuid4().hex[:8]}", "doc_type": "referral", "title": title,
         "media_type": "text/plain", "content_text": f"{title} 本文", "signed_by": "dr"}]})["written"]
    return written["meta"]["documents"][0], written["fructos_own"]["signed_records"][0]


def approve(api: ReferenceApi, doc_id: str, by: str) -> None:
    api.call("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": by}]})


def test_approvals_one_after_the_other_on_both_sides_are_not_a_conflict(stack: Stack) -> None:
    """The issue's sequence: PRV_DOC_006 local; PRV_DOC_009 remote; PRV_DOC_009 local."""
    s = stack.settings
    open_before = open_conflict_count(s)
    with ReferenceApi(s, "local") as local, ReferenceApi(s, "remote") as remote:
        doc_id, record_id = new_document(local, "承認順")
        synced(s)
        approve(remote, doc_id, "chief-remote")
        synced(s)
        after_remote = {store: row(s, "remote", store, "signed_records", record_id)
                        for store in ("fructos_own", "fructos_patient")}
        approve(local, doc_id, "chief-local")
        synced(s)
    assert conflicts_about(s, {doc_id, record_id}) == []
    # The remote approval wrote fructos_own and its copy in fructos_patient: the same state.
    assert after_remote["fructos_own"] is not None and after_remote["fructos_own"]["version"] == 2
    assert after_remote["fructos_patient"] == after_remote["fructos_own"]
    record = assert_record_converged(s, record_id)
    assert (record["version"], record["approved"]) == (3, True)
    meta = {side: row(s, side, "meta", "documents", doc_id) for side in ("local", "remote")}
    assert meta["local"] == meta["remote"]
    assert meta["local"] is not None and (meta["local"]["version"], meta["local"]["approved_by"]) == (3, "chief-local")
    assert_mode_can_be_normal(s, open_before)


def test_approvals_alternating_from_the_local_side_are_not_a_conflict(stack: Stack) -> None:
    """Local approval (routed into fructos_patient), remote approval (copied there), local again."""
    s = stack.settings
    open_before = open_conflict_count(s)
    with ReferenceApi(s, "local") as local, ReferenceApi(s, "remote") as remote:
        doc_id, record_id = new_document(local, "交互承認")
        synced(s)
        for api, by in ((local, "a"), (remote, "b"), (local, "c"), (remote, "d")):
            approve(api, doc_id, by)
            synced(s)
            assert_record_converged(s, record_id)
    assert conflicts_about(s, {doc_id, record_id}) == []
    record = assert_record_converged(s, record_id)
    assert record["version"] == 5
    assert_mode_can_be_normal(s, open_before)


def test_plat_users_copied_to_the_patient_store_are_the_same_state(stack: Stack) -> None:
    """PRV_USR_001 on either side: the record in remote fructos_patient is the fructos_own state."""
    s = stack.settings
    open_before = open_conflict_count(s)
    records = []
    for side in ("remote", "local"):
        tag = uuid.uuid4().hex[:8]
        with ReferenceApi(s, side) as api:
            written = api.call("PRV_USR_001", {"login_id": f"seq-{side}-{tag}", "display_name": "順番 太郎",
                                               "institution_code": "1310000001"})["written"]
        synced(s)
        user_id, record_id = written["meta"]["plat_users"][0], written["fructos_own"]["signed_records"][0]
        users = {side: row(s, side, "meta", "plat_users", user_id) for side in ("local", "remote")}
        assert users["local"] is not None and users["local"] == users["remote"]
        records.append(record_id)
        assert_record_converged(s, record_id)
    assert conflicts_about(s, set(records)) == []
    assert_mode_can_be_normal(s, open_before)


def test_an_update_between_two_approvals_is_not_a_conflict(stack: Stack) -> None:
    """PRV_DOC_007 does not reach fructos_patient: the approval after it skips a state there."""
    s = stack.settings
    open_before = open_conflict_count(s)
    with ReferenceApi(s, "local") as local, ReferenceApi(s, "remote") as remote:
        doc_id, record_id = new_document(local, "承認後更新")
        synced(s)
        approve(remote, doc_id, "chief-remote")
        synced(s)
        local.call("PRV_DOC_007", {"documents": [{"id": doc_id, "title": "改訂", "content_text": "改訂本文",
                                                  "signed_by": "dr"}]})
        synced(s)
        approve(local, doc_id, "chief-local")
        synced(s)
    assert conflicts_about(s, {doc_id, record_id}) == []
    record = assert_record_converged(s, record_id)
    assert (record["version"], record["approved"], bytes(record["content"])) == (4, True, "改訂本文".encode())
    assert_mode_can_be_normal(s, open_before)


# -- concurrent approvals: still one conflict per store that receives every state --------------

@pytest.fixture()
def both(pg_settings: Settings) -> Iterator[Sides]:
    sides = Sides(pg_settings)
    yield sides
    sides.close()


@pytest.mark.parametrize("first", ["local", "remote"])
def test_concurrent_approvals_are_recorded_where_every_state_arrives(both: Sides, first: str) -> None:
    """Approved on both sides while cut off: the later approval wins; META and fructos_own record it
    on both sides; remote fructos_patient follows the same rule and records nothing of its own."""
    doc_id = both.new_synced_doc()
    second = "remote" if first == "local" else "local"
    sent = {side: both.call(side, "PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": side}]}, doc_id)
            for side in (first, second)}
    on_remote = both.deliver("remote", sent["local"])
    both.deliver("local", sent["remote"])
    both.assert_identical(doc_id)
    assert_one_conflict_each_side(both, doc_id, second, "later updated_at")
    record_id = both.ids("remote", doc_id)["fructos_patient"]
    assert on_remote["fructos_patient"].conflicts == 0
    assert both.conflicts("remote", "fructos_patient", record_id) == []
    kept = both.row("remote", "fructos_own", record_id)
    assert kept is not None and both.row("remote", "fructos_patient", record_id) == kept
    assert both.row("local", "meta", doc_id)["approved_by"] == second  # type: ignore[index]
