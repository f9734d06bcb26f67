"""Randomized convergence on the regional topology (issue 14): random API calls on every node (each hospital
and its stores in the cloud), cuts of every link (each hospital's, the regional server's), ``kill -9`` of any
process (a link's captures, workers, mode servers, a hospital's PostgreSQL; the cloud's PostgreSQL, the
region's, the broker, the link proxy), then quiescence. Afterwards:

- every linked pair of stores is identical, no acknowledged write is lost unless it lost a recorded conflict,
  no number repeats within an institution (tests/e2e/test_convergence_random.py's checks, per home link);
- the regional server holds exactly what the cloud's shared store holds;
- tenant isolation held: no record of one institution is in any store of the other, every record of the
  shared stores belongs to exactly one institution, and every number a hospital drew lies in its own block;
- sharing (issue 15): documents are registered shared or private and their share states change at random,
  hospitals subscribe to and unsubscribe from patients at random; the shared stores and every subscriber
  hold exactly what share states and subscriptions entitle them to (tests/e2e/network/sharing_checks.py).

Seeded and reproducible: ``PLATSYNC_CONVERGENCE_SEED=<n>`` replays a run (the default seed is fixed); the
seed and the whole history are printed when it fails. Bounded by ``STEPS`` operations and ``BUDGET_S``.
"""

from __future__ import annotations

import os
import random
import signal
import time

import psycopg
import pytest

from infra.local.network import Network
from infra.local.process import read_pid
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.e2e.network.conftest import HOSPITALS, REGION
from tests.e2e.network.sharing_checks import wait_entitled
from tests.e2e.test_convergence_random import LINKED, Run, api_call, check
from tests.support.helpers import platsync

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]

STEPS = 60
BUDGET_S = 150.0
DEFAULT_SEED = 20261204
#: Processes of one home link's stack (in its data dir), the replica worker feeding the region included.
LINK_VICTIMS = ("capture-local", "capture-remote", "worker-local_to_remote", "worker-remote_to_local",
                "worker-local_to_region-1", "mode-local", "pg-local")
#: Processes the links share (in the network's data dir).
SHARED_VICTIMS = ("pg-remote", f"pg-{REGION}", "link", "broker")
#: The patients of the run's documents: few, so that both institutions write for the same patients.
PATIENTS = ("p-rnd-1", "p-rnd-2", "p-rnd-3")


