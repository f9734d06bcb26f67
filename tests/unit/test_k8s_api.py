"""infra/k8s/api.py: each node's reference API over HTTP, a Deployment, a Service and NetworkPolicies (issue 18).

On the committed manifests and the example topologies: a Deployment beside each mode server (every endpoint but a
regional server's replicas) running ``python -m connectors.reference_api.http_server --side <side>`` with its
node's settings ConfigMap, the API port, the ``platsync_app`` password and Keycloak's admin password from the
endpoint's Secrets (never Kafka credentials), probes on ``GET /healthz`` at the API port; settings that make the
server connect to its node's stores as ``platsync_app`` and check tokens at its node's Keycloak realm; a Service
on the API port; ingress only from pods labelled ``platsync.io/api-client``, egress only to the node's
PostgreSQL, its Keycloak and DNS. The whole rendering still validates (tests/unit/test_k8s_manifests.py,
test_k8s_network.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.reference_api.http_auth import userinfo_url
from connectors.reference_api.http_server import create_app
from infra.k8s import api
from infra.k8s.config import DEFAULT_DEPLOYMENT_FILE, DeploymentError, load_deployment
from infra.k8s.generate import render
from infra.k8s.scope import res
from infra.k8s.validate import validate_document
from infra.local.api_runtime import MODULE
from streams.ops.access_policy import process_roles
from streams.runtime.connections import dsn
from streams.runtime.credentials import APP, role_name
from streams.runtime.settings import Settings, load_settings
from tests.unit.test_k8s_manifests import DEPLOYMENT, VERSION, of_kind
from tests.unit.test_k8s_master_import import egress_of
from tests.unit.test_k8s_network import NETWORKS, plan, resources

CFG = DEPLOYMENT.config


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    return only


def env(doc: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(doc)["env"]}


def is_api(doc: dict[str, Any]) -> bool:
    return doc["metadata"].get("labels", {}).get("platsync.io/component") == "api"


def apis() -> dict[str, dict[str, Any]]:
    """The committed API Deployments by side."""
    return {d["metadata"]["labels"]["platsync.io/side"]: d for d in of_kind("Deployment") if is_api(d)}


def pod_settings(tmp_path: Path, doc: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> Settings:
    """The settings the server loads: its ConfigMap's file plus its environment (each Secret's key filled)."""
    volume = next(v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == "settings")
    path = tmp_path / f"{doc['metadata']['name']}.toml"
    path.write_text(configmaps[volume["configMap"]["name"]]["data"]["platsync.toml"], encoding="utf-8")
    variables = {k: v if isinstance(v, str) else f"secret-{v['secretKeyRef']['name']}-{v['secretKeyRef']['key']}"
                 for k, v in env(doc).items()}
    assert variables.pop("PLATSYNC_CONFIG") == "/etc/platsync/platsync.toml"
    return load_settings(path, env=variables)


def ingress_of(policies: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Every ingress rule admitting traffic to a pod with ``labels`` (the union of the policies selecting it)."""
    return [rule for p in policies
            if "Ingress" in p["spec"]["policyTypes"]
            and all(labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())
            for rule in p["spec"].get("ingress", [])]


def test_each_side_serves_its_reference_api_with_probes_on_healthz() -> None:
    deployments = apis()
    assert set(deployments) == {"local", "remote"}
    for side, doc in deployments.items():
        assert doc["metadata"]["name"] == f"platsync-api-{side}" and doc["spec"]["replicas"] == CFG.api_replicas
        assert validate_document(doc, VERSION) == []
        c = container(doc)
        # The module the embedded stack runs (infra/local/api_runtime.py), on the endpoint's side of its settings.
        # X-Hybridmode follows the side's mode server over its Service: the pod has no state file of it.
        assert c["command"] == ["python", "-m", MODULE, "--side", side, "--mode-url",
                                f"http://platsync-mode-{side}:{CFG.mode_port}/healthz"]
        assert any(svc["metadata"]["name"] == f"platsync-mode-{side}" and svc["spec"]["ports"][0]["port"] ==
                   CFG.mode_port for svc in of_kind("Service"))
        assert c["ports"] == [{"name": "api", "containerPort": CFG.api_port}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
        assert c["resources"] == CFG.resources["api"].as_k8s()
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        template = doc["spec"]["template"]
        assert "annotations" not in template["metadata"]  # it serves no /metrics: nothing to scrape
        assert template["spec"]["automountServiceAccountToken"] is False
        # No Kafka: no user, no cluster CA, no Kafka client policy; not a db-client (its own policies).
        labels = template["metadata"]["labels"]
        assert not {"platsync.io/kafka-client", "platsync.io/db-client"} & set(labels)
        assert not [e for e in env(doc) if e.startswith("PLATSYNC_BROKER")]
        assert "kafka-ca" not in {v["name"] for v in template["spec"]["volumes"]}
        # The same settings as the side's mode server.
        mode = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == f"platsync-mode-{side}")
        settings_of = [next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "settings")
                       for d in (doc, mode)]
        assert settings_of[0] == settings_of[1]


