"""Strimzi resources: the Kafka cluster, its topics and users, Kafka Connect and the connectors.

The Debezium connector of each captured database is the embedded capture's connector: its config
is :func:`connectors.capture.debezium.connector_properties` minus :data:`ENGINE_ONLY_KEYS` plus
:data:`CONNECT_ONLY_KEYS` (docs/kubernetes.md explains each). Every table of one database goes to
ONE raw topic with one partition (:func:`raw_topic`), so that a transaction's marker row stays
before its rows, in WAL order, for the stamper (:mod:`connectors.capture.stamp`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from connectors.capture.debezium import connector_properties
from connectors.capture.stamp import raw_topic, stamp_group
from infra.k8s.config import Deployment, DeploymentError
from streams.core.model import CAPTURED_STORES, ROUTES, SIDES, route_for_source
from streams.core.modes import heartbeat_topic
from streams.ops.access_policy import KafkaAcl, kafka_acls
from streams.ops.dlq import retried_topic
from streams.runtime.credentials import kafka_principals
from streams.runtime.settings import Settings

API = "kafka.strimzi.io/v1beta2"
TLS_PORT = 9093
CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
#: Keys of connector_properties that only the embedded engine understands, and where they went.
ENGINE_ONLY_KEYS: dict[str, str] = {
    "name": "KafkaConnector metadata.name (Strimzi refuses it in spec.config)",
    "connector.class": "KafkaConnector spec.class (Strimzi refuses it in spec.config)",
    "offset.storage": "Kafka Connect keeps source offsets in its offsets topic (KafkaConnect offset.storage.topic)",
    "offset.storage.file.filename": "no file offset store in Kafka Connect",
    "offset.flush.interval.ms": "a worker setting: KafkaConnect spec.config (same value)",
    "offset.flush.timeout.ms": "a worker setting: KafkaConnect spec.config (same value)",
    "record.processing.threads": "the embedded (asynchronous) engine's converter threads",
    "converter.schemas.enable": "the embedded engine's JSON format key; Connect reads key/value.converter.*",
}
#: Keys only the Connect connector has (``transforms`` replaces the embedded value: the router is appended).
CONNECT_ONLY_KEYS: tuple[str, ...] = ("key.converter", "value.converter", "transforms", "transforms.route.type",
                                      "transforms.route.regex", "transforms.route.replacement")
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
#: Environment variables of the Connect pods that carry database passwords (from Secrets).
CAPTURE_PASSWORD_ENV = "PLATSYNC_PG_CAPTURE_PASSWORD"
KEYCLOAK_DB_PASSWORD_ENV = "PLATSYNC_KEYCLOAK_DB_PASSWORD"
_DNS = re.compile(r"[^a-z0-9.-]")


def k8s_name(name: str) -> str:
    """A DNS-1123 resource name for ``name`` (``_`` -> ``-``, lower case)."""
    return _DNS.sub("-", name.lower()).strip("-.")


def connect_name(side: str) -> str:
    """Name of the KafkaConnect cluster (and its Kafka user) of one side."""
    return f"platsync-connect-{side}"


def bootstrap(dep: Deployment) -> str:
    """The cluster's TLS bootstrap address inside the namespace."""
    return f"{dep.config.kafka_cluster}-kafka-bootstrap.{dep.config.namespace}.svc:{TLS_PORT}"


def cluster_ca_secret(dep: Deployment) -> str:
    """The Secret Strimzi keeps the cluster CA certificate in (``ca.crt``, ``ca.p12``, ``ca.password``)."""
    return f"{dep.config.kafka_cluster}-cluster-ca-cert"


