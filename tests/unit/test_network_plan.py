"""The network plan: endpoints, databases, routes, topics and ACLs per topology; tenant isolation (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.cli.main import main
from streams.core.model import CAPTURED_STORES, DATABASE_STORES, ROUTES, SIDES
from streams.ops.access_policy import KafkaAcl, default_plan, kafka_acls, plan_principals, readable_topics
from streams.routing.matrix_model import load_matrix
from streams.runtime.credentials import kafka_principals
from streams.runtime.settings import load_settings
from streams.topology.load import load_topology
from streams.topology.plan import NetworkPlan, build_plan, isolation_faults

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "infra" / "topologies"


def plan_of(name: str) -> NetworkPlan:
    return build_plan(load_topology(TOPOLOGIES / f"{name}.toml"), load_matrix())


def readable(plan: NetworkPlan, extra: list[KafkaAcl] | None = None) -> dict[str, set[str]]:
    settings = load_settings(env={}, data_dir=Path("/nonexistent"))
    known = {t for e in plan.endpoints for t in plan.topics_of(settings.topic_prefix, e.id)}
    known |= set(plan.subscription_topics(settings.topic_prefix))
    acls = [*kafka_acls(settings, plan), *(extra or [])]
    found = readable_topics(acls, plan_principals(settings, plan), known)
    return {p: t for p, t in found.items() if p != "operator"}


def test_the_default_plan_names_everything_as_today(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    plan = plan_of("default")
    assert plan == default_plan()
    assert [e.id for e in plan.endpoints] == list(SIDES)
    assert {r.name: (r.source, r.target) for r in plan.routes} == ROUTES
    for side in SIDES:
        assert plan.topics_of("platsync", side) == tuple(settings.topic(side, s) for s in CAPTURED_STORES[side])
        assert all(plan.endpoint(side).database(s) == s for s in DATABASE_STORES[side])
    assert plan.heartbeat_topic("platsync", "local") == "platsync.heartbeat"
    assert plan_principals(settings, plan) == kafka_principals(settings)
    assert [p for p in plan.processes() if not p.startswith("pg-")] == [
        "capture-local", "capture-remote", "worker-local_to_remote", "worker-remote_to_local", "mode-local",
        "mode-remote"]


def test_the_multi_tenant_cloud_has_a_database_set_per_institution() -> None:
    plan = plan_of("two_hospitals")
    cloud_a, cloud_b = plan.endpoint("remote.hosp-a"), plan.endpoint("remote.hosp-b")
    assert (cloud_a.node, cloud_a.tenant, cloud_b.tenant) == ("remote", "hosp-a", "hosp-b")
    assert cloud_a.database("meta") == "meta_hosp_a" and cloud_b.database("fructos_own") == "fructos_own_hosp_b"
    assert cloud_a.database("keycloak") == "keycloak_hosp_a"
    # the patient-management store is shared: written by every home link, captured by none
    assert cloud_a.database("fructos_patient") == cloud_b.database("fructos_patient") == "fructos_patient"
    assert all(not t.endswith(".fructos_patient") for e in plan.endpoints for t in plan.topics_of("platsync", e.id))
    assert plan.home_endpoints("hosp-b") == ("hosp-b", "remote.hosp-b")
    assert {r.name: (r.source, r.target, r.direction) for r in plan.routes} == {
        "hosp-a_to_remote.hosp-a": ("hosp-a", "remote.hosp-a", "local_to_remote"),
        "remote.hosp-a_to_hosp-a": ("remote.hosp-a", "hosp-a", "remote_to_local"),
        "hosp-b_to_remote.hosp-b": ("hosp-b", "remote.hosp-b", "local_to_remote"),
        "remote.hosp-b_to_hosp-b": ("remote.hosp-b", "hosp-b", "remote_to_local"),
    }
    assert plan.heartbeat_topic("platsync", "remote.hosp-a") == plan.heartbeat_topic("platsync", "hosp-a") \
        == "platsync.hosp-a.heartbeat"
    # each home link runs as a two-party stack named by its link prefix (infra/local/network.py)
    assert plan.topics_of("platsync", "remote.hosp-a") == (
        "platsync.hosp-a.remote.meta", "platsync.hosp-a.remote.fructos_own", "platsync.hosp-a.remote.keycloak")
    assert plan.dead_letter_topic("platsync", "remote.hosp-b_to_hosp-b") == "platsync.hosp-b.dlq.remote_to_local"
    assert plan.consumer_group("platsync", "hosp-a_to_remote.hosp-a") == "platsync.hosp-a-local_to_remote"
    assert plan.principal("platsync", "capture-remote.hosp-b") == "platsync.hosp-b-capture-remote"
    assert plan.mode_group("hosp-a") == "platsync-hosp-a.local-mode"
    assert plan.node_of_process("worker-remote.hosp-a_to_hosp-a") == "hosp-a"
    assert plan.node_of_process("worker-hosp-a_to_remote.hosp-a") == "remote"


def test_a_regional_server_gets_one_way_replicas_of_the_shared_store_only() -> None:
    plan = plan_of("regional")
    region = plan.endpoint("region-1")
    assert (region.role, region.stores, region.captured) == ("replica", ("fructos_patient",), ())
    replica = plan.route("hosp-a_to_region-1")
    assert (replica.source, replica.target, replica.target_stores) == ("hosp-a", "region-1", ("fructos_patient",))
    # the feeding store of both parties of the home link (each captures what was first written on it), never
    # META or the Keycloak accounts
    assert replica.reads == (("hosp-a", "fructos_own"), ("remote.hosp-a", "fructos_own"))
    assert {a.name for a in kafka_acls(load_settings(env={}), plan)
            if a.principal == plan.principal("platsync", "worker-hosp-a_to_region-1") and "Read" in a.operations
            and a.resource_type == "topic"} == {"platsync.hosp-a.local.fructos_own",
                                                "platsync.hosp-a.remote.fructos_own"}
    assert set(replica.api_ids) == {"PRV_USR_001", "PRV_DOC_009"}
    assert plan.node_of_process("worker-hosp-a_to_region-1") == "region-1"
    assert not any(r.source == "region-1" for r in plan.routes)  # read-only: nothing flows out of it
    # home links stay direct to the cloud, so a hospital syncs while its regional server is down
    assert plan.route("hosp-a_to_remote.hosp-a").target == "remote.hosp-a"


@pytest.mark.parametrize("name", ["default", "two_hospitals", "regional"])
def test_the_generated_acls_keep_every_tenant_isolated(name: str) -> None:
    plan = plan_of(name)
    found = readable(plan)
    assert isolation_faults(plan, found, "platsync") == []
    for process, topics in found.items():  # and each hospital process reads something: the check is not vacuous
        if process.startswith("worker-") and plan.endpoint(plan.route(process[7:]).target).role == "local":
            assert topics, process


def test_the_isolation_check_catches_a_leaking_acl() -> None:
    plan = plan_of("two_hospitals")
    leak = KafkaAcl("platsync.hosp-a-worker-remote_to_local", "topic", "platsync.hosp-b.remote.meta", "literal",
                    ("Read",))
    wide = KafkaAcl("platsync.hosp-b-mode-local", "topic", "platsync.", "prefixed", ("Read",))
    faults = isolation_faults(plan, readable(plan, [leak, wide]), "platsync")
    assert "worker-remote.hosp-a_to_hosp-a on hospital hosp-a may read platsync.hosp-b.remote.meta " \
           "(records of hosp-b)" in faults
    assert "mode-hosp-b on hospital hosp-b may read platsync.hosp-a.local.meta (records of hosp-a)" in faults
    assert not any("hosp-b may read platsync.hosp-b." in f for f in faults)  # its own topics are fine


def test_subscriptions_read_only_what_they_are_entitled_to() -> None:
    plan = plan_of("two_hospitals")
    found = readable(plan)
    assert found["subscriber-hosp-b"] == {"platsync.hosp-b.sub"}  # its own feed, nothing else
    assert found["fanout"] == {f"platsync.{h}.{side}.fructos_own" for h in ("hosp-a", "hosp-b")
                               for side in ("local", "remote")}
    assert (plan.node_of_process("fanout"), plan.node_of_process("subscriber-hosp-b")) == (
        plan.topology.root.id, "hosp-b")
    writes = {(a.principal, a.name) for a in kafka_acls(load_settings(env={}), plan) if "Write" in a.operations}
    assert {("platsync-fanout", "platsync.hosp-a.sub"), ("platsync-fanout", "platsync.hosp-b.sub")} <= writes
    assert not any(p == "platsync.hosp-b-subscriber" and n.endswith(".sub") for p, n in writes)  # read-only
    leak = KafkaAcl("platsync.hosp-b-subscriber", "topic", "platsync.hosp-a.sub", "literal", ("Read",))
    assert "subscriber-hosp-b on hospital hosp-b may read platsync.hosp-a.sub (records of hosp-a)" in \
        isolation_faults(plan, readable(plan, [leak]), "platsync")
    default = plan_of("default")  # one hospital: nobody to share with
    assert (default.subscription_processes(), default.subscription_topics("platsync")) == ((), ())


def test_each_common_server_declares_on_its_own_topic_and_only_the_indexer_reads_them() -> None:
    plan = plan_of("regional")
    root = plan.topology.root.id
    assert plan.common_servers() == (root, "region-1")
    assert {"indexer", f"declarer-{root}", "declarer-region-1"} <= set(plan.subscription_processes())
    topics = {plan.index_topic("platsync", s) for s in plan.common_servers()}
    assert topics == {f"platsync.index.{root}", "platsync.index.region-1"}
    assert topics | {"platsync.dlq.indexer"} <= set(plan.subscription_topics("platsync"))
    found = readable(plan)
    assert found["indexer"] == topics
    assert not any(topics & t for p, t in found.items() if p != "indexer")  # no hospital, no declarer
    assert (plan.node_of_process("indexer"), plan.node_of_process("declarer-region-1")) == (root, "region-1")
    writes = {(a.principal, a.name) for a in kafka_acls(load_settings(env={}), plan) if "Write" in a.operations}
    assert ("platsync-declarer-region-1", "platsync.index.region-1") in writes
    assert ("platsync-declarer-region-1", f"platsync.index.{root}") not in writes  # not for another server
    leak = KafkaAcl("platsync.hosp-b-subscriber", "topic", "platsync.index.region-1", "literal", ("Read",))
    assert ("subscriber-hosp-b on hospital hosp-b may read platsync.index.region-1 (records of every "
            "institution)") in isolation_faults(plan, readable(plan, [leak]), "platsync")


def test_access_cli_prints_a_topology_s_acls(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["access", "--data-dir", str(tmp_path), "--format", "json",
                 "--topology", str(TOPOLOGIES / "regional.toml")])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["tenant_isolation_faults"] == []
    reads = {(a["principal"], a["name"]) for a in doc["kafka_acls"] if "Read" in a["operations"]}
    assert ("platsync.hosp-a-worker-local_to_region-1", "platsync.hosp-a.local.fructos_own") in reads
    assert ("platsync.hosp-a-worker-local_to_region-1", "platsync.hosp-a.local.keycloak") not in reads


def test_topology_show_json_includes_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "show", "--format", "json", "--topology", str(TOPOLOGIES / "two_hospitals.toml")]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["processes"]["capture-remote.hosp-b"] == "remote"
    assert {e["id"]: e["databases"]["meta"] for e in plan["endpoints"]} == {
        "hosp-a": "meta", "hosp-b": "meta", "remote.hosp-a": "meta_hosp_a", "remote.hosp-b": "meta_hosp_b"}


@pytest.mark.parametrize(("name", "retried"), [
    ("default", {"platsync.dlq.retried"}),
    ("two_hospitals", {"platsync.hosp-a.dlq.retried", "platsync.hosp-b.dlq.retried"}),
])
def test_the_operator_may_record_retried_dead_letters_of_every_link(name: str, retried: set[str]) -> None:
    """'platsync dlq retry' on a link records re-driven letters in that link's <link prefix>.dlq.retried."""
    settings = load_settings(env={}, data_dir=Path("/nonexistent"))
    operator = plan_principals(settings, plan_of(name))["operator"]
    writable = {a.name for a in kafka_acls(settings, plan_of(name))
                if a.principal == operator and a.name.endswith(".dlq.retried") and "Write" in a.operations}
    assert writable == retried
