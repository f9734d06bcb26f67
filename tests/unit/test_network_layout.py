"""How a network lays out its home links' two-party stacks (infra/local/network.py), without starting them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from infra.local.network import Network, link_settings, network_file, tenant_suffix
from infra.local.process import ProcessError
from streams.apply.heartbeat import client_id as mode_client_id
from streams.core.modes import heartbeat_topic
from streams.runtime.connections import database_name
from streams.runtime.credentials import kafka_principals, role_name
from streams.runtime.settings import load_settings
from streams.topology.load import load_topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


def counter(start: int = 30000):
    numbers = itertools.count(start)
    return lambda: next(numbers)


def test_a_link_is_the_hospital_as_local_and_its_cloud_stores_as_remote(tmp_path: Path) -> None:
    base = load_settings(env={}, data_dir=tmp_path, broker_port=29092, pg_remote_port=25433)
    net = Network(base, load_topology(TOPOLOGIES / "two_hospitals.toml"), port=counter())
    a = net.link("hosp-a")
    assert a.data_dir == tmp_path.absolute() / "links" / "hosp-a"
    assert (a.topic_prefix, a.network_link, a.broker_bootstrap_servers) == ("platsync.hosp-a", "hosp-a",
                                                                           "127.0.0.1:29092")
    assert a.topic("local", "meta") == "platsync.hosp-a.local.meta"
    assert a.consumer_group("local_to_remote") == "platsync.hosp-a-local_to_remote"
    assert a.pg_port("remote") == 25433 and not a.node("remote").pg_managed and a.node("local").pg_managed
    assert database_name(a, "remote", "meta") == "meta_hosp_a" and database_name(a, "local", "meta") == "meta"
    assert database_name(a, "remote", "fructos_patient") == "fructos_patient"
    assert role_name(a, "remote", "capture") == "platsync_capture_hosp_a"
    assert a.captured_stores("remote") == ("meta", "fructos_own", "keycloak")  # never the shared store
    assert a.client_tag("local") == "hosp-a.local"
    b = net.link("hosp-b")
    # Each hospital numbers from its own block of the topology; its cloud side from the cloud's range.
    assert (b.node("local").patient_numbers, b.node("local").document_numbers) == (
        (10000000, 19999999), (100000000, 199999999))
    assert b.node("remote").patient_numbers == a.node("remote").patient_numbers == (500000000, 999999999)
    ports = [a.pg_port("local"), a.keycloak_port("local"), a.keycloak_port("remote"), a.mode_port("remote"),
             *a.metrics_worker_ports.values(), b.pg_port("local"), b.keycloak_port("remote")]
    assert len(set(ports)) == len(ports)  # no two links (or sides) share a port


def test_ports_are_kept_across_restarts(tmp_path: Path) -> None:
    base = load_settings(env={}, data_dir=tmp_path)
    topology = load_topology(TOPOLOGIES / "two_hospitals.toml")
    first = Network(base, topology, port=counter(31000))
    first._record()
    assert network_file(tmp_path.absolute()).exists()
    again = Network.load(base)
    assert again.ports == first.ports and again.links == first.links
    copy = tmp_path / "copy.toml"  # the same hospitals under another file name keep their ports
    copy.write_text((TOPOLOGIES / "two_hospitals.toml").read_text())
    assert Network(base, load_topology(copy), port=counter(32000)).ports == first.ports


def test_a_regional_server_is_fed_by_a_replica_worker_of_each_link_below_it(tmp_path: Path) -> None:
    net = Network(load_settings(env={}, data_dir=tmp_path), load_topology(TOPOLOGIES / "regional.toml"),
                  port=counter(34000))
    assert list(net.regions) == ["region-1"] and net.regions_above("hosp-a") == ("region-1",)
    region_pg = net.settings.pg_port("region-1")
    plan, prefix = net.plan, "platsync"
    for hospital, link in net.links.items():
        assert link.replica_nodes == ("region-1",)
        assert link.applied_routes == ("local_to_remote", "remote_to_local", "local_to_region-1")
        # One PostgreSQL per region, shared by the links; each link's replica worker has roles of its own there.
        assert link.pg_port("region-1") == region_pg and not link.node("region-1").pg_managed
        assert role_name(link, "region-1", "apply") == f"platsync_apply{tenant_suffix(hospital)}"
        assert database_name(link, "region-1", "fructos_patient") == "fructos_patient"
        assert link.captured_stores("region-1") == ()  # a regional server captures nothing: no loop
        route = f"{hospital}_to_region-1"  # the plan's name of the replica route, and its positions' key
        assert link.progress_route("local_to_region-1") == route
        assert plan.dead_letter_topic(prefix, route) == link.dead_letter_topic("local_to_region-1")
        assert plan.consumer_group(prefix, route) == link.consumer_group("local_to_region-1")
        assert plan.principal(prefix, f"worker-{route}") == kafka_principals(link)["worker-local_to_region-1"]
        assert link.worker_client_tag("local_to_region-1") == "region-1.replica"  # cut with the region
        assert link.metrics_port("worker-local_to_region-1") not in {
            link.metrics_port("worker-local_to_remote"), link.metrics_port("worker-remote_to_local")}
    net._record()
    assert Network.load(net.settings).regions == net.regions  # the region keeps its port


def test_no_network_here_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="no network in .*: start one with 'platsync up --topology FILE'"):
        Network.load(load_settings(env={}, data_dir=tmp_path))


def test_tenant_suffix() -> None:
    assert tenant_suffix("hosp-a") == "_hosp_a"
    base = load_settings(env={}, data_dir=Path("/x"))
    assert link_settings(base, "h1", {k: 1 for k in (
        "pg_local", "keycloak_local", "mode_local", "metrics_capture_local", "metrics_mode_local", "keycloak_remote",
        "mode_remote", "metrics_capture_remote", "metrics_mode_remote", "metrics_worker_local_to_remote",
        "metrics_worker_remote_to_local")}).node("remote").db_suffix == "_h1"


def test_the_plan_names_what_each_link_stack_uses(tmp_path: Path) -> None:
    """The ACLs of 'platsync access --topology' are computed from the plan: its names must be the ones the
    running links use (topics, dead letters, groups, users, mode groups)."""
    net = Network(load_settings(env={}, data_dir=tmp_path), load_topology(TOPOLOGIES / "two_hospitals.toml"),
                  port=counter())
    plan, prefix = net.plan, "platsync"
    for hospital, link in net.links.items():
        local, cloud = plan.home_endpoints(hospital)
        for endpoint, side in ((local, "local"), (cloud, "remote")):
            assert plan.topics_of(prefix, endpoint) == tuple(link.topic(side, s) for s in link.captured_stores(side))
            assert plan.principal(prefix, f"capture-{endpoint}") == kafka_principals(link)[f"capture-{side}"]
            assert plan.principal(prefix, f"mode-{endpoint}") == kafka_principals(link)[f"mode-{side}"]
            assert plan.mode_group(endpoint) == mode_client_id(side, link)
            assert plan.heartbeat_topic(prefix, endpoint) == heartbeat_topic(link)
        routes = ((f"{local}_to_{cloud}", "local_to_remote"), (f"{cloud}_to_{local}", "remote_to_local"))
        for route, direction in routes:
            assert plan.dead_letter_topic(prefix, route) == link.dead_letter_topic(direction)
            assert plan.consumer_group(prefix, route) == link.consumer_group(direction)
            assert plan.principal(prefix, f"worker-{route}") == kafka_principals(link)[f"worker-{direction}"]


def test_leave_is_recorded_and_join_names_what_is_wrong(tmp_path: Path) -> None:
    base = load_settings(env={}, data_dir=tmp_path)
    net = Network(base, load_topology(TOPOLOGIES / "two_hospitals.toml"), port=counter(33000))
    net._record()
    said: list[str] = []
    net.leave("hosp-b", say=said.append)  # nothing runs here: the link's stack has nothing to stop
    assert "hosp-b left the network" in said[-1] and "meta_hosp_b" in said[-1]
    again = Network.load(base)
    assert again.left == ["hosp-b"] and list(again.links) == ["hosp-a"]
    assert again.link("hosp-b").network_link == "hosp-b"  # still known: the cloud keeps its stores
    with pytest.raises(ProcessError, match="hosp-b already left the network"):
        again.leave("hosp-b", say=said.append)
    with pytest.raises(ProcessError, match=r"'hosp-z' is not a hospital of .*two_hospitals.toml: add it to the file"):
        again.join("hosp-z", say=said.append)
