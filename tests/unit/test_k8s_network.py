"""infra/k8s for a network: `platsync k8s render --topology FILE` renders per-node manifests.

The example topologies (infra/topologies/) are rendered, validated offline like the committed
manifests, and checked against their network plan: one workload per plan process on its node,
replica workers only on regional servers, each pod's settings being its link's, and tenant
isolation in the KafkaUsers a hospital node holds. The default topology renders today's files.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DEFAULT_OUT_DIR, K8S_DIR, DeploymentError, load_deployment
from infra.k8s.generate import default_out_dir, render, stale, write
from infra.k8s.scope import make_scope, res
from infra.k8s.users import user_name
from infra.k8s.validate import validate_dir, validate_document
from streams.cli.main import main
from streams.ops.access_policy import plan_principals
from streams.runtime.connections import database_name
from streams.runtime.settings import load_settings
from streams.topology.load import load_topology
from streams.topology.plan import NetworkPlan

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "infra" / "topologies"
NETWORKS = ("two_hospitals", "regional")
DEPLOYMENT = load_deployment()
VERSION = DEPLOYMENT.config.kubernetes_version
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def rendered(name: str) -> dict[str, str]:
    return render(DEPLOYMENT, load_topology(TOPOLOGIES / f"{name}.toml"))


@cache
def plan(name: str) -> NetworkPlan:
    return make_scope(DEPLOYMENT, load_topology(TOPOLOGIES / f"{name}.toml")).plan


def resources(name: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(node directory, resource) of every resource of ``kind`` in a topology's rendering."""
    return [(path.split("/")[0], doc) for path, text in rendered(name).items()
            for doc in yaml.load_all(text, Loader=LOADER) if doc and doc["kind"] == kind]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][0]


def env(doc: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(doc)["env"]}


def test_the_default_topology_renders_todays_manifests_byte_for_byte(tmp_path: Path) -> None:
    committed = {p.name: p.read_text(encoding="utf-8") for p in sorted(DEFAULT_OUT_DIR.glob("*.yaml"))}
    assert render(DEPLOYMENT, load_topology(TOPOLOGIES / "default.toml")) == committed
    assert render(DEPLOYMENT) == committed
    assert main(["k8s", "render", "--topology", str(TOPOLOGIES / "default.toml"), "--out", str(tmp_path)]) == 0
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.yaml")} == committed


@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_renders_one_directory_per_node_and_validates(name: str, tmp_path: Path) -> None:
    files = rendered(name)
    p = plan(name)
    nodes = {path.split("/")[0] for path in files}
    assert nodes == {res(n.id) for n in p.topology.nodes}
    assert all("/" in path for path in files)
    write(tmp_path, files)
    assert stale(tmp_path, files) == []
    assert validate_dir(tmp_path, VERSION) == {}
    root = p.topology.root.id
    # The cluster-wide resources live with the cloud root only.
    for kind in ("Namespace", "Kafka", "KafkaNodePool", "KafkaTopic"):
        assert {node for node, _ in resources(name, kind)} == {root}, kind


@pytest.mark.parametrize("name", NETWORKS)
def test_every_plan_process_has_exactly_one_workload_on_its_node(name: str) -> None:
    p = plan(name)
    by_user = {user_name(principal): process for process, principal in plan_principals(DEPLOYMENT.settings, p).items()}
    found: dict[str, list[str]] = {}
    apis: dict[str, list[str]] = {}
    for node, doc in resources(name, "Deployment"):
        user = env(doc).get("PLATSYNC_BROKER_USERNAME")
        if user is None:  # no Kafka user: the registry, and the cloud's FHIR worker (no Kafka, infra/k8s/fhir.py)
            if doc["metadata"]["labels"]["platsync.io/component"] == "api":  # infra/k8s/api.py (test_k8s_api.py)
                apis.setdefault(node, []).append(doc["metadata"]["name"])
                continue
            assert doc["metadata"]["name"] in ("platsync-schema-registry", f"platsync-fhir-{res(p.topology.root.id)}")
            assert node == p.topology.root.id
            continue
        process = by_user[user]
        found.setdefault(process, []).append(node)
        assert doc["metadata"]["labels"]["platsync.io/node"] == node
    # The sharing processes too: the fan-out, each subscriber, the indexer, each declarer (infra/k8s/sharing.py).
    assert p.subscription_processes()
    expected = {process: [p.node_of_process(process)] for process in (*p.processes(), *p.subscription_processes())
                if not process.startswith("pg-")}
    assert found == expected
    # A reference API beside each mode server: every endpoint but a regional server's replicas, on its node.
    assert {n: sorted(names) for n, names in apis.items()} == {
        n: sorted(f"platsync-api-{res(e.id)}" for e in p.endpoints if e.node == n and e.role != "replica")
        for n in {e.node for e in p.endpoints if e.role != "replica"}}
    # Each captured endpoint's Kafka Connect runs beside its stamper.
    connects = {doc["metadata"]["name"]: node for node, doc in resources(name, "KafkaConnect")}
    assert connects == {f"platsync-connect-{res(e.id)}": e.node for e in p.endpoints if e.captured}


