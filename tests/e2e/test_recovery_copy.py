"""'Copy selected' of the recovery difference list (``platsync recovery-copy``) on the running stack.

The hospital->cloud worker is stopped, so what the hospital enters stays copyable; copying re-sends the records'
current state, which the cloud applies once the worker runs again, exactly once and without a conflict."""

from __future__ import annotations

import json
import os
import signal
import uuid

import psycopg

from connectors.reference_api.service import ReferenceApi
from infra.local.process import read_pid, wait_until
from infra.local.stack import Stack
from streams.ops.recovery_report import conflicts_by_row
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import eventually, platsync

WORKER = "worker-local_to_remote"


def documents(settings: Settings, side: str, ids: list[str]) -> dict[str, tuple[int, str]]:
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        return {str(i): (v, t) for i, v, t in conn.execute(
            "SELECT id, version, title FROM documents WHERE id::text = ANY(%s)", (ids,))}


def copy(settings: Settings, *records: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = platsync(settings, "recovery-copy", *records, "--json", timeout=120)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, {o["id"]: o for o in json.loads(result.stdout)}


def register(settings: Settings, side: str, titles: list[str]) -> list[str]:
    with ReferenceApi(settings, side) as api:
        return api.call("PRV_DOC_006", {"documents": [
            {"patient_id": "p-copy", "doc_type": "note", "title": t, "media_type": "text/plain",
             "content_text": t, "signed_by": "dr"} for t in titles]})["written"]["meta"]["documents"]


def test_copy_selected_re_sends_what_the_cloud_lacks_and_refuses_what_it_cannot(stack: Stack) -> None:
    s = stack.settings
    tag = uuid.uuid4().hex[:6]
    from_cloud = register(s, "remote", [f"cloud-{tag}"])
    eventually(lambda: len(documents(s, "local", from_cloud)) == 1, "the cloud's document at the hospital")
    worker = read_pid(s.data_dir, WORKER)
    assert worker is not None
    os.kill(worker, signal.SIGTERM)
    try:
        wait_until(lambda: read_pid(s.data_dir, WORKER) is None, 60, "the hospital->cloud worker stopped")
        entered = register(s, "local", [f"held-{tag}-1", f"held-{tag}-2"])
        assert documents(s, "remote", entered) == {}
        missing = str(uuid.uuid4())
        rc, outcomes = copy(s, *(f"local/meta/documents/{d}" for d in entered),
                            f"remote/meta/documents/{from_cloud[0]}", f"local/meta/documents/{missing}",
                            "moon/meta/documents/1")
        assert rc == 1  # something was refused
        for doc in entered:
            got = outcomes[f"local/meta/documents/{doc}"]
            assert got["outcome"] == "re-sent" and "version 1" in got["reason"], got
        assert outcomes[f"remote/meta/documents/{from_cloud[0]}"]["outcome"] == "already_copied"
        refused = outcomes[f"local/meta/documents/{missing}"]
        assert refused["outcome"] == "refused" and "no such record on local" in refused["reason"], refused
        assert outcomes["moon/meta/documents/1"]["reason"].startswith("unknown side 'moon'")
    finally:
        restarted = platsync(s, "up", "--detach", timeout=300)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    synced = platsync(s, "wait-synced", "--timeout", "120", timeout=180)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert documents(s, "remote", entered) == documents(s, "local", entered)
    assert {v for v, _ in documents(s, "remote", entered).values()} == {1}  # the live change and the copy: one version
    with psycopg.connect(libpq_dsn(s, "remote", "meta")) as conn:
        assert not {row for (table, row) in conflicts_by_row(conn) if table == "documents"} & set(entered)
    rc, again = copy(s, *(f"local/meta/documents/{d}" for d in entered))
    assert rc == 0 and {o["outcome"] for o in again.values()} == {"already_copied"}, again