def test_its_passwords_come_from_the_endpoints_secrets() -> None:
    secrets = {s["metadata"]["name"]: s for s in of_kind("Secret")}
    for side, doc in apis().items():
        assert process_roles()[f"api-{side}"] == [(side, APP)]  # the access policy's role of the API over HTTP
        variables = env(doc)
        assert variables[f"PLATSYNC_API_{side.upper()}_PORT"] == str(CFG.api_port)
        refs = {k: v["secretKeyRef"] for k, v in variables.items() if isinstance(v, dict)}
        assert refs == {"PLATSYNC_PG_APP_PASSWORD": {"name": f"platsync-db-{side}", "key": "app-password"},
                        "PLATSYNC_KEYCLOAK_ADMIN_PASSWORD": {"name": f"platsync-keycloak-{side}",
                                                             "key": "admin-password"}}
        for ref in refs.values():
            assert secrets[ref["name"]]["stringData"][ref["key"]] == "REPLACE-ME"
        assert not any("password" in a.lower() for a in container(doc)["command"])


def test_the_pod_settings_make_it_serve_its_node_with_the_app_role_and_its_keycloak(tmp_path: Path) -> None:
    configmaps = {d["metadata"]["name"]: d for d in of_kind("ConfigMap")}
    for side, doc in apis().items():
        s = pod_settings(tmp_path, doc, configmaps)
        assert (s.host, s.api_port(side)) == ("0.0.0.0", CFG.api_port)
        node = DEPLOYMENT.settings.node(side)
        assert (s.keycloak_url(side), s.keycloak_realm) == (node.keycloak_url, DEPLOYMENT.settings.keycloak_realm)
        assert s.keycloak_admin_password == f"secret-platsync-keycloak-{side}-admin-password"
        url = dsn(s, side, "meta", APP)
        assert role_name(s, side, APP) == "platsync_app"
        assert url.startswith(f"postgresql+psycopg://{role_name(s, side, APP)}:secret-platsync-db-{side}-app-password@"
                              f"{DEPLOYMENT.settings.pg_host(side)}:{DEPLOYMENT.settings.pg_port(side)}/meta")
        # The server itself, built from these settings: its probe answers, tokens are checked at the node's realm.
        assert userinfo_url(s.keycloak_url(side), s.keycloak_realm).startswith(node.keycloak_url + "/realms/")

        async def healthz(s: Settings = s, side: str = side) -> dict[str, Any]:
            app = create_app(s, side, token_check=object(), api_factory=lambda: None,  # type: ignore[arg-type,return-value]
                             mode=lambda: "normal")
            async with TestClient(TestServer(app)) as client:
                response = await client.get("/healthz")
                assert response.status == 200
                body: dict[str, Any] = await response.json()
                return body

        body = asyncio.run(healthz())
        assert body["side"] == side and body["status"] == "ok"


def test_a_service_exposes_the_api_port() -> None:
    services = {d["metadata"]["name"]: d for d in of_kind("Service")}
    for side, doc in apis().items():
        service = services[f"platsync-api-{side}"]
        assert service["spec"]["ports"] == [{"name": "api", "port": CFG.api_port, "targetPort": "api"}]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in service["spec"]["selector"].items())


