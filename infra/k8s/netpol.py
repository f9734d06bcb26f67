"""NetworkPolicies: deny everything, then allow exactly the paths the pipeline needs.

- DNS for every pod;
- Kafka clients (``platsync.io/kafka-client``) -> the Kafka pods' TLS listener (Strimzi adds the
  listener's ingress policy from ``networkPolicyPeers``; Strimzi's own pods talk among themselves);
- database clients (``platsync.io/db-client``) of a side -> that side's PostgreSQL and Keycloak
  ranges only: hospital-side pods never reach the cloud's databases and the other way round (for a
  topology: per node, ``platsync.io/node``; a hospital's pods never reach another node's databases);
- the schema registry <- Kafka clients; the mode servers' X-Hybridmode port and every pod's
  metrics port <- any namespace (tighten to the monitoring namespace where it is known).
"""

from __future__ import annotations

from typing import Any

from infra.k8s.config import Deployment
from infra.k8s.kafka import TLS_PORT
from infra.k8s.scope import Scope, res
from infra.k8s.workloads import REGISTRY_PORT

API = "networking.k8s.io/v1"
#: The Kubernetes API server: Strimzi's entity operator and the Connect build talk to it.
API_SERVER_PORTS = (443, 6443)


def network_policy(dep: Deployment, name: str, selector: dict[str, Any], ingress: list[dict[str, Any]] | None = None,
                   egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A NetworkPolicy selecting pods by ``selector``, with the ingress and egress rules given (None: that
    direction is not restricted by this policy)."""
    types = []
    spec: dict[str, Any] = {"podSelector": selector}
    if ingress is not None:
        types.append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        types.append("Egress")
        spec["egress"] = egress
    spec["policyTypes"] = types
    return {"apiVersion": API, "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": dep.config.namespace}, "spec": spec}


def network_policies(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The NetworkPolicies of ``nodes``: the namespace-wide ones with the cloud root, and per node
    its database clients' egress to that node's database ranges only."""
    dep, cfg = scope.dep, scope.dep.config
    policies = _cluster_policies(dep) if scope.root in nodes else []
    ports = [{"protocol": "TCP", "port": p} for p in (cfg.db_port, *cfg.keycloak_ports)]
    for node in (n for n in scope.nodes if n in nodes):
        cidrs = scope.node_config(node).db_cidrs
        policies.append(network_policy(dep, f"{res(node)}-databases-egress",
                                       {"matchLabels": {**scope.node_label(node), "platsync.io/db-client": "true"}},
                                       egress=[{"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": ports}]))
    return policies


def _cluster_policies(dep: Deployment) -> list[dict[str, Any]]:
    """Default deny, DNS, Strimzi, Kafka clients, the registry, metrics and mode ports."""
    cfg = dep.config
    kafka_pods = {"matchLabels": {"strimzi.io/cluster": cfg.kafka_cluster, "strimzi.io/kind": "Kafka"}}
    strimzi_pods = {"matchExpressions": [{"key": "strimzi.io/cluster", "operator": "Exists"}]}
    kafka_client = {"matchLabels": {"platsync.io/kafka-client": "true"}}
    policies = [
        network_policy(dep, "default-deny", {}, ingress=[], egress=[]),
        network_policy(dep, "allow-dns", {}, egress=[{
            "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]),
        # Strimzi's pods: among themselves (replication, controllers, entity operator) and the API server.
        network_policy(dep, "strimzi-egress", strimzi_pods, egress=[
            {"to": [{"podSelector": strimzi_pods}]},
            {"ports": [{"protocol": "TCP", "port": p} for p in API_SERVER_PORTS]}]),
        network_policy(dep, "kafka-clients-egress", kafka_client, egress=[
            {"to": [{"podSelector": kafka_pods}], "ports": [{"protocol": "TCP", "port": TLS_PORT}]},
            {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "platsync-schema-registry"}}}],
             "ports": [{"protocol": "TCP", "port": REGISTRY_PORT}]}]),
        network_policy(dep, "schema-registry-ingress",
                              {"matchLabels": {"app.kubernetes.io/name": "platsync-schema-registry"}},
                              ingress=[{"from": [{"podSelector": kafka_client}],
                                 "ports": [{"protocol": "TCP", "port": REGISTRY_PORT}]}]),
        network_policy(dep, "metrics-ingress", {"matchLabels": {"app.kubernetes.io/part-of": "platsync"}},
                       ingress=[{"from": [{"namespaceSelector": {}}],
                                 "ports": [{"protocol": "TCP", "port": cfg.container_port}]}]),
        network_policy(dep, "mode-ingress", {"matchLabels": {"platsync.io/component": "mode"}},
                       ingress=[{"from": [{"namespaceSelector": {}}],
                                 "ports": [{"protocol": "TCP", "port": cfg.mode_port}]}]),
    ]
    return policies
