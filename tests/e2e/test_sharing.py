"""Share states through the real two-site stack (issue 15, docs/sharing.md).

A private document syncs to its institution's own stores in the cloud but never reaches the shared
patient store (患者管理FRUCtoS); making an approved document private withdraws it from there, making it
shared again publishes it, from either side; only the author may change it; the rules decide by default.
"""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from connectors.reference_api.errors import ApiError
from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import platsync

pytestmark = pytest.mark.e2e


def synced(s: Settings) -> None:
    pending = wait_synced(s, timeout_s=60)
    assert pending == [], f"not synced: {pending}"


def record(s: Settings, side: str, store: str, doc_id: str) -> tuple | None:
    """(shared, approved, version) of a document's signed record in a store, or None if it holds none."""
    with psycopg.connect(libpq_dsn(s, side, "meta")) as meta:
        found = meta.execute("SELECT record_id FROM documents WHERE id = %s", (doc_id,)).fetchone()
    if found is None:
        return None
    with psycopg.connect(libpq_dsn(s, side, store)) as conn:
        return conn.execute("SELECT shared, approved, version FROM signed_records WHERE id = %s",
                            (found[0],)).fetchone()


def share_state(s: Settings, side: str, doc_id: str) -> str:
    with psycopg.connect(libpq_dsn(s, side, "meta")) as meta:
        return meta.execute("SELECT share_state FROM documents WHERE id = %s", (doc_id,)).fetchone()[0]


def register(api: ReferenceApi, tag: str, **extra: str) -> str:
    return api.call("PRV_DOC_006", {"patient_id": f"p-share-{tag}", "doc_type": "referral", "title": "紹介状",
                                    "media_type": "text/plain", "content_text": f"本文 {tag}",
                                    "signed_by": "dr-share", **extra})["written"]["meta"]["documents"][0]


def test_private_documents_stay_out_of_the_patient_store_and_share_changes_follow(stack: Stack) -> None:
    s = stack.settings
    with ReferenceApi(s, "local") as local:
        shared = register(local, "shared")
        private = register(local, "private", share_state="private")
        ruled = register(local, "ruled", doc_type="note", department="psychiatry")  # the shipped rules: private
        local.call("PRV_DOC_009", {"documents": [{"id": d, "approved_by": "dr-chief"}
                                                 for d in (shared, private, ruled)]})
    synced(s)
    assert [share_state(s, side, d) for side in ("local", "remote") for d in (shared, private, ruled)] == [
        "shared", "private", "private"] * 2
    # Every document syncs to the cloud's own stores (the institution's backup); only the shared one
    # reaches the patient store.
    assert record(s, "remote", "fructos_own", private) == record(s, "local", "fructos_own", private) == (
        False, True, 2)
    assert record(s, "remote", "fructos_patient", shared) == (True, True, 2)
    assert record(s, "remote", "fructos_patient", private) is None
    assert record(s, "remote", "fructos_patient", ruled) is None

    with ReferenceApi(s, "local") as local:
        with pytest.raises(ApiError, match="only a document's author may change its share state"):
            local.call("PRV_DOC_007", {"documents": [{"id": shared, "share_state": "private",
                                                      "signed_by": "dr-other"}]})
        local.call("PRV_DOC_007", {"documents": [{"id": shared, "share_state": "private", "signed_by": "dr-share"},
                                                 {"id": private, "share_state": "shared", "signed_by": "dr-share"}]})
    synced(s)
    assert record(s, "remote", "fructos_patient", shared) is None  # withdrawn
    assert record(s, "remote", "fructos_patient", private) == (True, True, 3)  # published
    assert share_state(s, "remote", shared) == "private"

    # The cloud side (the author working on the cloud) changes it back: its own patient store follows at
    # once, and the hospital's stores after the sync.
    with ReferenceApi(s, "remote") as remote:
        remote.call("PRV_DOC_007", {"documents": [{"id": shared, "share_state": "shared", "signed_by": "dr-share"},
                                                  {"id": private, "share_state": "private",
                                                   "signed_by": "dr-share"}]})
    assert record(s, "remote", "fructos_patient", shared) == (True, True, 4)
    assert record(s, "remote", "fructos_patient", private) is None
    synced(s)
    assert record(s, "local", "fructos_own", shared) == (True, True, 4)
    assert record(s, "local", "fructos_own", private) == (False, True, 4)
    assert (share_state(s, "local", shared), share_state(s, "local", private)) == ("shared", "private")

    # Every setting and change is audited where the call was made: who, when, why; never content.
    def audit(side: str, doc_id: str) -> list[tuple]:
        with psycopg.connect(libpq_dsn(s, side, "meta")) as meta:
            return meta.execute("SELECT previous_state, share_state, changed_by, decided_by, api_id FROM "
                                "platsync_share_audit WHERE document_id = %s ORDER BY id", (doc_id,)).fetchall()

    assert audit("local", shared) == [(None, "shared", "dr-share", "default", "PRV_DOC_006"),
                                      ("shared", "private", "dr-share", "author", "PRV_DOC_007")]
    assert audit("local", ruled) == [(None, "private", "dr-share", "rule 'psychotherapy notes'", "PRV_DOC_006")]
    assert audit("remote", shared) == [("private", "shared", "dr-share", "author", "PRV_DOC_007")]