def test_only_labelled_callers_reach_it_and_it_reaches_only_its_nodes_postgres_keycloak_mode_and_dns() -> None:
    policies = of_kind("NetworkPolicy")
    cidrs = {"local": CFG.local_db_cidrs, "remote": CFG.remote_db_cidrs}
    for side, doc in apis().items():
        labels = doc["spec"]["template"]["metadata"]["labels"]
        on_api_port = [r for r in ingress_of(policies, labels) if {p["port"] for p in r["ports"]} == {CFG.api_port}]
        assert on_api_port == [{"from": [{"namespaceSelector": {},
                                          "podSelector": {"matchLabels": {api.CLIENT_LABEL: "true"}}}],
                                "ports": [{"protocol": "TCP", "port": CFG.api_port}]}]
        assert api.CLIENT_LABEL == "platsync.io/api-client"
        rules = egress_of(policies, labels)
        dns = [r for r in rules if {p["port"] for p in r["ports"]} == {53}]
        assert len(dns) == 1
        (mode,) = [r for r in rules if r not in dns and "podSelector" in r["to"][0]]
        assert mode == {"to": [{"podSelector": {"matchLabels": {"platsync.io/side": side,
                                                                 "platsync.io/component": "mode"}}}],
                        "ports": [{"protocol": "TCP", "port": CFG.mode_port}]}
        mode_server = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == f"platsync-mode-{side}")
        assert mode["to"][0]["podSelector"]["matchLabels"].items() <= \
            mode_server["spec"]["template"]["metadata"]["labels"].items()
        (stores,) = [r for r in rules if r not in dns and r is not mode]
        assert [t["ipBlock"]["cidr"] for t in stores["to"]] == list(cidrs[side])
        # Its PostgreSQL and its Keycloak (https: 443), never Kafka, the registry or the other side.
        assert stores["ports"] == [{"protocol": "TCP", "port": 443},
                                   {"protocol": "TCP", "port": DEPLOYMENT.settings.pg_port(side)}]
        assert not any("podSelector" in t for r in rules if r not in (dns[0], mode) for t in r["to"])


@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_serves_an_api_per_endpoint_on_its_node(name: str, tmp_path: Path) -> None:
    p = plan(name)
    found = {d["metadata"]["name"]: (node, d) for node, d in resources(name, "Deployment") if is_api(d)}
    served = [e for e in p.endpoints if e.role != "replica"]
    assert set(found) == {f"platsync-api-{res(e.id)}" for e in served}
    configmaps = {d["metadata"]["name"]: d for _, d in resources(name, "ConfigMap")}
    services = {d["metadata"]["name"]: node for node, d in resources(name, "Service")}
    policies = [d for _, d in resources(name, "NetworkPolicy")]
    for e in served:
        node, doc = found[f"platsync-api-{res(e.id)}"]
        assert node == e.node and doc["metadata"]["labels"]["platsync.io/link"] == e.tenant
        assert validate_document(doc, VERSION) == []
        assert container(doc)["command"][3:] == ["--side", e.role, "--mode-url",
                                                 f"http://platsync-mode-{res(e.id)}:{CFG.mode_port}/healthz"]
        assert env(doc)["PLATSYNC_PG_APP_PASSWORD"]["secretKeyRef"]["name"] == f"platsync-db-{res(e.id)}"
        assert services[f"platsync-api-{res(e.id)}"] == e.node
        s = pod_settings(tmp_path, doc, configmaps)
        here = CFG.nodes.get(e.node)
        hospital = e.role == "local"
        host = here.pg_host if hospital and here else DEPLOYMENT.settings.pg_host("remote")
        keycloak = here.keycloak_url if hospital and here else DEPLOYMENT.settings.node("remote").keycloak_url
        assert s.keycloak_url(e.role) == keycloak
        # The tenant's own databases and role (the cloud's: the hospital's suffix), as platsync_app.
        url = dsn(s, e.role, "meta", APP)
        assert f"@{host}:" in url and url.endswith(f"/{e.database('meta')}")
        assert url.startswith(f"postgresql+psycopg://{role_name(s, e.role, APP)}:")
        (stores,) = [r for r in egress_of(policies, doc["spec"]["template"]["metadata"]["labels"])
                     if {q["port"] for q in r["ports"]} != {53} and "ipBlock" in r["to"][0]]
        expected = here.db_cidrs if hospital and here else CFG.remote_db_cidrs
        assert [t["ipBlock"]["cidr"] for t in stores["to"]] == list(expected)


def test_the_api_port_and_replicas_are_configurable_and_checked(tmp_path: Path) -> None:
    text = DEFAULT_DEPLOYMENT_FILE.read_text(encoding="utf-8")
    path = tmp_path / "deployment.toml"
    path.write_text(text.replace("[k8s]\n", "[k8s]\napi_port = 9443\napi_replicas = 2\n", 1), encoding="utf-8")
    files = render(load_deployment(path))
    assert "containerPort: 9443\n" in files["41-deployments.yaml"] and "port: 9443\n" in files["42-services.yaml"]
    assert "value: '9443'\n" in files["41-deployments.yaml"]
    path.write_text(text.replace("[k8s]\n", "[k8s]\napi_port = 0\napi_replicas = 0\n", 1), encoding="utf-8")
    with pytest.raises(DeploymentError) as info:
        load_deployment(path)
    assert "api_port must be a port (1..65535)" in info.value.faults
    assert "api_replicas must be >= 1" in info.value.faults