class Faults:
    """The network-level faults of a run: which gates are cut, and the log."""

    def __init__(self, network: Network, run: Run) -> None:
        self.network = network
        self.run = run
        self.cut: set[str] = set()

    def toggle(self, gate: str) -> None:
        action = "up" if gate in self.cut else "down"
        result = platsync(self.network.settings, "link", action, "--node", gate, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        (self.cut.discard if action == "up" else self.cut.add)(gate)
        self.run.log(f"link {action} --node {gate}")

    def kill_and_up(self, rng: random.Random) -> None:
        shared = [v for v in SHARED_VICTIMS if v != "broker" or not self.cut]  # single faults only, as on 2 sites
        if rng.random() < 0.4:
            where, victim = self.network.settings.data_dir, rng.choice(shared)
        else:
            hospital = rng.choice(HOSPITALS)
            where, victim = self.network.link(hospital).data_dir, rng.choice(LINK_VICTIMS)
        pid = read_pid(where, victim)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        time.sleep(rng.uniform(0.2, 1.5))
        self.network.up(say=lambda m: None)
        self.run.log(f"kill -9 {victim} in {where.name} (pid {pid}); up")


class Subscriptions:
    """The subscriptions the run asked for (through the real CLI), and the log."""

    def __init__(self, network: Network, run: Run) -> None:
        self.network = network
        self.run = run
        self.held: set[tuple[str, str]] = set()

    def toggle(self, rng: random.Random) -> None:
        node, patient = rng.choice(HOSPITALS), rng.choice(PATIENTS)
        action = "remove" if (node, patient) in self.held else "add"
        done = platsync(self.network.settings, "subscriptions", action, "--node", node, "--patient", patient)
        assert done.returncode == 0, done.stdout + done.stderr
        (self.held.discard if action == "remove" else self.held.add)((node, patient))
        self.run.log(f"subscriptions {action} --node {node} --patient {patient}")


def ids(link: Settings, side: str) -> set[str]:
    """Every row id of the linked stores on one side of a home link."""
    found: set[str] = set()
    for store, tables in LINKED.items():
        with psycopg.connect(libpq_dsn(link, side, store)) as conn:
            for table in tables:
                found |= {str(r[0]) for r in conn.execute(f"SELECT id FROM {table}")}
    return found


def shared_rows(link: Settings, node: str) -> dict[str, tuple[object, ...]]:
    with psycopg.connect(libpq_dsn(link, node, "fructos_patient")) as conn:
        return {str(r[0]): tuple(r) for r in conn.execute(
            "SELECT id, version, deleted, content_hash, approved, updated_at, content FROM signed_records")}


SERIAL_COLUMNS = {"patient_numbers": ("patients", "patient_number"),
                  "document_numbers": ("documents", "document_number")}


def numbers(link: Settings, serial: str) -> list[int]:
    """Every (digit-only) number of a serial in the hospital's META: its own and the cloud's, synced."""
    table, column = SERIAL_COLUMNS[serial]
    with psycopg.connect(libpq_dsn(link, "local", "meta")) as conn:
        return [int(r[0]) for r in conn.execute(f"SELECT {column} FROM {table} WHERE {column} ~ '^[0-9]+$'")]


def check_isolation(network: Network) -> None:
    links = {h: network.link(h) for h in HOSPITALS}
    held = {h: ids(link, "local") | ids(link, "remote") for h, link in links.items()}
    assert held["hosp-a"] and held["hosp-b"]
    leaked = held["hosp-a"] & held["hosp-b"]
    assert not leaked, f"records held by both institutions: {sorted(leaked)[:5]}"
    cloud = shared_rows(links["hosp-a"], "remote")
    homeless = [i for i in cloud if sum(i in held[h] for h in HOSPITALS) != 1]
    assert not homeless, f"shared records without exactly one home institution: {homeless[:5]}"
    root = network.topology.root
    for hospital, link in links.items():
        node = network.topology.node(hospital)
        for serial in SERIAL_COLUMNS:  # drawn at the hospital from its block, or in the cloud from the cloud's
            allowed = (node.numbers(serial), root.numbers(serial))
            stray = [n for n in numbers(link, serial) if not any(r.lo <= n <= r.hi for r in allowed)]
            assert not stray, f"{hospital} holds {serial} outside its block and the cloud's: {stray[:5]}"


def test_random_calls_cuts_and_kills_on_the_regional_network_converge(network: Network) -> None:
    seed = int(os.environ.get("PLATSYNC_CONVERGENCE_SEED", DEFAULT_SEED))
    rng = random.Random(seed)
    runs = {h: Run(seed) for h in HOSPITALS}  # acknowledged writes, per institution
    log = Run(seed)
    faults = Faults(network, log)
    subscriptions = Subscriptions(network, log)
    gates = [*HOSPITALS, REGION]
    started = time.monotonic()
    try:
        for _ in range(STEPS):
            if time.monotonic() - started > BUDGET_S:
                log.log("time budget reached")
                break
            roll = rng.random()
            if roll < 0.10:
                faults.toggle(rng.choice(gates))
            elif roll < 0.17:
                faults.kill_and_up(rng)
            elif roll < 0.25:
                subscriptions.toggle(rng)
            else:
                hospital = rng.choice(HOSPITALS)
                # at the hospital or in the cloud for it
                api_call(runs[hospital], network.link(hospital), rng, PATIENTS)
                log.log(f"[{hospital}] {runs[hospital].history[-1]}")
        for gate in gates:  # every run cuts every link at least once, with calls during the cut
            if not any(f"link down --node {gate}" in line for line in log.history):
                if gate not in faults.cut:
                    faults.toggle(gate)
                for _ in range(3):
                    hospital = rng.choice(HOSPITALS)
                    api_call(runs[hospital], network.link(hospital), rng, PATIENTS)
        if not any(" kill -9 " in line for line in log.history):
            faults.kill_and_up(rng)
        for gate in sorted(faults.cut):
            faults.toggle(gate)
        network.up(say=lambda m: None)
        for hospital in HOSPITALS:
            pending = wait_synced(network.link(hospital), 300)
            assert pending == [], f"{hospital}: {pending}"
        log.log(f"quiescent after {time.monotonic() - started:.0f}s")
        for hospital in HOSPITALS:
            check(runs[hospital], network.link(hospital))
        a = network.link("hosp-a")
        assert shared_rows(a, REGION) == shared_rows(a, "remote"), "the region differs from the cloud's shared store"
        check_isolation(network)
        shared, copies = wait_entitled({h: network.link(h) for h in HOSPITALS}, REGION, subscriptions.held)
        kills, cuts = (sum(word in h for h in log.history) for word in (" kill -9 ", "link down"))
        print(f"seed {seed}: {len(log.history)} operations, "
              f"{sum(len(r.acked) for r in runs.values())} acknowledged rows checked, {kills} kills, {cuts} cuts, "
              f"{shared} shared documents, {len(subscriptions.held)} subscriptions, {copies} subscribed copies")
    except BaseException:
        print(log.report())
        for gate in sorted(faults.cut):
            platsync(network.settings, "link", "up", "--node", gate)
        raise
