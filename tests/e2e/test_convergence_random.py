"""Randomized convergence: random API calls on both sides, random link cuts and ``kill -9``s (of one
process; of all the hospital's processes during a cut, then ``up``; of a postmaster with ``up`` at
once), then quiescence; afterwards every pair of stores the matrix links holds identical data, every
acknowledged write is present or lost a recorded conflict, and no serial number is duplicated.

Seeded and reproducible: ``PLATSYNC_CONVERGENCE_SEED=<n>`` replays a run (the default seed is
fixed); the seed and the whole operation history are printed when it fails. Bounded: at most
``STEPS`` operations and ``BUDGET_S`` seconds before quiescence.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from connectors.reference_api.service import ApiError, ReferenceApi
from infra.local.process import read_pid
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import platsync
from tests.support.snapshot import snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]

STEPS = 70
BUDGET_S = 150.0
DEFAULT_SEED = 20261122
VICTIMS = ("capture-local", "capture-remote", "worker-local_to_remote", "worker-remote_to_local",
           "pg-local", "pg-remote", "broker")
#: Stores the matrix links on both sides, with their synced tables.
LINKED = {"meta": ("plat_users", "patients", "staff", "documents"), "fructos_own": ("signed_records",)}


@dataclass
class Run:
    """Everything the run did, for the checks and for the failure report."""

    seed: int
    history: list[str] = field(default_factory=list)
    #: (store, table, id) -> highest version a call acknowledged, per side that made it.
    acked: dict[tuple[str, str, str], tuple[int, str]] = field(default_factory=dict)
    link_up: bool = True

    started: float = field(default_factory=time.monotonic)

    def log(self, line: str) -> None:
        self.history.append(f"{len(self.history):3d} {time.monotonic() - self.started:6.1f}s {line}")

    def report(self) -> str:
        return f"seed {self.seed} (replay: PLATSYNC_CONVERGENCE_SEED={self.seed})\n" + "\n".join(self.history)


def live_documents(settings: Settings, side: str) -> list[str]:
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM documents WHERE NOT deleted ORDER BY id")]


def versions(settings: Settings, side: str, written: dict[str, dict[str, list[str]]]) -> dict:
    """(store, table, id) -> version now on ``side`` for everything a call wrote there."""
    found = {}
    for store, tables in written.items():
        if store not in LINKED:  # keycloak (not called here), fructos_patient (cloud only)
            continue
        with psycopg.connect(libpq_dsn(settings, side, store)) as conn:
            for table, ids in tables.items():
                for row_id, version in conn.execute(f"SELECT id, version FROM {table} WHERE id = ANY(%s)", (ids,)):
                    found[(store, table, row_id)] = version
    return found


def api_call(run: Run, settings: Settings, rng: random.Random, patients: Sequence[str] = ()) -> None:
    """One random API call on a random side. With ``patients`` (the network run), documents are of those
    patients, registered with a random share state, and a call may change a document's share state."""
    side = rng.choice(("local", "remote"))
    kinds, weights = ("pat", "stf", "usr", "doc_new", "doc_upd", "doc_del", "doc_ok"), (2, 1, 1, 4, 4, 1, 2)
    if patients:  # more approvals and share changes: what reaches the shared stores and the subscribers
        kinds, weights = (*kinds, "doc_share"), (1, 1, 1, 4, 4, 1, 4, 3)
    kind = rng.choices(kinds, weights=weights)[0]
    tag = f"{side}-{rng.randrange(10**6)}"
    docs = live_documents(settings, side) if kind.startswith("doc_") and kind != "doc_new" else []
    if kind.startswith("doc_") and kind != "doc_new" and not docs:
        kind = "doc_new"
    target = rng.choice(docs) if docs else None
    flip = kind == "doc_share" and rng.random() < 0.5
    payloads: dict[str, tuple[str, dict[str, Any]]] = {
        "pat": ("PRV_PAT_001", {"family_name": f"姓{tag}", "given_name": "名", "birth_date": "1990-03-04",
                                "sex": "female", "institution_code": "1310000001"}),
        "stf": ("PRV_STF_001", {"staff_code": f"S{tag}", "display_name": "職員", "role": "nurse"}),
        "usr": ("PRV_USR_001", {"login_id": f"u{tag}", "display_name": "利用者", "institution_code": "1310000001"}),
        "doc_new": ("PRV_DOC_006", {"documents": [
            {"patient_id": rng.choice(patients) if patients else f"p{tag}", "doc_type": "note",
             "title": f"t{tag}-{i}", "media_type": "text/plain", "content_text": f"{tag} {i}", "signed_by": "dr",
             **({"share_state": rng.choice(("shared", "private"))} if patients else {})}
            for i in range(rng.randint(1, 4))]}),
        "doc_share": ("PRV_DOC_007", {"documents": [{"id": target, "signed_by": "dr",  # the author
                                                     "share_state": "private" if flip else "shared"}]}),
        "doc_upd": ("PRV_DOC_007", {"documents": [{"id": target, "title": f"upd {tag}",
                                                    "content_text": f"new {tag}", "signed_by": "dr2"}]}),
        "doc_del": ("PRV_DOC_008", {"ids": [target]}),
        "doc_ok": ("PRV_DOC_009", {"documents": [{"id": target, "approved_by": f"chief-{side}"}]}),
    }
    api_id, payload = payloads[kind]
    try:
        with ReferenceApi(settings, side) as api:
            result = api.call(api_id, payload)
    except ApiError as exc:  # e.g. the document was deleted meanwhile: refused, nothing written
        run.log(f"{side:6} {api_id} refused: {exc}")
        return
    for key, version in versions(settings, side, result["written"]).items():
        if version >= run.acked.get(key, (0, ""))[0]:
            run.acked[key] = (version, side)
    run.log(f"{side:6} {api_id} ok {json.dumps(result['written'], ensure_ascii=False)[:160]}")