@pytest.mark.parametrize("name", NETWORKS)
def test_replica_workers_run_only_on_regional_servers(name: str) -> None:
    p = plan(name)
    regional = {n.id for n in p.topology.nodes if n.kind == "common" and n.parent is not None}
    replica_routes = {r.name for r in p.routes if r.target in regional}
    assert bool(replica_routes) == (name == "regional")
    for node, doc in resources(name, "Deployment"):
        command = container(doc).get("command", [])  # the registry has none
        is_replica = doc["metadata"]["labels"].get("platsync.io/side") == "replica"
        assert (node in regional) == is_replica, doc["metadata"]["name"]
        if is_replica and doc["metadata"]["labels"]["platsync.io/component"] == "worker":
            route = command[command.index("--route") + 1]
            assert route == f"local_to_{node}" and command[-2:] == ["--config", "/etc/platsync/platsync.toml"]
        elif is_replica:  # beside the replica store: its declarer to the patient index, nothing else
            assert doc["metadata"]["labels"]["platsync.io/component"] == "declarer"
            assert command[command.index("--server") + 1:command.index("--server") + 4] == [node, "--pg-node", node]
    on_regions = {doc["metadata"]["name"] for node, doc in resources(name, "Deployment") if node in regional}
    assert on_regions == {*(f"platsync-worker-{res(r)}" for r in replica_routes),
                          *(f"platsync-declarer-{res(n)}" for n in regional)}


def _settings(tmp_path: Path, doc: dict[str, Any]) -> Any:
    path = tmp_path / f"{doc['metadata']['name']}.toml"
    path.write_text(doc["data"]["platsync.toml"], encoding="utf-8")
    return load_settings(path, env={})


@pytest.mark.parametrize("name", NETWORKS)
def test_each_pod_reads_its_links_settings(name: str, tmp_path: Path) -> None:
    p = plan(name)
    prefix = DEPLOYMENT.settings.topic_prefix
    configmaps = {doc["metadata"]["name"]: (node, _settings(tmp_path, doc))
                  for node, doc in resources(name, "ConfigMap")}
    for node, doc in resources(name, "Deployment"):
        volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
        link = doc["metadata"]["labels"].get("platsync.io/link")
        if link is None:
            continue  # the registry
        cm_node, settings = configmaps[volumes["settings"]["configMap"]["name"]]
        assert cm_node == node
        assert (settings.topic_prefix, settings.network_link) == (p.link_prefix(prefix, link), link)
        cloud = p.endpoint(p.home_endpoints(link)[1])
        for store, database in cloud.databases:
            assert database_name(settings, "remote", store) == database, (store, database)
        assert settings.pg_host("local") == DEPLOYMENT.config.nodes[link].pg_host
        assert settings.node("remote").keycloak_db == "", "a tenant's accounts: its own keycloak_<h> database"
        command = container(doc)["command"]
        if "--route" in command:  # the worker's Kafka names, as its link's stack derives them, are the plan's
            in_link = command[command.index("--route") + 1]
            route = next(r for r in p.routes if p.in_link_name(r) == in_link
                         and link in (p.endpoint(r.source).tenant, p.endpoint(r.target).tenant))
            assert settings.consumer_group(in_link) == p.consumer_group(prefix, route.name)
            assert settings.dead_letter_topic(in_link) == p.dead_letter_topic(prefix, route.name)
            if p.endpoint(route.target).role == "replica":
                assert settings.pg_host(node) == DEPLOYMENT.config.nodes[node].pg_host
                assert settings.metrics_port(f"worker-{in_link}") == DEPLOYMENT.config.container_port


@pytest.mark.parametrize("name", NETWORKS)
def test_a_hospital_nodes_kafka_users_touch_only_their_own_tenants_topics(name: str) -> None:
    p = plan(name)
    prefix = DEPLOYMENT.settings.topic_prefix
    topics = {doc["spec"]["topicName"] for _, doc in resources(name, "KafkaTopic")}
    hospitals = [n.id for n in p.topology.hospitals]
    assert len(hospitals) == 2
    users_by_node: dict[str, list[dict[str, Any]]] = {}
    for node, doc in resources(name, "KafkaUser"):
        users_by_node.setdefault(node, []).append(doc)
    for hospital in hospitals:
        own = (f"{p.link_prefix(prefix, hospital)}.", f"platsync-connect-{res(hospital)}-")
        other = next(h for h in hospitals if h != hospital)
        read_any = set()
        assert users_by_node[hospital], hospital
        for user in users_by_node[hospital]:
            for acl in user["spec"]["authorization"]["acls"]:
                resource = acl["resource"]
                if resource["type"] != "topic":
                    continue
                name_ = resource["name"]
                matched = {t for t in topics if (t == name_ if resource["patternType"] == "literal"
                                                 else t.startswith(name_))}
                assert matched, f"{user['metadata']['name']}: {name_} matches no topic"
                leaks = {t for t in matched if not t.startswith(own)}
                assert not leaks, f"{user['metadata']['name']} on {hospital} may {acl['operations']} {leaks}"
                if "Read" in acl["operations"]:
                    read_any |= matched
        # It does read its own link: the cloud's changes for it (its remote_to_local worker).
        assert p.topic(prefix, p.home_endpoints(hospital)[1], "meta") in read_any
        assert not any(other in t for t in read_any)


