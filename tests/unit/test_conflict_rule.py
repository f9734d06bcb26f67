"""The conflict rule (connectors/sinks/conflict_rule.py): ordering, decisions, and convergence of two
simulated sides under random concurrent edits, reorderings across rows, duplicates and replays."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.sinks import conflict_rule as rule

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def doc(version: int = 1, *, seconds: float = 0, deleted: bool = False, status: str = "registered",
        content_hash: str = "aa" * 32, title: str = "紹介状") -> dict[str, Any]:
    return {"id": "doc-1", "patient_id": "p-1", "doc_type": "referral", "title": title, "record_id": "rec-1",
            "content_hash": content_hash, "status": status, "approved_by": None, "approved_at": None,
            "version": version, "deleted": deleted, "updated_at": T0 + timedelta(seconds=seconds)}


def record(version: int = 1, *, approved: bool = False, content: bytes = b"body") -> dict[str, Any]:
    return {"id": "rec-1", "entity": "document", "subject_id": "doc-1", "media_type": "text/plain",
            "content": content, "content_hash": "bb" * 32, "signed_by": "dr", "approved": approved,
            "version": version, "deleted": False, "updated_at": T0}


def key(row: dict[str, Any]) -> rule.RankKey:
    return rule.rank_key(row)


# -- ordering -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("winner", "loser", "why"), [
    (doc(2, deleted=True), doc(3, title="edited"), "deleted beats live"),
    (doc(2, status="approved"), doc(5), "approved beats unapproved"),
    (record(2, approved=True), record(4), "approved beats unapproved"),
    (doc(3), doc(2, seconds=99), "higher version"),
    (doc(2, content_hash="ff" * 32), doc(2, content_hash="0f" * 32, seconds=99), "higher content hash"),
    (doc(2, seconds=2), doc(2, seconds=1, title="zzz"), "later updated_at"),
])
def test_each_rule_decides_in_order(winner: dict[str, Any], loser: dict[str, Any], why: str) -> None:
    assert rule.compare(key(winner), key(loser)) == rule.Verdict(True, why)
    assert rule.compare(key(loser), key(winner)) == rule.Verdict(False, why)


def test_row_hash_breaks_the_last_tie_and_the_order_is_total() -> None:
    a, b = doc(2, title="a"), doc(2, title="b")
    verdict = rule.compare(key(a), key(b))
    assert verdict.rule == "higher row hash"
    assert verdict.a_wins == (rule.row_sha256(a) > rule.row_sha256(b))
    assert rule.compare(key(a), key(a)) == rule.Verdict(False, "identical")


def test_canonical_form_ignores_time_zone_and_binary_container() -> None:
    tokyo = timezone(timedelta(hours=9))
    a = {**record(), "updated_at": T0, "content": b"\x00\xff"}
    b = {**record(), "updated_at": T0.astimezone(tokyo), "content": memoryview(b"\x00\xff")}
    assert rule.canonical_json(a) == rule.canonical_json(b)
    assert '"content":"AP8="' in rule.canonical_json(a) and '"updated_at":"2026-11-22T09:00:00.000000Z"' in (
        rule.canonical_json(a))
    assert rule.state_of({"version": 1, "updated_at": "2026-11-22T18:00:00+09:00"}) == rule.State(1, T0)


def test_tables_without_content_hash_or_approval_rank_by_version_then_time() -> None:
    staff = {"id": "s", "staff_code": "S", "display_name": "x", "role": "doctor", "username": None,
             "version": 2, "deleted": False, "updated_at": T0}
    k = key(staff)
    assert (k.deleted, k.approved, k.version, k.content_hash) == (False, False, 2, "")


def test_conflict_id_names_the_lost_version_of_one_row() -> None:
    lost = key(doc(2, title="local"))
    cid = rule.conflict_id("meta", "documents", "doc-1", lost)
    assert len(cid) == 20 and int(cid, 16) >= 0
    assert cid == rule.conflict_id("meta", "documents", "doc-1", key(doc(2, title="local")))
    assert cid != rule.conflict_id("fructos_own", "documents", "doc-1", lost)
    assert cid != rule.conflict_id("meta", "documents", "doc-2", lost)
    assert cid != rule.conflict_id("meta", "documents", "doc-1", key(doc(2, title="remote")))


# -- decisions ----------------------------------------------------------------------------------

V1, L2, R2 = doc(1), doc(2, seconds=1, title="local edit"), doc(2, seconds=2, title="remote edit")


def test_insert_same_and_replay() -> None:
    assert rule.decide(key(V1), None, None) == rule.Decision(rule.INSERT, True, received=key(V1))
    assert rule.decide(key(V1), key(V1), key(V1)) == rule.Decision(rule.SAME, False)
    replay = rule.decide(key(V1), key(L2), key(V1))  # V1 again after this side built L2 on it
    assert replay == rule.Decision(rule.REPLAY, False)


def test_fast_forward_by_before_image_or_last_received() -> None:
    by_before = rule.decide(key(R2), key(V1), None, {rule.state_of(V1)})
    assert by_before == rule.Decision(rule.FAST_FORWARD, True, received=key(R2))
    by_received = rule.decide(key(doc(3, seconds=3)), key(R2), key(R2))  # snapshot: no before-image
    assert (by_received.kind, by_received.apply) == (rule.FAST_FORWARD, True)


def test_concurrent_edits_are_a_conflict_decided_the_same_way_on_both_sides() -> None:
    on_local = rule.decide(key(R2), key(L2), key(V1), {rule.state_of(V1)})
    on_remote = rule.decide(key(L2), key(R2), None, {rule.state_of(V1)})
    assert on_local.kind == on_remote.kind == rule.CONFLICT
    assert on_local.rule == on_remote.rule == "later updated_at"
    assert (on_local.apply, on_remote.apply) == (True, False)  # both keep R2
    assert on_local.received == key(R2) and on_remote.received == key(L2)


def test_deleted_lower_version_beats_live_higher_version() -> None:
    deleted, edited = doc(2, deleted=True, seconds=1), doc(3, seconds=5)
    decision = rule.decide(key(deleted), key(edited), None, {rule.state_of(V1)})
    assert (decision.kind, decision.apply, decision.rule) == (rule.CONFLICT, True, "deleted beats live")


def test_edit_after_a_lower_version_winner_is_not_mistaken_for_a_replay() -> None:
    """Why the replay test compares ordering keys, not versions: after an approved v2 beat an
    unapproved v4, the next edit on that side is v3, below the v4 received earlier."""
    unapproved_v4, approved_v2 = doc(4, seconds=4), doc(2, seconds=1, status="approved")
    edit_v3 = doc(3, seconds=9, status="approved", title="after the conflict")
    decision = rule.decide(key(edit_v3), key(approved_v2), key(unapproved_v4), {rule.state_of(approved_v2)})
    assert (decision.kind, decision.apply) == (rule.FAST_FORWARD, True)


def test_superseded_names_the_open_losses_an_incoming_version_descends_from() -> None:
    lost = {"c1": rule.state_of(L2), "c2": rule.state_of(R2)}
    assert rule.superseded(lost, {rule.state_of(L2), rule.state_of(V1)}) == ["c1"]
    assert rule.superseded(lost, {rule.state_of(V1)}) == []


def test_a_copy_is_its_originals_state_only_with_the_same_updated_at() -> None:
    """Issue 13 item 5: remote fructos_patient holds a copy of the remote fructos_own record; the
    next local change of that record carries the fructos_own state as its before-image."""
    original = record(2, approved=True)
    built_on_it = {**record(3, approved=True), "updated_at": T0 + timedelta(seconds=5)}
    since = {rule.state_of(original)}
    same = rule.decide(key(built_on_it), key(dict(original)), None, since)
    assert (same.kind, same.apply) == (rule.FAST_FORWARD, True)
    restamped = {**original, "updated_at": T0 + timedelta(milliseconds=2)}  # a second clock read
    assert rule.decide(key(built_on_it), key(restamped), None, since).kind == rule.CONFLICT


def test_a_store_that_missed_states_keeps_the_descendant_but_records_no_conflict() -> None:
    """fructos_patient gets PRV_DOC_009, not the PRV_DOC_007 between: v4 (built on v3) meets v2."""
    from connectors.sinks.postgres_rows import records_conflicts

    v2 = record(2, approved=True)
    v3 = {**record(3, approved=True, content=b"edit"), "updated_at": T0 + timedelta(seconds=3)}
    v4 = {**record(4, approved=True, content=b"edit"), "updated_at": T0 + timedelta(seconds=4)}
    decision = rule.decide(key(v4), key(v2), None, {rule.state_of(v3)})
    assert (decision.kind, decision.apply) == (rule.CONFLICT, True)  # undetectable, but v4 is kept
    assert {s: records_conflicts(s) for s in ("meta", "fructos_own", "fructos_patient")} == {
        "meta": True, "fructos_own": True, "fructos_patient": False}


def test_module_is_pure() -> None:
    code = ("import sys, connectors.sinks.conflict_rule\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('psycopg', 'sqlalchemy', 'socket', "
            "'confluent_kafka', 'faust')]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})


# -- convergence: two simulated sides --------------------------------------------------------------

@dataclass
class Side:
    name: str
    clock_skew: float
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: dict[str, rule.RankKey] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)  # every conflict detected here
    lost_here: dict[str, tuple[str, rule.State]] = field(default_factory=dict)  # open: other side's version lost
    open: set[str] = field(default_factory=set)
    sent: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)

    def api_write(self, row_id: str, rng: random.Random, now: float) -> dict[str, Any] | None:
        """One API call on a live row, following the row rules (version + 1, no un-delete)."""
        old = self.rows[row_id]
        if old["deleted"]:
            return None
        change = rng.choice(["update", "update", "approve", "delete"])
        new = {**old, "version": old["version"] + 1,
               "updated_at": T0 + timedelta(seconds=now + self.clock_skew)}
        if change == "update":
            new["title"] = f"{self.name}-{rng.randrange(3)}"
            if rng.random() < 0.5:
                new["content_hash"] = f"{rng.randrange(4):064x}"
        elif change == "approve":
            new["status"] = "approved"
        else:
            new["deleted"] = True
        self.rows[row_id] = new
        self.sent.append((new, old))
        return new

    def apply(self, row: dict[str, Any], before: dict[str, Any] | None) -> None:
        """What the sink does with one incoming state (and its conflict bookkeeping)."""
        current = self.rows.get(row["id"])
        known = {rule.state_of(before)} if before else set()
        decision = rule.decide(key(row), None if current is None else key(current),
                               self.received.get(row["id"]), known)
        if decision.kind in (rule.CONFLICT, rule.FAST_FORWARD) and known:
            lost = {cid: state for cid, (rid, state) in self.lost_here.items() if rid == row["id"]}
            for cid in rule.superseded(lost, known):
                del self.lost_here[cid]
                self.open.discard(cid)
        if decision.kind == rule.CONFLICT:
            assert current is not None
            loser = current if decision.apply else row
            cid = rule.conflict_id("meta", "documents", row["id"], key(loser))
            self.conflicts.add(cid)
            self.open.add(cid)
            if not decision.apply:
                self.lost_here[cid] = (row["id"], rule.state_of(row))
        if decision.received is not None:
            self.received[row["id"]] = decision.received
        if decision.apply:
            self.rows[row["id"]] = row


@pytest.mark.parametrize("seed", range(400))
def test_two_sides_converge_to_the_greatest_state_under_random_concurrent_edits(seed: int) -> None:
    rng = random.Random(seed)
    local, remote = Side("local", rng.uniform(-5, 5)), Side("remote", rng.uniform(-5, 5))
    ids = [f"doc-{i}" for i in range(3)]
    for i, row_id in enumerate(ids):  # created on one side and synced before the cut
        row = {**doc(1), "id": row_id}
        (local if i % 2 else remote).rows[row_id] = row
        (remote if i % 2 else local).apply(row, None)
    created: list[dict[str, Any]] = [dict(r) for r in local.rows.values()]
    queues: dict[str, list[int]] = {"local": [], "remote": []}  # per sender: indexes not yet delivered
    delivered: dict[str, int] = {"local": 0, "remote": 0}
    now = 0.0
    for _ in range(rng.randint(5, 40)):
        now += rng.uniform(0, 2)
        sender = rng.choice([local, remote])
        receiver = remote if sender is local else local
        action = rng.random()
        if action < 0.5:
            written = sender.api_write(rng.choice(ids), rng, now)
            if written is not None:
                created.append(written)
                queues[sender.name].append(len(sender.sent) - 1)
        elif action < 0.85 and queues[sender.name]:  # the link delivers the sender's log in order
            index = queues[sender.name].pop(0)
            receiver.apply(*sender.sent[index])
            delivered[sender.name] = index + 1
        elif delivered[sender.name]:  # a duplicate / replay of something already delivered
            receiver.apply(*sender.sent[rng.randrange(delivered[sender.name])])
    for sender, receiver in ((local, remote), (remote, local)):  # the link comes back for good
        for index in queues[sender.name]:
            receiver.apply(*sender.sent[index])
    assert local.rows == remote.rows
    for row_id in ids:
        candidates = [r for r in created if r["id"] == row_id]
        assert local.rows[row_id] == max(candidates, key=key)
    # Both sides list the same open conflicts (each detection of a lost version has one id, and
    # losses that a later version of the same side built on are superseded).
    assert local.open == remote.open
    assert local.open <= local.conflicts and remote.open <= remote.conflicts


@pytest.mark.parametrize("seed", range(100))
def test_one_edit_per_side_gives_the_same_conflict_ids_on_both_sides(seed: int) -> None:
    """Each side edits each row at most once during the cut; deliveries interleave across rows and
    repeat. Both sides keep the same rows, and both record exactly the same conflicts."""
    rng = random.Random(seed)
    local, remote = Side("local", rng.uniform(-5, 5)), Side("remote", rng.uniform(-5, 5))
    ids = [f"doc-{i}" for i in range(4)]
    for row_id in ids:
        local.rows[row_id] = remote.rows[row_id] = {**doc(1), "id": row_id}
    both_edited = set()
    for row_id in ids:
        edited_by = [s for s in (local, remote) if rng.random() < 0.7]
        for side in edited_by:
            side.api_write(row_id, rng, rng.uniform(0, 10))
        if len(edited_by) == 2:
            both_edited.add(row_id)
    deliveries = [(remote, msg) for msg in local.sent] + [(local, msg) for msg in remote.sent]
    deliveries += rng.sample(deliveries, k=len(deliveries) // 2)  # duplicates
    rng.shuffle(deliveries)  # rows interleave; each side sent one state per row, so order holds per row
    for receiver, msg in deliveries:
        receiver.apply(*msg)
    assert local.rows == remote.rows
    assert local.conflicts == remote.conflicts == local.open and len(local.conflicts) == len(both_edited)


def test_simultaneous_edit_and_delete_is_recorded_once_on_each_side_with_one_id() -> None:
    local, remote = Side("local", 0), Side("remote", 0)
    local.rows["doc-1"], remote.rows["doc-1"] = doc(1), doc(1)
    edited = {**doc(2, seconds=3), "title": "edited"}
    local.rows["doc-1"], local.sent = edited, [(edited, doc(1))]
    deleted = doc(2, seconds=1, deleted=True)
    remote.rows["doc-1"], remote.sent = deleted, [(deleted, doc(1))]
    for _ in range(2):  # the second round is a redelivery of both: nothing more happens
        remote.apply(*local.sent[0])
        local.apply(*remote.sent[0])
        assert local.rows == remote.rows == {"doc-1": deleted}
        assert local.conflicts == remote.conflicts and len(local.conflicts) == 1