@pytest.mark.embedded_broker
def test_opposite_share_changes_on_both_sides_of_a_cut_leave_the_patient_store_on_the_winner(stack: Stack) -> None:
    """The author makes a document private at the hospital, then (later, so this wins by the conflict rule's
    'later updated_at') shared again in the cloud, both at version 3 while the link is cut: every store,
    the shared patient store included, ends on the cloud's shared state."""
    s = stack.settings
    with ReferenceApi(s, "local") as local:
        doc_id = register(local, "cut")
        local.call("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "dr-chief"}]})
    synced(s)
    assert record(s, "remote", "fructos_patient", doc_id) == (True, True, 2)
    cut = platsync(s, "link", "down", "--note", "share changes on both sides")
    assert cut.returncode == 0, cut.stdout + cut.stderr
    try:
        with ReferenceApi(s, "local") as local:
            local.call("PRV_DOC_007", {"documents": [{"id": doc_id, "share_state": "private",
                                                      "signed_by": "dr-share"}]})
        with ReferenceApi(s, "remote") as remote:
            remote.call("PRV_DOC_007", {"documents": [{"id": doc_id, "share_state": "shared", "signed_by": "dr-share",
                                                       "title": "共有に戻す"}]})
    finally:
        restored = platsync(s, "link", "up", timeout=300)
        assert restored.returncode == 0, restored.stdout + restored.stderr
    synced(s)
    assert record(s, "local", "fructos_own", doc_id) == record(s, "remote", "fructos_own", doc_id) == (True, True, 3)
    assert record(s, "remote", "fructos_patient", doc_id) == (True, True, 3)  # the winner, not withdrawn
    with psycopg.connect(libpq_dsn(s, "remote", "fructos_patient")) as conn, \
            psycopg.connect(libpq_dsn(s, "remote", "fructos_own")) as own:
        query = "SELECT version, updated_at, content_hash, shared FROM signed_records WHERE subject_id = %s"
        assert conn.execute(query, (doc_id,)).fetchone() == own.execute(query, (doc_id,)).fetchone()


def patient_copy(s: Settings, doc_id: str) -> tuple | None:
    """(version, updated_at, content_hash, shared, deleted) of a document in the shared store, or None."""
    with psycopg.connect(libpq_dsn(s, "remote", "fructos_patient")) as conn:
        return conn.execute("SELECT version, updated_at, content_hash, shared, deleted FROM signed_records "
                            "WHERE subject_id = %s", (doc_id,)).fetchone()


def own_state(s: Settings, side: str, doc_id: str) -> tuple | None:
    with psycopg.connect(libpq_dsn(s, side, "fructos_own")) as conn:
        return conn.execute("SELECT version, updated_at, content_hash, shared, deleted FROM signed_records "
                            "WHERE subject_id = %s", (doc_id,)).fetchone()


def test_the_patient_store_keeps_an_approved_shared_document_current(stack: Stack) -> None:
    """Kept current (docs/sharing.md, rule 2): an update or a delete of an approved, shared document reaches the
    shared patient store from either side; an approved private document's edits never do."""
    s = stack.settings
    with ReferenceApi(s, "local") as local, ReferenceApi(s, "remote") as remote:
        doc_id = register(local, "current")
        note = register(local, "current-note", share_state="private")
        local.call("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "dr-chief"},
                                                 {"id": note, "approved_by": "dr-chief"}]})
        synced(s)
        local.call("PRV_DOC_007", {"documents": [{"id": doc_id, "content_text": "改訂 1", "signed_by": "dr-share"},
                                                 {"id": note, "content_text": "私的 1", "signed_by": "dr-share"}]})
        synced(s)
        assert patient_copy(s, doc_id) == own_state(s, "remote", doc_id)  # the hospital's update, version 3
        remote.call("PRV_DOC_007", {"documents": [{"id": doc_id, "content_text": "改訂 2", "signed_by": "dr-share"}]})
        synced(s)
        assert patient_copy(s, doc_id) == own_state(s, "local", doc_id)  # the cloud's update, version 4
        assert patient_copy(s, doc_id)[0] == 4 and patient_copy(s, note) is None
        local.call("PRV_DOC_008", {"ids": [doc_id]})
        synced(s)
    assert patient_copy(s, doc_id) == own_state(s, "remote", doc_id) and patient_copy(s, doc_id)[4] is True