def toggle_link(run: Run, settings: Settings) -> None:
    action = "up" if not run.link_up else "down"
    result = platsync(settings, "link", action)
    assert result.returncode == 0, result.stdout + result.stderr
    run.link_up = action == "up"
    run.log(f"link {action}")


def kill_and_restart(run: Run, stack: Stack, rng: random.Random) -> None:
    # A broker lost during a cut is re-captured at 'link up'; keep to single faults here.
    victims = [v for v in VICTIMS if run.link_up or v != "broker"]
    victim = rng.choice(victims)
    pid = read_pid(stack.settings.data_dir, victim)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    time.sleep(rng.uniform(0.2, 1.5))
    stack.up(say=lambda m: None)
    run.log(f"kill -9 {victim} (pid {pid}); up")


#: The hospital's processes on the embedded stack (the broker and the link stand in for the cloud).
HOSPITAL = ("pg-local", "keycloak-local", "capture-local", "worker-remote_to_local", "mode-local")


def restart_hospital_in_a_cut(run: Run, stack: Stack) -> None:
    """The hospital's server goes down hard during a cut and comes back: ``up`` must start it fully."""
    if run.link_up:
        toggle_link(run, stack.settings)
    for name in HOSPITAL:
        pid = read_pid(stack.settings.data_dir, name)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
    stack.up(say=lambda m: None)  # raises if the hospital cannot start while the link is down
    missing = [name for name in HOSPITAL if read_pid(stack.settings.data_dir, name) is None]
    assert not missing, f"not running after up in a cut: {missing}"
    run.log("hospital restarted during the cut (kill -9 of all its processes; up)")


def kill_postgres_then_up_at_once(run: Run, stack: Stack, rng: random.Random) -> None:
    """``kill -9`` of a PostgreSQL postmaster and ``up`` without a pause (its lock file is still there)."""
    victim = rng.choice(("pg-local", "pg-remote"))
    pid = read_pid(stack.settings.data_dir, victim)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    stack.up(say=lambda m: None)
    run.log(f"postmaster {victim} (pid {pid}) killed with signal 9; up at once")


