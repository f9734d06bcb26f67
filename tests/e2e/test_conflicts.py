"""Concurrent edits of one record on both sides (docs/conflicts.md), against real PostgreSQL.

Sink level: the reference APIs write both sides' real stores; what the capture would send (the
row's after-image and, for an update, its before-image, in the capture's wire form) is handed to
the other side's real :class:`PostgresRowSink`, as the worker does. Stack level: the real running
stack (captures, broker, workers, CLI) with both workers stopped while each side edits.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from connectors.reference_api.service import ReferenceApi
from connectors.sinks.postgres_rows import PostgresRowSink
from infra.local.process import read_pid
from infra.local.stack import Stack, write_settings_file
from streams.apply.conflicts import open_conflict_count
from streams.core.model import DATABASE_STORES, Write, other_side
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import platsync

pytestmark = pytest.mark.e2e

TABLE = {"meta": "documents", "fructos_own": "signed_records", "fructos_patient": "signed_records"}


def wire(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row as the live capture sends it (Debezium isostring timestamps, bytes)."""
    if row is None:
        return None
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, datetime):
            out[k] = v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif isinstance(v, date):
            out[k] = v.isoformat()
        elif isinstance(v, memoryview):
            out[k] = bytes(v)
        else:
            out[k] = v
    return out


class Sides:
    """Both sides' reference APIs and sinks; ``sent`` holds what each side's capture would send."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.api = {side: ReferenceApi(settings, side) for side in ("local", "remote")}
        self.sinks = {(side, store): PostgresRowSink(settings, side, store)
                      for side, stores in DATABASE_STORES.items() for store in stores}
        for sink in self.sinks.values():
            sink.setup()

    def close(self) -> None:
        for api in self.api.values():
            api.close()
        for sink in self.sinks.values():
            sink.close()

    def row(self, side: str, store: str, row_id: str) -> dict[str, Any] | None:
        with psycopg.connect(libpq_dsn(self.s, side, store), row_factory=dict_row) as conn:
            return conn.execute(f"SELECT * FROM {TABLE[store]} WHERE id = %s", (row_id,)).fetchone()

    def ids(self, side: str, doc_id: str) -> dict[str, str]:
        doc = self.row(side, "meta", doc_id)
        assert doc is not None
        return {"meta": doc_id, "fructos_own": doc["record_id"], "fructos_patient": doc["record_id"]}

    def call(self, side: str, api_id: str, payload: dict[str, Any], doc_id: str | None = None,
             op: str = "u") -> dict[str, list[Write]]:
        """Run an API on ``side``; return per target store the writes its capture leads to."""
        stores = ("meta", "fructos_own") + (("fructos_patient",) if api_id in ("PRV_DOC_009",) else ())
        before = {} if doc_id is None else {st: self.row(side, st, self.ids(side, doc_id)[st])
                                            for st in ("meta", "fructos_own")}
        written = self.api[side].call(api_id, payload)["written"]
        return self.captured(side, doc_id or written["meta"]["documents"][0], api_id, before, stores, op)

    def captured(self, side: str, doc_id: str, api_id: str, before: dict[str, dict[str, Any] | None],
                 stores: tuple[str, ...] = ("meta", "fructos_own"), op: str = "u") -> dict[str, list[Write]]:
        """What the capture of ``side`` sends for the document's current state, per target store."""
        ids = self.ids(side, doc_id)
        out: dict[str, list[Write]] = {}
        for store in stores:
            source = "fructos_own" if store == "fructos_patient" else store
            after = self.row(side, source, ids[source])
            assert after is not None
            out[store] = [Write(other_side(side), store, TABLE[store], "upsert", ids[source], after["version"],
                                wire(after), f"{side}.{source}:{uuid.uuid4().hex}", api_id, side,
                                before=wire(before.get(source)) if op == "u" else None)]
        return out

    def deliver(self, to_side: str, writes: dict[str, list[Write]]) -> dict[str, Any]:
        """Apply on ``to_side`` as the worker does; return the sink results per store."""
        return {store: self.sinks[(to_side, store)].apply_batch(ws, other_side(to_side))
                for store, ws in writes.items() if store in DATABASE_STORES[to_side]}

    def conflicts(self, side: str, store: str, row_id: str) -> list[dict[str, Any]]:
        with psycopg.connect(libpq_dsn(self.s, side, store), row_factory=dict_row) as conn:
            return conn.execute("SELECT * FROM platsync_conflict WHERE row_id = %s ORDER BY conflict_id",
                                (row_id,)).fetchall()

    def new_synced_doc(self, origin: str = "local", title: str = "紹介状") -> str:
        """A document registered on ``origin`` and already synced to the other side."""
        payload = {"documents": [{"patient_id": "p-conflict", "doc_type": "referral", "title": title,
                                  "media_type": "text/plain", "content_text": f"{title} v1", "signed_by": "dr"}]}
        writes = self.call(origin, "PRV_DOC_006", payload, op="c")
        self.deliver(other_side(origin), writes)
        doc_id = writes["meta"][0].key
        self.assert_identical(doc_id)
        return doc_id

    def assert_identical(self, doc_id: str) -> None:
        for store in ("meta", "fructos_own"):
            row_id = self.ids("local", doc_id)[store]
            assert self.row("local", store, row_id) == self.row("remote", store, row_id), store


