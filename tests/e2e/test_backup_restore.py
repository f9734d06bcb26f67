"""Rebuilding a lost hospital from the backup its parent holds (issue 18, docs/backups.md, "Restore"), on a stack
of its own: back up, write more on both sides, destroy the hospital's cluster, restore; the hospital then holds
what the cloud holds for it, nothing acknowledged is lost, nothing is applied twice, and it works on."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.process import read_pid, stop_pid
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import platsync
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_stack() -> Iterator[Stack]:
    data_dir = make_data_dir("platsync-restore-")
    stack = Stack(isolated_settings(data_dir))
    try:
        stack.up(say=lambda m: print(f"[stack] {m}"))
        yield stack
    finally:
        stack.down(say=lambda m: print(f"[stack] {m}"), drain_timeout_s=0)
        remove_data_dir(data_dir)


def register(api: ReferenceApi, *titles: str) -> list[str]:
    return api.call("PRV_DOC_006", {"documents": [
        {"patient_id": "p-restore", "doc_type": "note", "title": t, "media_type": "text/plain",
         "content_text": f"本文 {t}", "signed_by": "dr-restore"} for t in titles]})["written"]["meta"]["documents"]


def state(s: Settings, side: str) -> dict[str, Any]:
    """What a side holds of the hospital's documents: META's rows and their signed records."""
    with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
        docs = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, version, title, document_number, deleted, record_id FROM documents ORDER BY id")}
    with psycopg.connect(libpq_dsn(s, side, "fructos_own")) as conn:
        records = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, version, content_hash, deleted, approved FROM signed_records ORDER BY id")}
    return {"documents": docs, "records": records}


def test_a_lost_hospital_is_rebuilt_from_its_backup_and_works_on(own_stack: Stack) -> None:
    s = own_stack.settings
    with ReferenceApi(s, "local") as local:
        kept, updated, deleted = register(local, "kept", "updated later", "deleted later")
    assert wait_synced(s, 120) == []
    made = platsync(s, "backup", "create", "--node", "local", timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr

    # After the backup: the hospital writes (and syncs), the cloud writes, updates and deletes.
    with ReferenceApi(s, "local") as local:
        (after_local,) = register(local, "hospital after the backup")
    with ReferenceApi(s, "remote") as remote:
        (after_cloud,) = register(remote, "cloud after the backup")
        remote.call("PRV_DOC_007", {"documents": [{"id": updated, "title": "updated on the cloud",
                                                   "signed_by": "dr-cloud"}]})
        remote.call("PRV_DOC_008", {"ids": [deleted]})
    assert wait_synced(s, 120) == []
    network_says = state(s, "remote")
    assert state(s, "local") == network_says

    # The hospital's server is lost: its cluster and its capture's state.
    pg_pid = read_pid(s.data_dir, "pg-local")
    assert pg_pid is not None
    stop_pid(pg_pid, timeout_s=30, sig=signal.SIGKILL)
    shutil.rmtree(s.data_dir / "pg" / "local")
    for path in [*s.data_dir.glob("capture/local.*"), *s.data_dir.glob("state/capture/local.*")]:
        path.unlink()

    refused = platsync(s, "backup", "restore", "--node", "local")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    restored = platsync(s, "backup", "restore", "--node", "local", "--yes", timeout=900)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "later change(s) of its own applied again" in restored.stdout, restored.stdout

    # Equal to what the cloud holds for it, and the cloud's rows untouched: no change was applied twice.
    assert state(s, "remote") == network_says
    assert state(s, "local") == network_says
    docs = network_says["documents"]
    assert {kept, updated, after_local, after_cloud} <= set(docs) and docs[deleted][3] is True
    assert docs[updated][1] == "updated on the cloud"

    # It works on: a new document crosses, numbered past every number the lost server handed out.
    with ReferenceApi(s, "local") as local:
        (new,) = register(local, "after the restore")
    assert wait_synced(s, 120) == []
    after = state(s, "remote")["documents"]
    assert new in after and int(after[new][2]) > max(int(d[2]) for i, d in docs.items() if i != after_cloud)
    assert state(s, "local") == state(s, "remote")