def _meta(dep: Deployment, name: str, labels: dict[str, str] | None = None,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": dep.config.namespace}
    if labels:
        meta["labels"] = dict(sorted(labels.items()))
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta


def _cluster_label(dep: Deployment) -> dict[str, str]:
    return {"strimzi.io/cluster": dep.config.kafka_cluster}


def kafka_cluster(dep: Deployment) -> list[dict[str, Any]]:
    """The KRaft Kafka cluster (one node pool of combined controller/broker nodes)."""
    cfg = dep.config
    kafka = {
        "apiVersion": API, "kind": "Kafka",
        "metadata": _meta(dep, cfg.kafka_cluster, annotations={"strimzi.io/kraft": "enabled",
                                                              "strimzi.io/node-pools": "enabled"}),
        "spec": {
            "kafka": {
                "version": cfg.kafka_version,
                "listeners": [{"name": "tls", "port": TLS_PORT, "type": "internal", "tls": True,
                               "authentication": {"type": "scram-sha-512"},
                               # Strimzi turns this into the listener's NetworkPolicy.
                               "networkPolicyPeers": [{"podSelector": {"matchLabels": {
                                   "platsync.io/kafka-client": "true"}}}]}],
                "authorization": {"type": "simple"},
                "config": {
                    "auto.create.topics.enable": False,
                    "default.replication.factor": cfg.topic_replicas,
                    "min.insync.replicas": cfg.min_insync_replicas,
                    "offsets.topic.replication.factor": cfg.topic_replicas,
                    "transaction.state.log.replication.factor": cfg.topic_replicas,
                    "transaction.state.log.min.isr": cfg.min_insync_replicas,
                },
                "resources": cfg.resources["kafka"].as_k8s(),
            },
            "entityOperator": {"topicOperator": {"resources": cfg.resources["operator"].as_k8s()},
                               "userOperator": {"resources": cfg.resources["operator"].as_k8s()}},
        },
    }
    pool = {
        "apiVersion": API, "kind": "KafkaNodePool",
        "metadata": _meta(dep, "dual-role", labels=_cluster_label(dep)),
        "spec": {
            "replicas": cfg.kafka_nodes,
            "roles": ["controller", "broker"],
            "storage": {"type": "jbod", "volumes": [{"id": 0, "type": "persistent-claim", "size": cfg.kafka_storage,
                                                     "deleteClaim": False}]},
            "resources": cfg.resources["kafka"].as_k8s(),
        },
    }
    return [kafka, pool]


def topic_partitions(dep: Deployment) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every topic of the deployment: name -> (partitions, topic config)."""

    s, cfg = dep.settings, dep.config
    keep = {"retention.ms": cfg.retention_ms, "cleanup.policy": "delete",
            "min.insync.replicas": cfg.min_insync_replicas}
    compact = {"cleanup.policy": "compact", "min.insync.replicas": cfg.min_insync_replicas}
    topics: dict[str, tuple[int, dict[str, Any]]] = {}
    for side in SIDES:
        for store in CAPTURED_STORES[side]:
            topics[s.topic(side, store)] = (cfg.source_topic_partitions, keep)
            topics[raw_topic(s, side, store)] = (1, keep)  # WAL order: marker before its rows
        name = connect_name(side)
        topics[f"{name}-configs"] = (1, compact)
        topics[f"{name}-offsets"] = (25, compact)
        topics[f"{name}-status"] = (5, compact)
    for route in ROUTES:
        topics[s.dead_letter_topic(route)] = (1, keep)
    topics[heartbeat_topic(s)] = (1, keep)
    topics[retried_topic(s)] = (1, keep)
    topics["_schemas"] = (1, compact)  # the schema registry's store
    return topics


def kafka_topics(dep: Deployment) -> list[dict[str, Any]]:
    """One KafkaTopic per topic, partitions and replicas explicit (no auto-creation)."""
    return [{"apiVersion": API, "kind": "KafkaTopic",
             "metadata": _meta(dep, k8s_name(name) or "topic", labels=_cluster_label(dep)),
             "spec": {"topicName": name, "partitions": partitions, "replicas": dep.config.topic_replicas,
                      "config": dict(sorted(config.items()))}}
            for name, (partitions, config) in sorted(topic_partitions(dep).items())]


def kubernetes_only_acls(dep: Deployment) -> list[KafkaAcl]:
    """ACLs of what exists only on Kubernetes: Connect, the stampers' raw reads, the registry.

    The stamper runs as its side's ``capture-<side>`` principal (its ACLs come from
    :func:`streams.ops.access_policy.kafka_acls`); here it gains the raw topics it reads.
    """
    s = dep.settings
    users = kafka_principals(s)
    acls: list[KafkaAcl] = []
    for side in SIDES:
        stamper, connect = users[f"capture-{side}"], connect_name(side)
        for store in CAPTURED_STORES[side]:
            acls.append(KafkaAcl(stamper, "topic", raw_topic(s, side, store), "literal", ("Read", "Describe")))
            acls.append(KafkaAcl(connect, "topic", raw_topic(s, side, store), "literal", ("Write", "Describe")))
        acls.append(KafkaAcl(stamper, "group", stamp_group(s, side), "literal", ("Read",)))
        # Raw records it cannot convert go to the dead letters of the route they belong to.
        acls.append(KafkaAcl(stamper, "topic", s.dead_letter_topic(route_for_source(side)), "literal",
                             ("Write", "Describe")))
        # 'platsync dlq retry' re-drives such a record to its raw topic.
        acls += [KafkaAcl(users["operator"], "topic", raw_topic(s, side, store), "literal", ("Write",))
                 for store in CAPTURED_STORES[side]]
        acls.append(KafkaAcl(connect, "topic", f"{connect}-", "prefixed",
                             ("Read", "Write", "Describe", "DescribeConfigs")))
        acls.append(KafkaAcl(connect, "group", connect, "literal", ("Read",)))
        acls.append(KafkaAcl(connect, "cluster", "kafka-cluster", "literal", ("IdempotentWrite",)))
    acls.append(KafkaAcl("platsync-schema-registry", "topic", "_schemas", "literal",
                         ("Read", "Write", "Describe", "DescribeConfigs")))
    acls.append(KafkaAcl("platsync-schema-registry", "group", "schema-registry", "literal", ("Read", "Describe")))
    return acls


def _strimzi_acl(acl: KafkaAcl) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": acl.resource_type}
    if acl.resource_type != "cluster":
        resource["name"] = acl.name
        resource["patternType"] = "prefix" if acl.pattern == "prefixed" else "literal"
    return {"type": "allow", "resource": resource, "operations": sorted(acl.operations), "host": "*"}


def user_name(principal: str) -> str:
    """The Kafka user (KafkaUser name) of a principal; Kubernetes names admit no ``_``."""
    return k8s_name(principal)


def kafka_users(dep: Deployment) -> list[dict[str, Any]]:
    """One SCRAM-SHA-512 KafkaUser per principal with its ACLs (Strimzi creates its Secret)."""
    grouped: dict[str, list[KafkaAcl]] = {}
    for acl in [*kafka_acls(dep.settings), *kubernetes_only_acls(dep)]:
        grouped.setdefault(user_name(acl.principal), []).append(acl)
    clash = {user_name(p) for p in kafka_principals(dep.settings).values()}
    if len(clash) != len(kafka_principals(dep.settings)):
        raise DeploymentError("kafka principals", ["two principals map to the same Kubernetes name"])
    out = []
    for name in sorted(grouped):
        acls = sorted((_strimzi_acl(a) for a in grouped[name]),
                      key=lambda a: (a["resource"]["type"], a["resource"].get("name", ""), a["operations"]))
        out.append({"apiVersion": API, "kind": "KafkaUser", "metadata": _meta(dep, name, labels=_cluster_label(dep)),
                    "spec": {"authentication": {"type": "scram-sha-512"},
                             "authorization": {"type": "simple", "acls": acls}}})
    return out


def connect_settings(dep: Deployment, side: str) -> Settings:
    """The settings the connectors of ``side`` are rendered from: the pods' settings with each
    database password replaced by a Connect config-provider reference to a Secret-fed variable."""
    s = dep.settings
    changes: dict[str, Any] = {"pg_capture_password": f"${{env:{CAPTURE_PASSWORD_ENV}}}"}
    db = s.node(side).keycloak_db
    if db:
        s = s.with_node(side, keycloak_db=f"{db} password=${{env:{KEYCLOAK_DB_PASSWORD_ENV}}}")
    return dataclasses.replace(s, **changes)


def connector_config(dep: Deployment, side: str, store: str) -> dict[str, str]:
    """The KafkaConnector ``spec.config`` of one captured database."""
    props = connector_properties(connect_settings(dep, side), side, store, echo_filter=True)
    config = {k: v for k, v in props.items() if k not in ENGINE_ONLY_KEYS}
    transforms = [t for t in props.get("transforms", "").split(",") if t]
    config.update({
        "key.converter": JSON_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "transforms": ",".join([*transforms, "route"]),
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": ".*",
        "transforms.route.replacement": raw_topic(dep.settings, side, store),
    })
    return dict(sorted(config.items()))


def kafka_connect(dep: Deployment, side: str) -> dict[str, Any]:
    """The Kafka Connect cluster of one side, its image built with Debezium and the echo filter."""
    cfg, name = dep.config, connect_name(side)
    echo_jar: dict[str, Any] = {"type": "jar", "url": cfg.echo_filter_jar_url}
    if cfg.echo_filter_jar_sha512:
        echo_jar["sha512sum"] = cfg.echo_filter_jar_sha512
    env = [{"name": CAPTURE_PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": f"platsync-db-{side}", "key": "capture-password"}}},
           {"name": KEYCLOAK_DB_PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": f"platsync-keycloak-{side}", "key": "db-password"}}}]
    return {
        "apiVersion": API, "kind": "KafkaConnect",
        "metadata": _meta(dep, name, labels={"platsync.io/side": side},
                          annotations={"strimzi.io/use-connector-resources": "true"}),
        "spec": {
            "version": cfg.kafka_version,
            "replicas": 1,
            "bootstrapServers": bootstrap(dep),
            "tls": {"trustedCertificates": [{"secretName": cluster_ca_secret(dep), "certificate": "ca.crt"}]},
            "authentication": {"type": "scram-sha-512", "username": name,
                               "passwordSecret": {"secretName": name, "password": "password"}},
            "config": {
                "group.id": name,
                "offset.storage.topic": f"{name}-offsets",
                "config.storage.topic": f"{name}-configs",
                "status.storage.topic": f"{name}-status",
                "config.storage.replication.factor": -1,
                "offset.storage.replication.factor": -1,
                "status.storage.replication.factor": -1,
                "offset.flush.interval.ms": int(_engine(dep, side)["offset.flush.interval.ms"]),
                "offset.flush.timeout.ms": int(_engine(dep, side)["offset.flush.timeout.ms"]),
                "key.converter": JSON_CONVERTER,
                "value.converter": JSON_CONVERTER,
                "key.converter.schemas.enable": False,
                "value.converter.schemas.enable": False,
                "config.providers": "env",
                "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
            },
            "resources": cfg.resources["connect"].as_k8s(),
            "build": {
                "output": {"type": "docker", "image": f"{cfg.connect_image}-{side}",
                           "pushSecret": cfg.connect_push_secret},
                "plugins": [{"name": "debezium-postgres",
                             "artifacts": [{"type": "tgz", "url": cfg.debezium_plugin_url}]},
                            {"name": "platsync-echo-filter", "artifacts": [echo_jar]}],
            },
            "template": {
                "pod": {"metadata": {"labels": {"platsync.io/side": side, "platsync.io/component": "connect",
                                                "platsync.io/kafka-client": "true", "platsync.io/db-client": "true"}}},
                "connectContainer": {"env": env},
            },
        },
    }


def _engine(dep: Deployment, side: str) -> dict[str, str]:
    return connector_properties(connect_settings(dep, side), side, "meta")


def kafka_connectors(dep: Deployment, side: str) -> list[dict[str, Any]]:
    """One Debezium KafkaConnector per captured database of ``side``."""
    return [{"apiVersion": API, "kind": "KafkaConnector",
             "metadata": _meta(dep, k8s_name(f"platsync-{side}-{store}"),
                               labels={"strimzi.io/cluster": connect_name(side), "platsync.io/side": side}),
             "spec": {"class": CONNECTOR_CLASS, "tasksMax": 1, "autoRestart": {"enabled": True},
                      "config": connector_config(dep, side, store)}}
            for store in CAPTURED_STORES[side]]
