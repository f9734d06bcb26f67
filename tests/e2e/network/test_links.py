"""Home links of a network on the embedded stack: one cloud, two hospitals (issue 14; the package's network,
tests/e2e/network/conftest.py, whose two hospitals' home links go straight to the cloud as in
infra/topologies/two_hospitals.toml).

Each hospital syncs with its own stores in the cloud and nowhere else; every topic is scanned for the
other institution's records; one hospital's link is cut alone while the other keeps syncing; the CLI
addresses nodes by their ids; a hospital joins with its records and leaves.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from connectors.reference_api.service import ReferenceApi
from infra.local.databases import postgres_instance, provision_side
from infra.local.link import set_link, wait_enforced
from infra.local.network import Network
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.topology.load import load_topology
from tests.e2e.network.conftest import HOSPITALS, TOPOLOGY, topic_values
from tests.support.helpers import platsync

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def new_staff(link: Settings, side: str, marker: str) -> str:
    with ReferenceApi(link, side) as api:
        result = api.call("PRV_STF_001", {"staff_code": f"S-{marker[:8]}", "display_name": marker, "role": "nurse"})
    return str(result["written"]["meta"]["staff"][0])


def staff_names(link: Settings, side: str) -> set[str]:
    with psycopg.connect(libpq_dsn(link, side, "meta")) as conn:
        return {row[0] for row in conn.execute("SELECT display_name FROM staff")}


def synced(link: Settings) -> None:
    assert wait_synced(link, 120) == [], f"link {link.network_link} did not sync"


def test_each_hospital_syncs_with_its_own_cloud_stores_only(network: Network) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    made = {("a", "local"): f"A-local-{uuid.uuid4().hex}", ("a", "remote"): f"A-cloud-{uuid.uuid4().hex}",
            ("b", "local"): f"B-local-{uuid.uuid4().hex}"}
    new_staff(a, "local", made["a", "local"])
    new_staff(a, "remote", made["a", "remote"])
    new_staff(b, "local", made["b", "local"])
    synced(a)
    synced(b)
    a_names = {side: staff_names(a, side) for side in ("local", "remote")}
    b_names = {side: staff_names(b, side) for side in ("local", "remote")}
    assert {made["a", "local"], made["a", "remote"]} <= a_names["local"] & a_names["remote"]
    assert made["b", "local"] in b_names["local"] & b_names["remote"]
    for side in ("local", "remote"):  # no record of one institution in any store of the other
        assert not any(n.startswith("A-") for n in b_names[side]), b_names[side]
        assert not any(n.startswith("B-") for n in a_names[side]), a_names[side]
    with psycopg.connect(libpq_dsn(a, "remote", "meta")) as conn:  # the cloud keeps them in separate databases
        assert conn.execute("SELECT current_database()").fetchone() == ("meta_hosp_a",)


def test_no_topic_of_a_link_carries_the_other_institution_s_records(network: Network) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    markers = {"hosp-a": f"A-scan-{uuid.uuid4().hex}", "hosp-b": f"B-scan-{uuid.uuid4().hex}"}
    new_staff(a, "local", markers["hosp-a"])
    new_staff(b, "remote", markers["hosp-b"])  # written in the cloud, for hospital B
    synced(a)
    synced(b)
    admin = AdminClient(client_config(network.settings, "platsync-test-admin"))
    topics = sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith("platsync."))
    plan = network.plan  # what 'platsync access --topology' grants: exactly the topics the network uses
    planned = {t for e in plan.endpoints for t in plan.topics_of("platsync", e.id)}
    planned |= {plan.dead_letter_topic("platsync", r.name) for r in plan.routes}
    planned |= {plan.heartbeat_topic("platsync", e.id) for e in plan.endpoints if e.role != "replica"}  # no modes
    planned |= {f"platsync.{h}.broker-incarnation" for h in HOSPITALS}
    planned |= set(plan.subscription_topics("platsync"))  # each hospital's feed and dead letters, the fan-out's
    assert set(topics) == planned, (set(topics) ^ planned)
    seen: dict[str, set[str]] = {h: set() for h in HOSPITALS}
    # The fan-out's dead letters are the cloud's (captured events of any link it could not decode): only the
    # fan-out and the operator may touch them (the ACLs); every other topic belongs to one link.
    # So are the patient index's (each common server's declarations, the indexer's dead letters): only the
    # declarers and the indexer may touch them, and they carry ids, never content.
    cloud_only = {plan.fanout_dead_letter_topic("platsync"), plan.indexer_dead_letter_topic("platsync"),
                  *(plan.index_topic("platsync", s) for s in plan.common_servers())}
    for topic in set(topics) - cloud_only:
        assert any(topic.startswith(f"platsync.{h}.") for h in HOSPITALS), f"topic {topic} belongs to no link"
    for topic, value in topic_values(network.settings, sorted(set(topics) - cloud_only)):
        owner = next(h for h in HOSPITALS if topic.startswith(f"platsync.{h}."))
        for hospital, marker in markers.items():
            if marker.encode() in value:
                seen[owner].add(hospital)
    assert seen == {"hosp-a": {"hosp-a"}, "hosp-b": {"hosp-b"}}, seen


def test_one_link_is_cut_alone(network: Network) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    set_link(a, False, note="test")
    try:
        assert wait_enforced(a, False) is not None
        a_marker, b_marker = f"A-cut-{uuid.uuid4().hex}", f"B-cut-{uuid.uuid4().hex}"
        new_staff(a, "local", a_marker)
        new_staff(b, "local", b_marker)
        synced(b)  # hospital B keeps syncing while A is cut off
        assert b_marker in staff_names(b, "remote")
        time.sleep(3)
        assert a_marker not in staff_names(a, "remote"), "a change crossed a cut link"
    finally:
        set_link(a, True, note="test")
    assert wait_enforced(a, True) is not None
    synced(a)
    assert a_marker in staff_names(a, "remote")


def test_the_cli_addresses_the_network_s_nodes(network: Network, tmp_path: Path) -> None:
    payload = tmp_path / "staff.json"
    marker = f"B-cli-{uuid.uuid4().hex}"
    payload.write_text(json.dumps({"staff_code": "S-CLI", "display_name": marker, "role": "doctor"}))
    made = platsync(network.settings, "call", "PRV_STF_001", "--node", "remote.hosp-b", "--file", str(payload))
    assert made.returncode == 0, made.stderr
    staff_id = json.loads(made.stdout)["written"]["meta"]["staff"][0]
    assert platsync(network.settings, "wait-synced", "--timeout", "120", timeout=180).returncode == 0
    shown = platsync(network.settings, "inspect", "--node", "hosp-b", "--store", "meta", "--entity", "staff",
                     "--id", str(staff_id))
    assert shown.returncode == 0 and json.loads(shown.stdout)["display_name"] == marker, shown.stderr
    absent = platsync(network.settings, "inspect", "--node", "hosp-a", "--store", "meta", "--entity", "staff",
                      "--id", str(staff_id))
    assert absent.returncode == 3
    unknown = platsync(network.settings, "call", "PRV_STF_001", "--node", "local", "--file", str(payload))
    assert unknown.returncode == 2 and "known: hosp-a, remote.hosp-a, hosp-b, remote.hosp-b" in unknown.stderr
    status = platsync(network.settings, "status")
    assert "=== home link hosp-a" in status.stdout and "=== home link hosp-b" in status.stdout, status.stdout
    assert status.returncode == 0, status.stdout + status.stderr
    links = platsync(network.settings, "link", "status")
    assert links.returncode == 0 and "hosp-a: link up" in links.stdout and "hosp-b: link up" in links.stdout


def test_a_hospital_joins_with_the_records_it_holds_and_leaves(network: Network, tmp_path: Path) -> None:
    """Runs last: it grows the module's network by hospital C, then C leaves again."""
    grown_file = tmp_path / "three_hospitals.toml"
    grown_file.write_text(TOPOLOGY.read_text() + '\n[[nodes]]\nid = "hosp-c"\nkind = "hospital"\nparent = "remote"\n'
                          "patient_numbers = [30000000, 39999999]\ndocument_numbers = [300000000, 399999999]\n")
    grown = Network(network.settings, load_topology(grown_file))
    c = grown.link("hosp-c")
    try:
        pg = postgres_instance(c, "local")  # hospital C already works on its own stores before it joins
        pg.init()
        pg.start()
        provision_side(c, "local")
        before = [f"C-before-{i}-{uuid.uuid4().hex}" for i in range(3)]
        for marker in before:
            new_staff(c, "local", marker)
        assert grown.join("hosp-c", say=lambda m: print(f"[join] {m}"), timeout_s=180) == []
        with psycopg.connect(libpq_dsn(c, "remote", "meta")) as conn:  # each record once, none lost
            counts = dict(conn.execute("SELECT display_name, count(*) FROM staff GROUP BY display_name").fetchall())
        assert {m: counts.get(m) for m in before} == {m: 1 for m in before}
        after = f"C-after-{uuid.uuid4().hex}"
        new_staff(c, "local", after)  # and then it streams like any other link
        synced(c)
        assert after in staff_names(c, "remote")
        assert not any(n.startswith("C-") for n in staff_names(network.link("hosp-a"), "remote"))

        grown.leave("hosp-c", say=lambda m: print(f"[leave] {m}"))
        assert all(pid is None for pid in Stack(c).running().values()), Stack(c).running()
        assert {*before, after} <= staff_names(c, "remote")  # the cloud keeps its copy
        again = Network.load(network.settings)
        assert "hosp-c" in again.left and "hosp-c" not in again.links and "hosp-c" in again.all_links
        b = network.link("hosp-b")  # the others keep syncing
        marker = f"B-after-leave-{uuid.uuid4().hex}"
        new_staff(b, "local", marker)
        synced(b)
        assert marker in staff_names(b, "remote")
    finally:
        Stack(c).down(say=lambda m: print(f"[cleanup] {m}"), drain_timeout_s=0)