@pytest.mark.parametrize("name", NETWORKS)
def test_each_nodes_database_clients_reach_only_that_nodes_databases(name: str) -> None:
    p = plan(name)
    policies = {(node, doc["metadata"]["name"]): doc for node, doc in resources(name, "NetworkPolicy")}
    for node in p.topology.nodes:
        doc = policies[(node.id, f"{res(node.id)}-databases-egress")]
        selector = doc["spec"]["podSelector"]["matchLabels"]
        assert selector == {"platsync.io/node": node.id, "platsync.io/db-client": "true"}
        cidrs = [t["ipBlock"]["cidr"] for t in doc["spec"]["egress"][0]["to"]]
        cfg = DEPLOYMENT.config
        expected = cfg.remote_db_cidrs if node.parent is None else cfg.nodes[node.id].db_cidrs
        assert cidrs == list(expected)
    assert ("remote", "default-deny") in policies
    assert not any(n != "remote" and name_ == "default-deny" for n, name_ in policies)


def test_a_node_without_a_place_is_refused_naming_it(tmp_path: Path) -> None:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    without_b = re.sub(r"\[k8s\.nodes\.hosp-b\]\n(.+\n)+\n", "", text)
    assert "hosp-b" not in without_b and "[k8s.nodes.hosp-a]" in without_b
    deployment = tmp_path / "deployment.toml"
    deployment.write_text(without_b, encoding="utf-8")
    with pytest.raises(DeploymentError, match=r"node 'hosp-b' of the topology has no \[k8s.nodes.hosp-b\] table"):
        render(load_deployment(deployment), load_topology(TOPOLOGIES / "two_hospitals.toml"))
    bad = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8").replace('db_cidrs = ["10.30.0.0/16"]',
                                                                       'db_cidrs = ["10.30.0/16"]\nbogus = 1')
    deployment.write_text(bad, encoding="utf-8")
    with pytest.raises(DeploymentError) as info:
        load_deployment(deployment)
    assert any("[k8s.nodes.region-1] unknown key 'bogus'" in f for f in info.value.faults)


def test_the_cli_renders_checks_and_validates_a_topology(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topology = str(TOPOLOGIES / "regional.toml")
    assert default_out_dir(Path(topology)) == K8S_DIR / "manifests-regional"
    assert default_out_dir(None) == DEFAULT_OUT_DIR
    assert main(["k8s", "render", "--topology", topology, "--out", str(tmp_path)]) == 0
    assert main(["k8s", "render", "--topology", topology, "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "region-1" / "41-deployments.yaml").unlink()
    assert main(["k8s", "render", "--topology", topology, "--out", str(tmp_path), "--check"]) == 1
    assert "region-1/41-deployments.yaml: missing" in capsys.readouterr().err
    assert main(["k8s", "render", "--topology", topology, "--out", str(tmp_path)]) == 0
    assert main(["k8s", "validate", "--dir", str(tmp_path)]) == 0
    assert "0 with errors" in capsys.readouterr().out
    (tmp_path / "hosp-a" / "42-services.yaml").write_text("kind: Service\n", encoding="utf-8")
    assert main(["k8s", "validate", "--dir", str(tmp_path)]) == 1
    assert "hosp-a/42-services.yaml" in capsys.readouterr().err


def test_a_replica_worker_reads_both_sides_of_its_home_link() -> None:
    scope = make_scope(DEPLOYMENT, load_topology(TOPOLOGIES / "regional.toml"))
    route = scope.plan.route("hosp-a_to_region-1")
    assert scope.route_topics(route) == ("platsync.hosp-a.local.fructos_own", "platsync.hosp-a.remote.fructos_own")


def test_a_label_value_over_63_characters_is_rejected() -> None:
    _, doc = next((n, d) for n, d in resources("regional", "Deployment") if n == "region-1")
    doc = copy.deepcopy(doc)
    assert validate_document(doc, VERSION) == []
    doc["spec"]["template"]["metadata"]["labels"]["platsync.io/link"] = "h" * 64
    assert any("platsync.io/link: value" in e and "63 characters" in e for e in validate_document(doc, VERSION))