def content_ranked(old_hash: str, above: bool) -> str:
    """A text whose sha256 ranks above (or below) ``old_hash``: at equal versions the conflict rule compares the
    content hash before the time (docs/conflicts.md), so this picks the winner."""
    return next(t for t in (f"加筆 {i}" for i in range(1000))
                if (hashlib.sha256(t.encode()).hexdigest() > old_hash) is above)


@pytest.mark.parametrize("hospital_wins", [True, False], ids=["hospital-update-wins", "cloud-withdrawal-wins"])
def test_a_withdrawal_and_a_concurrent_update_leave_the_patient_store_on_the_winner(stack: Stack,
                                                                                  hospital_wins: bool) -> None:
    """During a cut the author makes an approved document private in the cloud while the hospital updates its
    content (still shared), both at version 3; the conflict rule picks one (by content hash, chosen here). The
    shared patient store ends on the winner: the hospital's update copied back (it beats the withdrawal's
    tombstone), or nothing."""
    s = stack.settings
    with ReferenceApi(s, "local") as local:
        doc_id = register(local, f"race-{hospital_wins}")
        local.call("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "dr-chief"}]})
    synced(s)
    old_hash = own_state(s, "local", doc_id)[2]
    cut = platsync(s, "link", "down", "--note", "withdrawal against update")
    assert cut.returncode == 0, cut.stdout + cut.stderr
    try:
        with ReferenceApi(s, "remote") as remote:
            remote.call("PRV_DOC_007", {"documents": [{"id": doc_id, "share_state": "private",
                                                       "signed_by": "dr-share"}]})
        assert patient_copy(s, doc_id) is None  # withdrawn in the cloud at once
        with ReferenceApi(s, "local") as local:
            local.call("PRV_DOC_007", {"documents": [{"id": doc_id, "signed_by": "dr-share",
                                                      "content_text": content_ranked(old_hash, hospital_wins)}]})
    finally:
        restored = platsync(s, "link", "up", timeout=300)
        assert restored.returncode == 0, restored.stdout + restored.stderr
    synced(s)
    winner = own_state(s, "local", doc_id)
    assert winner == own_state(s, "remote", doc_id) and winner[0] == 3
    assert winner[3] is hospital_wins  # shared: the hospital's update won; private: the cloud's withdrawal
    assert patient_copy(s, doc_id) == (winner if hospital_wins else None)


def tombstone(s: Settings, record_id: str) -> tuple | None:
    """(version, deleted, approved) the shared store's tombstone of a record keeps, or None."""
    with psycopg.connect(libpq_dsn(s, "remote", "fructos_patient")) as conn:
        return conn.execute("SELECT version, deleted, approved FROM platsync_tombstone "
                            "WHERE table_name = 'signed_records' AND id = %s", (record_id,)).fetchone()


@pytest.mark.parametrize("deleting", ["local", "remote"], ids=["hospital-deletes", "cloud-deletes"])
def test_a_delete_during_a_cut_beats_the_other_sides_approval_in_the_patient_store(stack: Stack,
                                                                                     deleting: str) -> None:
    """During a cut one side deletes a shared document that is not approved yet while the other approves it,
    both at version 2. Deleted beats approved (the conflict rule), so both sides keep the delete; the approval
    had put a copy into the shared patient store (in the cloud at once, or on arrival from the hospital), and
    the delete, though of a document never approved on its side, withdraws it there: no copy is left, only a
    tombstone that ranks as deleted."""
    s = stack.settings
    approving = "remote" if deleting == "local" else "local"
    with ReferenceApi(s, "local") as local:
        doc_id = register(local, f"delete-race-{deleting}")
    synced(s)
    record_id = own_state_id(s, doc_id)
    cut = platsync(s, "link", "down", "--note", "delete against approval")
    assert cut.returncode == 0, cut.stdout + cut.stderr
    try:
        with ReferenceApi(s, approving) as api:
            api.call("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "dr-chief"}]})
        with ReferenceApi(s, deleting) as api:
            api.call("PRV_DOC_008", {"ids": [doc_id]})
    finally:
        restored = platsync(s, "link", "up", timeout=300)
        assert restored.returncode == 0, restored.stdout + restored.stderr
    synced(s)
    winner = own_state(s, "local", doc_id)
    assert winner == own_state(s, "remote", doc_id) and (winner[0], winner[4]) == (2, True)
    assert patient_copy(s, doc_id) is None
    assert tombstone(s, record_id) == (2, True, False)


def own_state_id(s: Settings, doc_id: str) -> str:
    with psycopg.connect(libpq_dsn(s, "local", "fructos_own")) as conn:
        return str(conn.execute("SELECT id FROM signed_records WHERE subject_id = %s", (doc_id,)).fetchone()[0])
