"""Kubernetes workload of each node's reference API over HTTP (docs/reference_api_http.md, docs/kubernetes.md).

Every endpoint with a mode server (the default deployment's ``local`` and ``remote``; in a network each hospital
and each hospital's stores in the cloud, ``remote.<hospital>``; a regional server's read-only replicas serve no
API) gets, like its mode server:

- a Deployment ``platsync-api-<endpoint>`` running ``python -m connectors.reference_api.http_server --side <side>
  --mode-url <its mode server's Service>`` (``X-Hybridmode`` follows the mode server over HTTP: a pod has no shared
  data dir with the mode server's state file; ``<side>``: the endpoint's name in the link settings its pod mounts,
  ``local`` or ``remote``) with the settings ConfigMap of its node's other pods (its Keycloak URL and realm are
  there), listening on ``api_port`` of ``[k8s]`` (passed as ``PLATSYNC_API_<SIDE>_PORT``). It connects to the stores
  as the API's role (``platsync_app``, the access policy's ``api-<side>``): ``PLATSYNC_PG_APP_PASSWORD`` from the
  endpoint's database Secret (``app-password``); PRV_STF_003 and PRV_ATH_001 write accounts through Keycloak's admin
  API, so it gets ``PLATSYNC_KEYCLOAK_ADMIN_PASSWORD`` from the endpoint's Keycloak Secret like the worker. Its
  liveness and readiness probes read ``GET /healthz`` on the API port (it serves no ``/metrics``: no scrape
  annotations).
  No Kafka: no KafkaUser, no cluster CA, no ``platsync.io/kafka-client`` label;
- a Service ``platsync-api-<endpoint>`` on ``api_port`` (TLS is the cluster ingress's to terminate);
- per node, ``<node>-api-ingress``: only pods labelled :data:`CLIENT_LABEL` (in any namespace: an ingress
  controller, the hospital's applications) reach the API port; and ``<node>-api-egress``: the node's PostgreSQL
  (``db_cidrs`` on its ``pg_port``) and its Keycloak (``db_cidrs`` on the port of its ``keycloak_url``, like the
  database clients' policy, which assumes Keycloak in those ranges) and its mode servers' port, nothing else (DNS
  comes with the namespace-wide policy). The pod is no ``platsync.io/db-client``.
"""

from __future__ import annotations

from typing import Any

from infra.k8s.fhir import service_port
from infra.k8s.netpol import network_policy
from infra.k8s.scope import CONFIG_PATH, Scope, res
from infra.k8s.workloads import container_spec, deployment_doc, mode_name, object_meta, secret_env
from streams.ops.access_policy import process_roles
from streams.topology.plan import Endpoint

COMPONENT = "api"
MODULE = "connectors.reference_api.http_server"  # infra/local/api_runtime.py runs the same module
#: The label of the pods allowed to call the reference API (docs/kubernetes.md, section 12).
CLIENT_LABEL = "platsync.io/api-client"
HEALTH_PATH = "/healthz"


def endpoints(scope: Scope, nodes: frozenset[str]) -> list[Endpoint]:
    """The endpoints serving an API on ``nodes``: those with a mode server (all but regional replicas)."""
    return scope.modes(nodes)


def name(endpoint: Endpoint) -> str:
    """The Deployment's and the Service's name: ``platsync-api-<endpoint>``."""
    return f"platsync-{COMPONENT}-{res(endpoint.id)}"


def mode_url(scope: Scope, endpoint: Endpoint) -> str:
    """The endpoint's mode server (its Service), whose ``X-Hybridmode`` the API server follows: a pod has a data
    dir of its own, without the mode server's state file."""
    return f"http://{mode_name(endpoint.id)}:{scope.dep.config.mode_port}{HEALTH_PATH}"


def command(scope: Scope, endpoint: Endpoint) -> list[str]:
    """How the pod runs the server: ``python -m connectors.reference_api.http_server --side <side> --mode-url
    <its mode server>``."""
    return ["python", "-m", MODULE, "--side", scope.side(endpoint.id), "--mode-url", mode_url(scope, endpoint)]