@pytest.fixture()
def sides(pg_settings: Settings) -> Iterator[Sides]:
    both = Sides(pg_settings)
    yield both
    both.close()


def update(doc_id: str, title: str, content: str | None = None) -> dict[str, Any]:
    change: dict[str, Any] = {"id": doc_id, "title": title, "signed_by": "dr"}
    if content is not None:
        change["content_text"] = content
    return {"documents": [change]}


def assert_one_conflict_each_side(sides: Sides, doc_id: str, winner: str, rule: str) -> None:
    """Both sides recorded the same conflict (id, winner, rule, both versions) for META and FRUCtoS."""
    for store in ("meta", "fructos_own"):
        row_id = sides.ids("local", doc_id)[store]
        local, remote = sides.conflicts("local", store, row_id), sides.conflicts("remote", store, row_id)
        assert len(local) == len(remote) == 1, (store, local, remote)
        mine, theirs = local[0], remote[0]
        assert mine["conflict_id"] == theirs["conflict_id"]
        assert (mine["detected_on"], theirs["detected_on"]) == ("local", "remote")
        for found in (mine, theirs):
            assert (found["winner"], found["rule"], found["status"]) == (winner, rule, "open")
            assert found["local_row"] == mine["local_row"] and found["remote_row"] == mine["remote_row"]
            assert found["local_row"] != found["remote_row"]
        kept = sides.row("local", store, row_id)
        assert kept is not None and wire(kept)["version"] == mine[f"{winner}_row"]["version"]
        assert mine[f"{winner}_row"]["updated_at"] == wire(kept)["updated_at"]


def test_update_update_keeps_one_version_on_both_sides_and_records_both(sides: Sides) -> None:
    doc_id = sides.new_synced_doc()
    from_local = sides.call("local", "PRV_DOC_007", update(doc_id, "local title", "local body"), doc_id)
    from_remote = sides.call("remote", "PRV_DOC_007", update(doc_id, "remote title", "remote body"), doc_id)
    on_remote, on_local = sides.deliver("remote", from_local), sides.deliver("local", from_remote)
    sides.assert_identical(doc_id)
    local_hash = from_local["meta"][0].row["content_hash"]  # type: ignore[index]
    remote_hash = from_remote["meta"][0].row["content_hash"]  # type: ignore[index]
    winner = "local" if local_hash > remote_hash else "remote"
    assert_one_conflict_each_side(sides, doc_id, winner, "higher content hash")
    kept = sides.row("local", "meta", doc_id)
    assert kept is not None and kept["title"] == f"{winner} title"
    conflict = sides.conflicts("remote", "meta", doc_id)[0]
    assert conflict["local_row"]["title"] == "local title" and conflict["remote_row"]["title"] == "remote title"
    assert (conflict["local_api_id"], conflict["remote_api_id"]) == ("PRV_DOC_007", "PRV_DOC_007")
    record = sides.conflicts("local", "fructos_own", sides.ids("local", doc_id)["fructos_own"])[0]
    assert {record["local_row"]["content"], record["remote_row"]["content"]} == {"bG9jYWwgYm9keQ==",
                                                                                "cmVtb3RlIGJvZHk="}
    # The side whose version lost applies the winner (META row and signed record); the other keeps its own.
    applied = {"remote": sum(r.applied for r in on_remote.values()), "local": sum(r.applied for r in on_local.values())}
    assert applied == {"local": 2 if winner == "remote" else 0, "remote": 2 if winner == "local" else 0}
    assert sum(r.conflicts for r in on_remote.values()) == sum(r.conflicts for r in on_local.values()) == 2


