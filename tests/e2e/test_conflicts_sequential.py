"""Sequential changes on a healthy link are fast-forwards, never conflicts (docs/conflicts.md).

Issue 13, item 5: with the link up and a sync barrier between every step, a document registered
on the local side, approved on the remote side, then approved again on the local side was listed
as a conflict in the remote ``fructos_patient`` store. The remote APIs that write 患者管理FRUCtoS
(PRV_DOC_009, PRV_USR_001) copy the record they wrote to ``fructos_own``; the copy must be the
same state (same ``version`` *and* ``updated_at``), or the next change of the record, whose
before-image is the ``fructos_own`` state, does not match it. The real running stack: captures,
broker, workers, sinks.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.barrier import wait_synced
from streams.conflicts import open_conflict_count
from streams.mode_state import read_mode
from streams.model import DATABASE_STORES
from streams.settings import Settings

pytestmark = pytest.mark.e2e


def synced(s: Settings) -> None:
    pending = wait_synced(s, timeout_s=90)
    assert pending == [], f"not synced: {pending}"


def row(s: Settings, side: str, store: str, table: str, row_id: str) -> dict[str, Any] | None:
    with psycopg.connect(s.libpq_dsn(side, store), row_factory=dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} WHERE id = %s", (row_id,)).fetchone()  # noqa: S608


def conflicts_about(s: Settings, row_ids: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every conflict (open or resolved) any side or store recorded about these rows."""
    found = []
    for side, stores in DATABASE_STORES.items():
        for store in stores:
            with psycopg.connect(s.libpq_dsn(side, store), row_factory=dict_row) as conn:
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

