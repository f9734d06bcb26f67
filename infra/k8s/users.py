"""Strimzi KafkaUsers: one per principal of the plan, with the ACLs of the access policy.

The ACLs are :func:`streams.ops.access_policy.kafka_acls` for the scope's plan plus what exists only
on Kubernetes (:func:`kubernetes_only_acls`). Each user is rendered on the node its process runs
on (the operator and the registry on the cloud root), so a node's directory lists exactly what
its pods may do in Kafka.
"""

from __future__ import annotations

from typing import Any

from connectors.capture.stamp import raw_topic, stamp_group
from infra.k8s.config import DeploymentError
from infra.k8s.kafka import API, cluster_label, connect_name, meta
from infra.k8s.scope import Scope, k8s_name
from streams.ops.access_policy import KafkaAcl, kafka_acls, plan_principals

REGISTRY_USER = "platsync-schema-registry"


def user_name(principal: str) -> str:
    """The Kafka user (KafkaUser name) of a principal; Kubernetes names admit no ``_``."""
    return k8s_name(principal)


def kubernetes_only_acls(scope: Scope) -> list[KafkaAcl]:
    """ACLs of what exists only on Kubernetes: Connect, the stampers' raw reads, the registry.

    The stamper runs as its endpoint's ``capture-<endpoint>`` principal (its ACLs come from
    :func:`streams.ops.access_policy.kafka_acls`); here it gains the raw topics it reads.
    """
    plan, prefix = scope.plan, scope.prefix
    users = plan_principals(scope.dep.settings, plan)
    acls: list[KafkaAcl] = []
    for endpoint in scope.captures(scope.nodes):
        link, side = scope.link_settings(endpoint.tenant), scope.side(endpoint.id)
        stamper, connect = users[f"capture-{endpoint.id}"], connect_name(endpoint.id)
        for store in endpoint.captured:
            acls.append(KafkaAcl(stamper, "topic", raw_topic(link, side, store), "literal", ("Read", "Describe")))
            acls.append(KafkaAcl(connect, "topic", raw_topic(link, side, store), "literal", ("Write", "Describe")))
        acls.append(KafkaAcl(stamper, "group", stamp_group(link, side), "literal", ("Read",)))
        # Raw records it cannot convert go to the dead letters of the route they belong to: its home
        # link's route out of the endpoint (connectors/capture/stamp.py).
        acls += [KafkaAcl(stamper, "topic", plan.dead_letter_topic(prefix, r.name), "literal", ("Write", "Describe"))
                 for r in plan.routes if r.source == endpoint.id and plan.endpoint(r.target).role != "replica"]
        # 'platsync dlq retry' re-drives such a record to its raw topic.
        acls += [KafkaAcl(users["operator"], "topic", raw_topic(link, side, store), "literal", ("Write",))
                 for store in endpoint.captured]
        acls.append(KafkaAcl(connect, "topic", f"{connect}-", "prefixed",
                             ("Read", "Write", "Describe", "DescribeConfigs")))
        acls.append(KafkaAcl(connect, "group", connect, "literal", ("Read",)))
        acls.append(KafkaAcl(connect, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",)))
    acls.append(KafkaAcl(REGISTRY_USER, "topic", "_schemas", "literal",
                         ("Read", "Write", "Describe", "DescribeConfigs")))
    acls.append(KafkaAcl(REGISTRY_USER, "group", "schema-registry", "literal", ("Read", "Describe")))
    return acls


def user_nodes(scope: Scope) -> dict[str, str]:
    """Kafka user -> the node its pods run on (the operator and the registry: the cloud root)."""
    nodes = {user_name(principal): scope.root if process == "operator" else scope.plan.node_of_process(process)
             for process, principal in plan_principals(scope.dep.settings, scope.plan).items()}
    nodes.update({user_name(connect_name(e.id)): e.node for e in scope.captures(scope.nodes)})
    nodes[REGISTRY_USER] = scope.root
    return nodes


def _strimzi_acl(acl: KafkaAcl) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": acl.resource_type}
    if acl.resource_type != "cluster":
        resource["name"] = acl.name
        resource["patternType"] = "prefix" if acl.pattern == "prefixed" else "literal"
    return {"type": "allow", "resource": resource, "operations": sorted(acl.operations), "host": "*"}


def kafka_users(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """One SCRAM-SHA-512 KafkaUser per principal whose pods run on ``nodes``, with its ACLs
    (Strimzi creates its Secret)."""
    principals = plan_principals(scope.dep.settings, scope.plan)
    if len({user_name(p) for p in principals.values()}) != len(principals):
        raise DeploymentError("kafka principals", ["two principals map to the same Kubernetes name"])
    where = user_nodes(scope)
    grouped: dict[str, list[KafkaAcl]] = {}
    for acl in [*kafka_acls(scope.dep.settings, scope.plan), *kubernetes_only_acls(scope)]:
        grouped.setdefault(user_name(acl.principal), []).append(acl)
    out = []
    for name in sorted(n for n in grouped if where[n] in nodes):
        acls = sorted((_strimzi_acl(a) for a in grouped[name]),
                      key=lambda a: (a["resource"]["type"], a["resource"].get("name", ""), a["operations"]))
        out.append({"apiVersion": API, "kind": "KafkaUser",
                    "metadata": meta(scope.dep, name, labels=cluster_label(scope.dep)),
                    "spec": {"authentication": {"type": "scram-sha-512"},
                             "authorization": {"type": "simple", "acls": acls}}})
    return out