def test_update_delete_keeps_the_deletion_even_against_a_higher_version(sides: Sides) -> None:
    doc_id = sides.new_synced_doc(origin="remote")
    deleted = sides.call("local", "PRV_DOC_008", {"ids": [doc_id]}, doc_id)
    sides.call("remote", "PRV_DOC_007", update(doc_id, "edit 1"), doc_id)
    edited = sides.call("remote", "PRV_DOC_007", update(doc_id, "edit 2"), doc_id)  # version 3 > 2
    sides.deliver("remote", deleted)
    sides.deliver("local", edited)
    sides.assert_identical(doc_id)
    kept = sides.row("remote", "meta", doc_id)
    assert kept is not None and kept["deleted"] is True and kept["version"] == 2
    assert_one_conflict_each_side(sides, doc_id, "local", "deleted beats live")
    conflict = sides.conflicts("local", "meta", doc_id)[0]
    assert (conflict["remote_row"]["version"], conflict["remote_row"]["title"]) == (3, "edit 2")


def test_approval_beats_a_concurrent_update_and_later_edits_still_sync(sides: Sides) -> None:
    doc_id = sides.new_synced_doc()
    approved = sides.call("local", "PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "chief"}]}, doc_id)
    sides.call("remote", "PRV_DOC_007", update(doc_id, "remote 1"), doc_id)
    sides.call("remote", "PRV_DOC_007", update(doc_id, "remote 2"), doc_id)
    updated = sides.call("remote", "PRV_DOC_007", update(doc_id, "remote 3", "remote body"), doc_id)  # v4
    sides.deliver("remote", approved)
    sides.deliver("local", updated)
    sides.assert_identical(doc_id)
    kept = sides.row("remote", "meta", doc_id)
    assert kept is not None and (kept["status"], kept["version"], kept["title"]) == ("approved", 2, "紹介状")
    assert_one_conflict_each_side(sides, doc_id, "local", "approved beats unapproved")
    patient_copy = sides.row("remote", "fructos_patient", sides.ids("remote", doc_id)["fructos_patient"])
    assert patient_copy is not None and patient_copy["approved"] is True and patient_copy["version"] == 2
    # After the conflict the remote side edits the approved document: version 3, below the version 4
    # it sent before. It must reach the local side (a version-only replay check would drop it).
    after = sides.call("remote", "PRV_DOC_007", update(doc_id, "after approval"), doc_id)
    results = sides.deliver("local", after)
    assert [r.applied for r in results.values()] == [1, 1] and all(r.conflicts == 0 for r in results.values())
    sides.assert_identical(doc_id)
    kept = sides.row("local", "meta", doc_id)
    assert kept is not None and (kept["title"], kept["version"], kept["status"]) == ("after approval", 3, "approved")


def test_fast_forward_is_not_a_conflict(sides: Sides) -> None:
    doc_id = sides.new_synced_doc()
    first = sides.deliver("remote", sides.call("local", "PRV_DOC_007", update(doc_id, "local edit"), doc_id))
    second = sides.deliver("local", sides.call("remote", "PRV_DOC_007", update(doc_id, "remote edit"), doc_id))
    for results in (first, second):
        assert [(r.applied, r.conflicts) for r in results.values()] == [(1, 0), (1, 0)]
    sides.assert_identical(doc_id)
    assert sides.row("local", "meta", doc_id)["title"] == "remote edit"  # type: ignore[index]
    assert sides.conflicts("local", "meta", doc_id) == sides.conflicts("remote", "meta", doc_id) == []


def test_replay_and_redelivery_are_not_conflicts(sides: Sides) -> None:
    doc_id = sides.new_synced_doc()
    edits = [sides.call("local", "PRV_DOC_007", update(doc_id, f"edit {i}"), doc_id) for i in range(3)]
    for batch in edits:
        sides.deliver("remote", batch)
    remote_edit = sides.call("remote", "PRV_DOC_007", update(doc_id, "remote builds on edit 2"), doc_id)
    sides.deliver("local", remote_edit)
    sides.assert_identical(doc_id)
    before = {store: sides.row("remote", store, sides.ids("remote", doc_id)[store])
              for store in ("meta", "fructos_own")}
    for batch in [*edits, edits[0], *edits]:  # replays (offset reset) and duplicates, out of order
        results = sides.deliver("remote", batch)
        assert all((r.applied, r.conflicts, r.stale) == (0, 0, 1) for r in results.values())
    sides.deliver("local", remote_edit)
    sides.assert_identical(doc_id)
    assert {store: sides.row("remote", store, sides.ids("remote", doc_id)[store])
            for store in ("meta", "fructos_own")} == before
    assert sides.conflicts("remote", "meta", doc_id) == sides.conflicts("local", "meta", doc_id) == []


def test_batch_with_several_states_of_a_row_fast_forwards_through_them(sides: Sides) -> None:
    doc_id = sides.new_synced_doc()
    edits = [sides.call("local", "PRV_DOC_007", update(doc_id, f"burst {i}"), doc_id) for i in range(3)]
    batch = {store: [w for e in edits for w in e[store]] for store in ("meta", "fructos_own")}
    results = sides.deliver("remote", batch)
    assert [(r.applied, r.stale, r.conflicts) for r in results.values()] == [(1, 2, 0), (1, 2, 0)]
    sides.assert_identical(doc_id)


def test_snapshot_without_before_image(sides: Sides) -> None:
    """Snapshot/re-capture events (op r) carry no before-image: the last state received decides."""
    doc_id = sides.new_synced_doc()
    ff = sides.call("local", "PRV_DOC_007", update(doc_id, "snapshot edit"), doc_id, op="r")
    assert all(r.conflicts == 0 and r.applied == 1 for r in sides.deliver("remote", ff).values())
    sides.assert_identical(doc_id)
    # Concurrent edits captured as snapshots: still a conflict, decided and recorded identically.
    from_local = sides.call("local", "PRV_DOC_007", update(doc_id, "local", "snapshot local"), doc_id, op="r")
    from_remote = sides.call("remote", "PRV_DOC_007", update(doc_id, "remote", "snapshot remote"), doc_id, op="r")
    sides.deliver("remote", from_local)
    sides.deliver("local", from_remote)
    sides.assert_identical(doc_id)
    local_hash = from_local["meta"][0].row["content_hash"]  # type: ignore[index]
    remote_hash = from_remote["meta"][0].row["content_hash"]  # type: ignore[index]
    assert_one_conflict_each_side(sides, doc_id, "local" if local_hash > remote_hash else "remote",
                                  "higher content hash")
    # A re-capture of the losing side's state later is a replay, not a second conflict.
    assert all(r.conflicts == 0 and r.applied == 0 for r in sides.deliver("remote", from_local).values())


def test_redelivering_a_conflicting_batch_is_idempotent(sides: Sides) -> None:
    doc_id = sides.new_synced_doc()
    from_local = sides.call("local", "PRV_DOC_007", update(doc_id, "L", "L body"), doc_id)
    from_remote = sides.call("remote", "PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "x"}]}, doc_id)
    first = [sides.deliver("remote", from_local), sides.deliver("local", from_remote)]
    state = {side: {st: sides.row(side, st, sides.ids(side, doc_id)[st]) for st in ("meta", "fructos_own")}
             for side in ("local", "remote")}
    second = [sides.deliver("remote", from_local), sides.deliver("local", from_remote)]
    assert sum(r.conflicts for results in first for r in results.values()) == 4
    assert all((r.applied, r.conflicts) == (0, 0) for results in second for r in results.values())
    assert {side: {st: sides.row(side, st, sides.ids(side, doc_id)[st]) for st in ("meta", "fructos_own")}
            for side in ("local", "remote")} == state
    sides.assert_identical(doc_id)
    assert_one_conflict_each_side(sides, doc_id, "remote", "approved beats unapproved")


def test_a_bad_row_in_a_conflicting_batch_is_rejected_and_the_conflict_still_recorded_once(sides: Sides) -> None:
    doc_id = sides.new_synced_doc()
    from_local = sides.call("local", "PRV_DOC_008", {"ids": [doc_id]}, doc_id)
    sides.call("remote", "PRV_DOC_007", update(doc_id, "remote edit"), doc_id)
    bad_id = str(uuid.uuid4())
    bad = Write("remote", "meta", "staff", "upsert", bad_id, 1,
                {"id": bad_id, "staff_code": "S", "display_name": None, "role": "doctor", "username": None,
                 "version": 1, "deleted": False, "updated_at": "2026-11-22T00:00:00Z"}, "bad-1", "PRV_STF_001", "local")
    result = sides.sinks[("remote", "meta")].apply_batch([*from_local["meta"], bad], "local")  # NOT NULL violated
    assert (result.applied, result.conflicts, [r.write.key for r in result.rejected]) == (1, 1, [bad_id])
    assert "display_name" in result.rejected[0].error
    again = sides.sinks[("remote", "meta")].apply_batch([*from_local["meta"], bad], "local")
    assert (again.applied, again.conflicts, len(again.rejected)) == (0, 0, 1)
    found = sides.conflicts("remote", "meta", doc_id)
    assert len(found) == 1 and (found[0]["winner"], found[0]["rule"]) == ("local", "deleted beats live")
    assert sides.row("remote", "meta", doc_id)["deleted"] is True  # type: ignore[index]


def test_cli_lists_shows_and_resolves_and_restores_a_lost_document(sides: Sides) -> None:
    s = sides.s
    write_settings_file(s)  # the CLI reads the data dir's settings file, as with a running stack
    doc_id = sides.new_synced_doc()
    record_id = sides.ids("local", doc_id)["fructos_own"]
    approved = sides.call("remote", "PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "chief"}]}, doc_id)
    local_edits = [sides.call("local", "PRV_DOC_007", update(doc_id, f"lost title {i}", f"lost body {i}"), doc_id)
                   for i in (1, 2)]
    for batch in local_edits:  # the remote side receives the local versions one by one
        sides.deliver("remote", batch)
    sides.deliver("local", approved)
    sides.assert_identical(doc_id)
    listed = platsync(s, "conflicts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ours = {c["store"]: c for c in json.loads(listed.stdout) if c["row_id"] in (doc_id, record_id)}
    assert set(ours) == {"meta", "fructos_own"}
    meta = ours["meta"]
    assert (meta["winner"], meta["rule"], meta["status"]) == ("remote", "approved beats unapproved", "open")
    assert meta["detected_on"] == ["local", "remote"]
    assert (meta["local_row"]["title"], meta["local_row"]["version"]) == ("lost title 2", 3)
    assert {"title", "status", "content_hash", "version"} <= set(meta["differing_fields"])
    # The remote side saw local version 2 lose first: that loss is superseded by version 3's.
    everything = json.loads(platsync(s, "conflicts", "list", "--status", "all", "--json").stdout)
    superseded = [c for c in everything if c["row_id"] == doc_id and c["conflict_id"] != meta["conflict_id"]]
    assert len(superseded) == 1 and superseded[0]["detected_on"] == ["remote"]
    assert superseded[0]["status"] == "resolved" and "superseded" in superseded[0]["resolution"]
    assert superseded[0]["local_row"]["title"] == "lost title 1"
    text = platsync(s, "conflicts", "list")
    assert meta["conflict_id"] in text.stdout and "DETECTED ON" in text.stdout
    shown = platsync(s, "conflicts", "show", meta["conflict_id"][:8])
    assert shown.returncode == 0, shown.stderr
    assert "local version (lost)" in shown.stdout and "remote version (kept)" in shown.stdout
    assert "lost title 2" in shown.stdout and "approved beats unapproved" in shown.stdout
    assert platsync(s, "conflicts", "show", "0123456789abcdef0123").returncode == 3
    assert platsync(s, "conflicts", "show", "not-hex").returncode == 3
    # Restore the lost local version on the remote side; it then reaches the local side as an update.
    kept = {st: sides.row("remote", st, sides.ids("remote", doc_id)[st]) for st in ("meta", "fructos_own")}
    open_before = open_conflict_count(s)
    assert open_before >= 2  # this test's META and FRUCtoS conflicts (other tests' may be open too)
    restored = platsync(s, "conflicts", "resolve", meta["conflict_id"], "--restore-loser", "--side", "remote",
                        "--note", "ward asked for it")
    assert restored.returncode == 0, restored.stderr
    after = sides.row("remote", "meta", doc_id)
    assert after is not None
    assert (after["title"], after["status"], after["version"]) == ("lost title 2", "approved", 3)
    assert after["content_hash"] == meta["local_row"]["content_hash"]
    record = sides.row("remote", "fructos_own", record_id)
    assert record is not None and bytes(record["content"]) == b"lost body 2" and record["approved"] is True
    synced = sides.deliver("local", sides.captured("remote", doc_id, "PRV_DOC_007", kept))
    assert [(r.applied, r.conflicts) for r in synced.values()] == [(1, 0), (1, 0)]
    sides.assert_identical(doc_id)
    shown_json = json.loads(platsync(s, "conflicts", "show", meta["conflict_id"], "--json").stdout)
    assert shown_json["status"] == "resolved" and "ward asked for it; restored the local version" in (
        shown_json["resolution"])
    assert [d["status"] for d in shown_json["detections"]] == ["resolved", "resolved"]
    assert open_conflict_count(s) == open_before - 2  # the document's and its signed record's
    record_conflict = json.loads(platsync(s, "conflicts", "show", ours["fructos_own"]["conflict_id"], "--json").stdout)
    assert record_conflict["status"] == "resolved" and f"with document {doc_id}" in record_conflict["resolution"]
    again = platsync(s, "conflicts", "resolve", meta["conflict_id"])
    assert again.returncode == 0 and "already resolved" in again.stdout


# -- the real stack -----------------------------------------------------------------------------

def stop_workers(s: Settings) -> None:
    for route in ("local_to_remote", "remote_to_local"):
        pid = read_pid(s.data_dir, f"worker-{route}")
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while any(read_pid(s.data_dir, f"worker-{r}") is not None for r in ("local_to_remote", "remote_to_local")):
        assert time.monotonic() < deadline, "workers did not stop"
        time.sleep(0.2)


def test_conflicts_on_the_running_stack_converge_and_are_listed_once(stack: Stack) -> None:
    s = stack.settings
    payload = s.data_dir / "conflict-docs.json"
    payload.write_text(json.dumps({"documents": [
        {"patient_id": "p-stack", "doc_type": "note", "title": f"stack {i}", "media_type": "text/plain",
         "content_text": f"stack body {i}", "signed_by": "dr"} for i in range(3)]}), encoding="utf-8")
    created = platsync(s, "call", "PRV_DOC_006", "--side", "local", "--file", str(payload))
    assert created.returncode == 0, created.stderr
    update_doc, delete_doc, approve_doc = json.loads(created.stdout)["written"]["meta"]["documents"]
    assert platsync(s, "wait-synced", "--timeout", "90").returncode == 0
    # An edit on the other side while connected fast-forwards (the real capture's before-image).
    with ReferenceApi(s, "remote") as remote:
        remote.call("PRV_DOC_007", update(approve_doc, "synced edit", "synced body"))
    assert platsync(s, "wait-synced", "--timeout", "90").returncode == 0
    listed = json.loads(platsync(s, "conflicts", "list", "--status", "all", "--json").stdout)
    assert [c for c in listed if c["row_id"] == approve_doc] == []
    stop_workers(s)
    with ReferenceApi(s, "local") as local, ReferenceApi(s, "remote") as remote:
        local.call("PRV_DOC_007", update(update_doc, "local edit", "local content"))
        remote.call("PRV_DOC_007", update(update_doc, "remote edit", "remote content"))
        local.call("PRV_DOC_007", update(delete_doc, "edited while deleted elsewhere"))
        remote.call("PRV_DOC_008", {"ids": [delete_doc]})
        local.call("PRV_DOC_009", {"documents": [{"id": approve_doc, "approved_by": "chief"}]})
        remote.call("PRV_DOC_007", update(approve_doc, "remote 1"))
        remote.call("PRV_DOC_007", update(approve_doc, "remote 2"))
    up = platsync(s, "up", "--detach", timeout=300)
    assert up.returncode == 0, up.stderr
    waited = platsync(s, "wait-synced", "--timeout", "120")
    assert waited.returncode == 0, waited.stderr
    docs = {}
    for doc_id in (update_doc, delete_doc, approve_doc):
        shown = {side: json.loads(platsync(s, "inspect", "--side", side, "--store", "meta", "--entity",
                                           "documents", "--id", doc_id).stdout) for side in ("local", "remote")}
        assert shown["local"] == shown["remote"]
        record_id = shown["local"]["record_id"]
        records = {side: json.loads(platsync(s, "inspect", "--side", side, "--store", "fructos_own", "--entity",
                                             "signed_records", "--id", record_id).stdout)
                   for side in ("local", "remote")}
        assert records["local"] == records["remote"]
        docs[doc_id] = (shown["local"], record_id)
    assert docs[delete_doc][0]["deleted"] is True
    assert (docs[approve_doc][0]["status"], docs[approve_doc][0]["version"]) == ("approved", 3)  # beat v4
    assert docs[approve_doc][0]["title"] == "synced edit"
    listed = platsync(s, "conflicts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    conflicts = json.loads(listed.stdout)
    ours = [c for c in conflicts if c["row_id"] in {update_doc, delete_doc, approve_doc}
            | {docs[d][1] for d in docs}]
    assert len(ours) == 6 and len({c["conflict_id"] for c in ours}) == 6  # 3 documents x (META + FRUCtoS)
    for c in ours:
        assert c["detected_on"] == ["local", "remote"] and c["status"] == "open"
        assert c["local_row"] and c["remote_row"] and c["local_row"] != c["remote_row"]
    rules = {(c["store"], c["row_id"]): (c["winner"], c["rule"]) for c in ours}
    assert rules[("meta", delete_doc)] == ("remote", "deleted beats live")
    assert rules[("meta", approve_doc)] == ("local", "approved beats unapproved")
    assert rules[("fructos_own", docs[approve_doc][1])] == ("local", "approved beats unapproved")
    # Resolve one: marked resolved on both sides and every store where it was recorded.
    target = next(c for c in ours if c["row_id"] == update_doc)
    resolved = platsync(s, "conflicts", "resolve", target["conflict_id"][:10], "--note", "checked with ward")
    assert resolved.returncode == 0, resolved.stderr
    after = {c["conflict_id"]: c for c in json.loads(platsync(s, "conflicts", "list", "--status", "all",
                                                              "--json").stdout)}
    assert after[target["conflict_id"]]["status"] == "resolved"
    assert after[target["conflict_id"]]["resolution"] == "checked with ward"
    still_open = json.loads(platsync(s, "conflicts", "list", "--json").stdout)
    assert target["conflict_id"] not in {c["conflict_id"] for c in still_open}
    shown = platsync(s, "conflicts", "show", target["conflict_id"])
    assert shown.returncode == 0 and "title" in shown.stdout and "resolved" in shown.stdout
    assert platsync(s, "conflicts", "show", "ffffffffffffffffffff").returncode == 3
    # Replaying both routes from the beginning re-delivers every version: no new conflict, no change.
    before = json.loads(platsync(s, "conflicts", "list", "--status", "all", "--json").stdout)
    rows_before = {d: platsync(s, "inspect", "--side", "local", "--store", "meta", "--entity", "documents",
                               "--id", d).stdout for d in docs}
    for route in ("local_to_remote", "remote_to_local"):
        replayed = platsync(s, "replay", route, "--to-beginning")
        assert replayed.returncode == 0 and "offset 0" in replayed.stdout, replayed.stderr
    assert platsync(s, "wait-synced", "--timeout", "120").returncode == 0
    after_replay = json.loads(platsync(s, "conflicts", "list", "--status", "all", "--json").stdout)
    assert after_replay == before
    for doc_id in docs:
        for side in ("local", "remote"):
            assert platsync(s, "inspect", "--side", side, "--store", "meta", "--entity", "documents", "--id",
                            doc_id).stdout == rows_before[doc_id]
