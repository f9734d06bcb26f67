"""infra/k8s/fhir.py: the cloud's FHIR worker, one Deployment per cloud, rendered like the other cloud processes.

On the committed manifests and the example topologies: one replica on the cloud root, run as
``python -m streams.apply.fhir_worker --pg-node remote --metrics-port <port>`` with liveness and readiness
probes, its resources, the ``platsync_fhir`` password and the sharing service's token from a Secret of its own,
no Kafka at all; settings that make it connect to the cloud's ``fructos_patient`` as ``platsync_fhir`` and submit
to ``fhir_submission_url``; a NetworkPolicy letting it reach only the cloud's PostgreSQL and the sharing service.
An empty or bad ``fhir_submission_url`` is refused: Kubernetes runs no stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DeploymentError, load_deployment
from infra.k8s.generate import render
from infra.k8s.validate import validate_document
from streams.apply.fhir_worker import submission_url
from streams.core.model import REPLICA_STORE
from streams.ops.access_policy import process_roles
from streams.runtime.connections import dsn
from streams.runtime.credentials import FHIR, ROLE_NAMES
from streams.runtime.settings import load_settings
from tests.unit.test_k8s_manifests import DEPLOYMENT, VERSION, of_kind
from tests.unit.test_k8s_network import NETWORKS, plan, resources

CFG = DEPLOYMENT.config
URL = DEPLOYMENT.settings.fhir_submission_url
URL_LINE = f'fhir_submission_url = "{URL}"'


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    return only


def env(doc: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(doc)["env"]}


def fhir_workers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["metadata"]["labels"].get("platsync.io/component") == "fhir"]


def pod_settings(tmp_path: Path, doc: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> Any:
    """The settings the worker loads: its ConfigMap's file and its Secret's variables (filled)."""
    volume = next(v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == "settings")
    path = tmp_path / "platsync.toml"
    path.write_text(configmaps[volume["configMap"]["name"]]["data"]["platsync.toml"], encoding="utf-8")
    return load_settings(path, env={"PLATSYNC_PG_FHIR_PASSWORD": "pw", "PLATSYNC_FHIR_SUBMISSION_TOKEN": "tok"})


def test_the_deployment_file_names_the_sharing_service() -> None:
    assert URL.startswith("https://") and CFG.fhir_service_cidrs
    assert CFG.resources["fhir"].as_k8s()["limits"]["memory"]


def test_the_cloud_runs_one_probed_fhir_worker_without_kafka(tmp_path: Path) -> None:
    (doc,) = fhir_workers(of_kind("Deployment"))
    assert doc["metadata"]["name"] == "platsync-fhir-remote" and doc["spec"]["replicas"] == 1
    assert validate_document(doc, VERSION) == []
    c = container(doc)
    assert c["command"] == ["python", "-m", "streams.apply.fhir_worker", "--pg-node", "remote",
                            "--metrics-port", str(CFG.container_port)]
    assert c["ports"] == [{"name": "metrics", "containerPort": CFG.container_port}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"] == CFG.resources["fhir"].as_k8s()
    labels = doc["spec"]["template"]["metadata"]["labels"]
    assert labels["platsync.io/side"] == "remote"
    # No Kafka: no user, no cluster CA, no Kafka client policy; no Keycloak: not a db-client (its own policy).
    assert not {"platsync.io/kafka-client", "platsync.io/db-client"} & set(labels)
    assert not [e for e in env(doc) if e.startswith("PLATSYNC_BROKER")]
    assert "kafka-ca" not in {v["name"] for v in doc["spec"]["template"]["spec"]["volumes"]}
    assert "kafka-ca" not in {m["name"] for m in c["volumeMounts"]}
    # Its role (the access policy's) and the token from a Secret of its own, placeholders only.
    assert process_roles()["fhir-remote"] == [("remote", FHIR)]
    secrets = {s["metadata"]["name"]: s for s in of_kind("Secret")}
    refs = {k: v["secretKeyRef"] for k, v in env(doc).items() if isinstance(v, dict)}
    assert set(refs) == {"PLATSYNC_PG_FHIR_PASSWORD", "PLATSYNC_FHIR_SUBMISSION_TOKEN"}
    assert {r["name"] for r in refs.values()} == {"platsync-fhir-remote"}
    assert secrets["platsync-fhir-remote"]["stringData"] == {r["key"]: "REPLACE-ME" for r in refs.values()}
    # What the process makes of it: platsync_fhir on the cloud's fructos_patient, the service's URL and token.
    s = pod_settings(tmp_path, doc, {d["metadata"]["name"]: d for d in of_kind("ConfigMap")})
    expected = f"{ROLE_NAMES[FHIR]}:pw@{DEPLOYMENT.settings.pg_host('remote')}:{DEPLOYMENT.settings.pg_port('remote')}"
    url = dsn(s, "remote", REPLICA_STORE, FHIR)
    assert expected in url and url.endswith(f"/{REPLICA_STORE}")
    assert (submission_url(s), s.fhir_submission_token) == (URL, "tok")


def test_the_fhir_worker_reaches_only_the_clouds_postgres_and_the_sharing_service() -> None:
    policies = [p for p in of_kind("NetworkPolicy")
                if p["spec"]["podSelector"].get("matchLabels", {}).get("platsync.io/component") == "fhir"]
    (policy,) = policies
    assert policy["metadata"]["name"] == "remote-fhir-egress" and policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"platsync.io/side": "remote",
                                                            "platsync.io/component": "fhir"}
    db, service = policy["spec"]["egress"]
    assert [t["ipBlock"]["cidr"] for t in db["to"]] == list(CFG.remote_db_cidrs)
    assert db["ports"] == [{"protocol": "TCP", "port": DEPLOYMENT.settings.pg_port("remote")}]
    assert [t["ipBlock"]["cidr"] for t in service["to"]] == list(CFG.fhir_service_cidrs)
    assert service["ports"] == [{"protocol": "TCP", "port": 443}]


@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_runs_one_fhir_worker_on_its_cloud_root(name: str, tmp_path: Path) -> None:
    root = plan(name).topology.root.id
    found = [(node, d) for node, d in resources(name, "Deployment")
             if d["metadata"]["labels"].get("platsync.io/component") == "fhir"]
    assert [(node, d["metadata"]["name"]) for node, d in found] == [(root, f"platsync-fhir-{root}")]
    (_, doc), = found
    assert doc["metadata"]["labels"]["platsync.io/node"] == root and "platsync.io/link" not in doc["metadata"]["labels"]
    configmaps = {d["metadata"]["name"]: d for node, d in resources(name, "ConfigMap") if node == root}
    s = pod_settings(tmp_path, doc, configmaps)
    # The network's own settings: the shared store itself, no tenant's suffix.
    assert f"{ROLE_NAMES[FHIR]}:pw@{DEPLOYMENT.settings.pg_host('remote')}:" in dsn(s, "remote", REPLICA_STORE, FHIR)
    assert dsn(s, "remote", REPLICA_STORE, FHIR).endswith(f"/{REPLICA_STORE}")
    assert {node for node, d in resources(name, "NetworkPolicy") if d["metadata"]["name"].endswith("-fhir-egress")} \
        == {root}


@pytest.mark.parametrize(("url", "fault"), [
    ("", "fhir_submission_url is empty: on Kubernetes there is no sharing service stand-in"),
    ("ftp://fhir.example.org/fhir", "is not an http(s) URL with a host"),
    ("https:///fhir", "is not an http(s) URL with a host"),
])
def test_a_missing_or_bad_sharing_service_url_is_refused(tmp_path: Path, url: str, fault: str) -> None:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    assert URL_LINE in text
    deployment = tmp_path / "deployment.toml"
    deployment.write_text(text.replace(URL_LINE, f'fhir_submission_url = "{url}"'), encoding="utf-8")
    with pytest.raises(DeploymentError) as info:
        load_deployment(deployment)
    assert any(fault in f for f in info.value.faults), info.value.faults


def test_the_egress_port_follows_the_urls_port(tmp_path: Path) -> None:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    deployment = tmp_path / "deployment.toml"
    deployment.write_text(text.replace(URL_LINE, 'fhir_submission_url = "https://fhir.example.org:8443/fhir"')
                          .replace('fhir_service_cidrs = ["0.0.0.0/0"]', 'fhir_service_cidrs = ["192.0.2.0/24"]'),
                          encoding="utf-8")
    files = render(load_deployment(deployment))
    policy = files["50-network-policies.yaml"].split("name: remote-fhir-egress", 1)[1]
    assert "cidr: 192.0.2.0/24" in policy and "port: 8443" in policy and "cidr: 0.0.0.0/0" not in policy