def env(scope: Scope, endpoint: Endpoint) -> list[dict[str, Any]]:
    """The settings file, the API port and the credentials: the API role's password (the access policy's roles of
    ``api-<side>``) and, where the endpoint has Keycloak accounts, Keycloak's admin password."""
    side = scope.side(endpoint.id)
    out: list[dict[str, Any]] = [{"name": "PLATSYNC_CONFIG", "value": CONFIG_PATH},
                                 {"name": f"PLATSYNC_API_{side.upper()}_PORT", "value": str(scope.dep.config.api_port)}]
    for _, role in process_roles()[f"api-{side}"]:
        out.append(secret_env(f"PLATSYNC_PG_{role.upper()}_PASSWORD", scope.db_secret(endpoint.id), f"{role}-password"))
    if "keycloak" in endpoint.stores:  # PRV_STF_003, PRV_ATH_001: Keycloak's admin API
        out.append(secret_env("PLATSYNC_KEYCLOAK_ADMIN_PASSWORD", scope.keycloak_secret(endpoint.id),
                              "admin-password"))
    return out


def _labels(scope: Scope, endpoint: Endpoint) -> dict[str, str]:
    return {**scope.labels(endpoint.node, endpoint.id, endpoint.tenant), "platsync.io/component": COMPONENT}


def _container(scope: Scope, endpoint: Endpoint) -> dict[str, Any]:
    def probe() -> dict[str, Any]:  # a new dict each time: a shared one would be dumped as a YAML alias
        return {"httpGet": {"path": HEALTH_PATH, "port": COMPONENT}}

    container = container_spec(scope.dep, COMPONENT, command(scope, endpoint), env(scope, endpoint), COMPONENT,
                               kafka=False)
    return {**container, "ports": [{"name": COMPONENT, "containerPort": scope.dep.config.api_port}],
            "livenessProbe": {**probe(), "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 6},
            "readinessProbe": {**probe(), "periodSeconds": 5, "failureThreshold": 3}}


def deployments(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """One API server per endpoint with a mode server on ``nodes``, with its node's settings."""
    return [deployment_doc(scope.dep, name(e), _labels(scope, e), _container(scope, e),
                           scope.dep.config.api_replicas, {"emptyDir": {}}, scope.settings_configmap(e.node, e.tenant),
                           kafka=False, metrics=False)
            for e in endpoints(scope, nodes)]


def services(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The API servers' Services, on ``api_port``."""
    port = scope.dep.config.api_port
    return [{"apiVersion": "v1", "kind": "Service",
             "metadata": object_meta(scope.dep, name(e),
                                     None if scope.is_default else scope.labels(e.node, e.id, e.tenant)),
             "spec": {"selector": {"app.kubernetes.io/name": name(e)},
                      "ports": [{"name": COMPONENT, "port": port, "targetPort": COMPONENT}]}}
            for e in endpoints(scope, nodes)]


def keycloak_ports(scope: Scope, node: str) -> list[int]:
    """The port of the node's Keycloak (its URL's; without a URL, ``keycloak_ports`` of ``[k8s]``)."""
    url = scope.node_config(node).keycloak_url
    return [service_port(url)] if url else list(scope.dep.config.keycloak_ports)


def network_policies(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """Per node serving an API: ingress on the API port from :data:`CLIENT_LABEL` pods only; egress to the node's
    PostgreSQL and Keycloak only (DNS aside)."""
    dep, out = scope.dep, []
    for node in dict.fromkeys(e.node for e in endpoints(scope, nodes)):
        here = scope.node_config(node)
        selector = {"matchLabels": {**scope.node_label(node), "platsync.io/component": COMPONENT}}
        callers = {"namespaceSelector": {}, "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}}
        out.append(network_policy(dep, f"{res(node)}-{COMPONENT}-ingress", selector, ingress=[
            {"from": [callers], "ports": [{"protocol": "TCP", "port": dep.config.api_port}]}]))
        ports = sorted({here.pg_port, *keycloak_ports(scope, node)})
        mode_servers = {"podSelector": {"matchLabels": {**scope.node_label(node), "platsync.io/component": "mode"}}}
        out.append(network_policy(dep, f"{res(node)}-{COMPONENT}-egress", selector, egress=[
            {"to": [{"ipBlock": {"cidr": c}} for c in here.db_cidrs],
             "ports": [{"protocol": "TCP", "port": p} for p in ports]},
            {"to": [mode_servers], "ports": [{"protocol": "TCP", "port": dep.config.mode_port}]}]))
    return out