def conflict_losers(settings: Settings) -> set[tuple[str, str, str, int]]:
    """(store, table, id, version) of every version that lost a recorded conflict, on either side."""
    losers = set()
    for side in ("local", "remote"):
        for store in LINKED:
            with psycopg.connect(libpq_dsn(settings, side, store)) as conn:
                if not conn.execute("SELECT to_regclass('platsync_conflict') IS NOT NULL").fetchone()[0]:
                    continue
                for table, row_id, winner, local_row, remote_row in conn.execute(
                        "SELECT table_name, row_id, winner, local_row, remote_row FROM platsync_conflict"):
                    loser = remote_row if winner == "local" else local_row
                    losers.add((store, table, row_id, int(loser["version"])))
    return losers


def check(run: Run, settings: Settings) -> None:
    snap = snapshot(settings)
    for store, tables in LINKED.items():
        for table in tables:
            local, remote = snap[("local", store, table)], snap[("remote", store, table)]
            assert set(local) == set(remote), f"{store}.{table}: ids only on one side: {set(local) ^ set(remote)}"
            differing = sorted(i for i in local if local[i] != remote[i])
            assert not differing, f"{store}.{table}: differs: {[(local[i], remote[i]) for i in differing[:2]]}"
    losers = conflict_losers(settings)
    for (store, table, row_id), (version, side) in run.acked.items():
        rows = snap[("local", store, table)]
        assert row_id in rows, f"acknowledged {store}.{table} {row_id} (v{version} on {side}) is lost"
        with psycopg.connect(libpq_dsn(settings, "local", store)) as conn:
            final = conn.execute(f"SELECT version FROM {table} WHERE id = %s", (row_id,)).fetchone()[0]
        assert final >= version or (store, table, row_id, version) in losers, (
            f"acknowledged {store}.{table} {row_id} v{version} from {side} was overwritten by v{final} "
            "without a recorded conflict")
    with psycopg.connect(libpq_dsn(settings, "local", "meta")) as conn:
        for table, column in (("patients", "patient_number"), ("documents", "document_number")):
            dupes = conn.execute(f"SELECT {column}, count(*) FROM {table} WHERE {column} IS NOT NULL "
                                 f"GROUP BY 1 HAVING count(*) > 1").fetchall()
            assert not dupes, f"duplicated {column}: {dupes}"


def test_random_calls_cuts_and_kills_converge(stack: Stack) -> None:
    seed = int(os.environ.get("PLATSYNC_CONVERGENCE_SEED", DEFAULT_SEED))
    rng = random.Random(seed)
    run = Run(seed)
    s = stack.settings
    started = time.monotonic()
    try:
        for _ in range(STEPS):
            if time.monotonic() - started > BUDGET_S:
                run.log("time budget reached")
                break
            roll = rng.random()
            if roll < 0.06:
                toggle_link(run, s)
            elif roll < 0.10:
                kill_and_restart(run, stack, rng)
            elif roll < 0.12:
                restart_hospital_in_a_cut(run, stack)
            elif roll < 0.14:
                kill_postgres_then_up_at_once(run, stack, rng)
            else:
                api_call(run, s, rng)
        # Every run covers every fault kind, whatever the seed drew (and calls after a cut).
        for marker, fault, calls_after in (
                (" link down", lambda: toggle_link(run, s), 5),
                (" kill -9 ", lambda: kill_and_restart(run, stack, rng), 0),
                ("hospital restarted during the cut", lambda: restart_hospital_in_a_cut(run, stack), 3),
                ("up at once", lambda: kill_postgres_then_up_at_once(run, stack, rng), 0)):
            if not any(marker in line for line in run.history):
                fault()
                for _ in range(calls_after):
                    api_call(run, s, rng)
        if not run.link_up:
            toggle_link(run, s)
        stack.up(say=lambda m: None)
        pending = wait_synced(s, 300)
        assert pending == [], pending
        run.log(f"quiescent after {time.monotonic() - started:.0f}s")
        check(run, s)
        kills, cuts = (sum(word in h for h in run.history) for word in (" kill -9 ", " link down"))
        print(f"seed {seed}: {len(run.history)} operations, {len(run.acked)} acknowledged rows checked, "
              f"{kills} kills, {cuts} cuts, {len(conflict_losers(s))} conflict losers recorded")
    except BaseException:
        print(run.report())
        if not run.link_up:
            platsync(s, "link", "up")
        raise
