"""infra/k8s for a network's sharing processes (infra/k8s/sharing.py): one Deployment each, probed like the workers.

On the example topologies: the fan-out, each hospital's subscriber, the indexer and each common server's
declarer run on their plan's node with ``--metrics-port`` and liveness/readiness probes on ``/healthz`` and
``/readyz``, their own database role's password from a Secret of their own, their own KafkaUser, requests and
limits; and the settings and environment a pod gets make the process connect where and as whom it should.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DeploymentError, load_deployment
from infra.k8s.scope import res
from infra.k8s.users import user_name
from streams.core.model import REPLICA_STORE
from streams.runtime.connections import dsn
from streams.runtime.credentials import SHARING_ROLE_NAMES
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import load_settings
from tests.unit.test_k8s_network import DEPLOYMENT, NETWORKS, container, env, plan, resources

STORES = {"fanout": ("remote", "sharing"), "indexer": ("remote", "patient_index"),
          "subscriber": ("local", "fructos_subscribed")}


def by_name(name: str, kind: str) -> dict[str, tuple[str, dict[str, Any]]]:
    return {doc["metadata"]["name"]: (node, doc) for node, doc in resources(name, kind)}


def pod_settings(tmp_path: Path, name: str, doc: dict[str, Any], extra_env: dict[str, str]) -> Any:
    """The settings the pod's process loads: its ConfigMap's file and its environment (secrets filled)."""
    configmaps = by_name(name, "ConfigMap")
    volume = next(v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == "settings")
    cm_node, cm = configmaps[volume["configMap"]["name"]]
    assert cm_node == doc["metadata"]["labels"]["platsync.io/node"]
    path = tmp_path / f"{doc['metadata']['name']}.toml"
    path.write_text(cm["data"]["platsync.toml"], encoding="utf-8")
    return load_settings(path, env=extra_env)


@pytest.mark.parametrize("name", NETWORKS)
def test_each_sharing_process_is_a_probed_deployment_with_its_own_credentials(name: str, tmp_path: Path) -> None:
    p, cfg = plan(name), DEPLOYMENT.config
    deployments, secrets, users = by_name(name, "Deployment"), by_name(name, "Secret"), by_name(name, "KafkaUser")
    for process in p.subscription_processes():
        kind, _, arg = process.partition("-")
        node, doc = deployments[f"platsync-{res(process)}"]
        assert node == p.node_of_process(process) and doc["spec"]["replicas"] == 1
        c = container(doc)
        assert c["command"][:3] == ["python", "-m", f"streams.apply.{kind}"]
        assert c["command"][-2:] == ["--metrics-port", str(cfg.container_port)]
        assert c["ports"][0] == {"name": "metrics", "containerPort": cfg.container_port}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert c["resources"] == cfg.resources[kind].as_k8s()
        role_env = f"PLATSYNC_PG_{kind.upper()}_PASSWORD"
        ref = env(doc)[role_env]["secretKeyRef"]
        secret_node, secret = secrets[ref["name"]]
        assert secret_node == node and secret["stringData"] == {ref["key"]: "REPLACE-ME"}
        user = env(doc)["PLATSYNC_BROKER_USERNAME"]
        assert user == user_name(p.principal("platsync", process)) and users[user][0] == node
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert labels["platsync.io/component"] == kind and labels["platsync.io/db-client"] == "true"
        # What the process makes of it: its role on its node's database, its Kafka user.
        ca = tmp_path / "ca.crt"  # Strimzi's cluster CA, mounted at /etc/kafka-ca in the pod
        ca.touch()
        s = pod_settings(tmp_path, name, doc, {role_env: "pw", "PLATSYNC_BROKER_USERNAME": user,
                                               "PLATSYNC_BROKER_PASSWORD": "kpw", "PLATSYNC_BROKER_CA_FILE": str(ca)})
        if kind == "declarer":
            pg_node = c["command"][c["command"].index("--pg-node") + 1]
            assert (arg, pg_node) == (p.topology.root.id, "remote") or arg == pg_node
            node_pg, database = pg_node, REPLICA_STORE
        else:
            node_pg, database = STORES[kind]
        url = dsn(s, node_pg, database, kind)
        expected_host = cfg.nodes[node].pg_host if node in cfg.nodes else DEPLOYMENT.settings.pg_host("remote")
        assert f"{SHARING_ROLE_NAMES[kind]}:pw@{expected_host}:" in url and url.endswith(f"/{database}")
        assert client_config(s, "x")["sasl.username"] == user


@pytest.mark.parametrize("name", NETWORKS)
def test_the_sharing_processes_arguments_follow_the_plan(name: str) -> None:
    p = plan(name)
    commands = {doc["metadata"]["name"]: container(doc).get("command", []) for _, doc in resources(name, "Deployment")}
    assert commands["platsync-fanout"][3:5] == ["--homes", ",".join(h.id for h in p.topology.hospitals)]
    assert commands["platsync-indexer"][3:5] == ["--servers", ",".join(p.common_servers())]
    for hospital in p.topology.hospitals:
        assert commands[f"platsync-subscriber-{res(hospital.id)}"][3:5] == ["--node", hospital.id]


@pytest.mark.parametrize("name", NETWORKS)
def test_only_a_subscriber_may_reach_its_hospitals_webhook(name: str) -> None:
    policies = [(node, doc) for node, doc in resources(name, "NetworkPolicy")
                if doc["metadata"]["name"].endswith("-webhook-egress")]
    assert {node for node, _ in policies} == {h.id for h in plan(name).topology.hospitals}
    for node, doc in policies:
        assert doc["spec"]["podSelector"]["matchLabels"] == {"platsync.io/node": node,
                                                             "platsync.io/component": "subscriber"}
        (rule,) = doc["spec"]["egress"]
        assert [t["ipBlock"]["cidr"] for t in rule["to"]] == list(DEPLOYMENT.config.nodes[node].webhook_cidrs)
        assert rule["ports"] == [{"protocol": "TCP", "port": 443}]


def test_a_bad_webhook_range_is_refused(tmp_path: Path) -> None:
    deployment = tmp_path / "deployment.toml"
    deployment.write_text(DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8").replace(
        'webhook_cidrs = ["10.11.8.0/24"]', 'webhook_cidrs = ["10.11.8/24"]'), encoding="utf-8")
    with pytest.raises(DeploymentError, match=r"\[k8s.nodes.hosp-a\] webhook_cidrs: '10.11.8/24'"):
        load_deployment(deployment)
