"""Strimzi resources: the Kafka cluster, its topics and users, Kafka Connect and the connectors.

The Debezium connector of each captured database is the embedded capture's connector: its config
is :func:`connectors.capture.debezium.connector_properties` minus :data:`ENGINE_ONLY_KEYS` plus
:data:`CONNECT_ONLY_KEYS` (docs/kubernetes.md explains each). Every table of one database goes to
ONE raw topic with one partition (:func:`raw_topic`), so that a transaction's marker row stays
before its rows, in WAL order, for the stamper (:mod:`connectors.capture.stamp`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from connectors.capture.debezium import connector_properties
from connectors.capture.stamp import raw_topic
from connectors.stores.origins import capture_stream_properties, wants_origin_filter
from infra.k8s.config import Deployment
from infra.k8s.scope import Scope, k8s_name, res
from streams.ops.dlq import retried_topic
from streams.runtime.settings import Settings
from streams.topology.plan import Endpoint

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

def connect_name(endpoint: str) -> str:
    """Name of the KafkaConnect cluster (and its Kafka user) of one captured endpoint (today: a side)."""
    return f"platsync-connect-{res(endpoint)}"


def bootstrap(dep: Deployment) -> str:
    """The cluster's TLS bootstrap address inside the namespace."""
    return f"{dep.config.kafka_cluster}-kafka-bootstrap.{dep.config.namespace}.svc:{TLS_PORT}"


def cluster_ca_secret(dep: Deployment) -> str:
    """The Secret Strimzi keeps the cluster CA certificate in (``ca.crt``, ``ca.p12``, ``ca.password``)."""
    return f"{dep.config.kafka_cluster}-cluster-ca-cert"


def meta(dep: Deployment, name: str, labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A resource's ``metadata`` in the namespace (labels and annotations sorted)."""
    out: dict[str, Any] = {"name": name, "namespace": dep.config.namespace}
    if labels:
        out["labels"] = dict(sorted(labels.items()))
    if annotations:
        out["annotations"] = dict(sorted(annotations.items()))
    return out


def cluster_label(dep: Deployment) -> dict[str, str]:
    """The label binding a Strimzi resource to the Kafka cluster."""
    return {"strimzi.io/cluster": dep.config.kafka_cluster}


def kafka_cluster(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The KRaft Kafka cluster (one node pool of combined controller/broker nodes), on the cloud root."""
    if scope.root not in nodes:
        return []
    dep = scope.dep
    cfg = dep.config
    kafka = {
        "apiVersion": API, "kind": "Kafka",
        "metadata": meta(dep, cfg.kafka_cluster, annotations={"strimzi.io/kraft": "enabled",
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
        "metadata": meta(dep, "dual-role", labels=cluster_label(dep)),
        "spec": {
            "replicas": cfg.kafka_nodes,
            "roles": ["controller", "broker"],
            "storage": {"type": "jbod", "volumes": [{"id": 0, "type": "persistent-claim", "size": cfg.kafka_storage,
                                                     "deleteClaim": False}]},
            "resources": cfg.resources["kafka"].as_k8s(),
        },
    }
    return [kafka, pool]


def topic_partitions(scope: Scope) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every topic of the plan and of Kubernetes (raw topics, Connect's, the registry's):
    name -> (partitions, topic config)."""
    cfg, plan, prefix = scope.dep.config, scope.plan, scope.prefix
    keep = {"retention.ms": cfg.retention_ms, "cleanup.policy": "delete",
            "min.insync.replicas": cfg.min_insync_replicas}
    compact = {"cleanup.policy": "compact", "min.insync.replicas": cfg.min_insync_replicas}
    topics: dict[str, tuple[int, dict[str, Any]]] = {}
    for endpoint in scope.captures(scope.nodes):
        link, side = scope.link_settings(endpoint.tenant), scope.side(endpoint.id)
        for store in endpoint.captured:
            topics[plan.topic(prefix, endpoint.id, store)] = (cfg.source_topic_partitions, keep)
            topics[raw_topic(link, side, store)] = (1, keep)  # WAL order: marker before its rows
        name = connect_name(endpoint.id)
        topics[f"{name}-configs"] = (1, compact)
        topics[f"{name}-offsets"] = (25, compact)
        topics[f"{name}-status"] = (5, compact)
    for route in plan.routes:
        topics[plan.dead_letter_topic(prefix, route.name)] = (1, keep)
    for endpoint in scope.modes(scope.nodes):
        topics[plan.heartbeat_topic(prefix, endpoint.id)] = (1, keep)
    for name in plan.subscription_topics(prefix):  # feeds (keyed by patient), their dead letters, the fan-out's
        topics[name] = (1, keep)
    topics[retried_topic(scope.dep.settings)] = (1, keep)
    topics["_schemas"] = (1, compact)  # the schema registry's store
    return topics


def kafka_topics(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """One KafkaTopic per topic, partitions and replicas explicit (no auto-creation), with the cluster."""
    if scope.root not in nodes:
        return []
    dep = scope.dep
    return [{"apiVersion": API, "kind": "KafkaTopic",
             "metadata": meta(dep, k8s_name(name) or "topic", labels=cluster_label(dep)),
             "spec": {"topicName": name, "partitions": partitions, "replicas": dep.config.topic_replicas,
                      "config": dict(sorted(config.items()))}}
            for name, (partitions, config) in sorted(topic_partitions(scope).items())]


def connect_settings(dep: Deployment | Settings, side: str) -> Settings:
    """The settings the connectors of ``side`` are rendered from (a deployment's or a link's): the pods'
    settings with each database password replaced by a Connect config-provider reference to a
    Secret-fed variable."""
    s = dep.settings if isinstance(dep, Deployment) else dep
    changes: dict[str, Any] = {"pg_capture_password": f"${{env:{CAPTURE_PASSWORD_ENV}}}"}
    db = s.node(side).keycloak_db
    if db:
        s = s.with_node(side, keycloak_db=f"{db} password=${{env:{KEYCLOAK_DB_PASSWORD_ENV}}}")
    return dataclasses.replace(s, **changes)


def _endpoint_settings(scope: Scope, endpoint: Endpoint) -> tuple[Settings, str]:
    return scope.link_settings(endpoint.tenant), scope.side(endpoint.id)


def connector_config(scope: Scope, endpoint: Endpoint, store: str) -> dict[str, str]:
    """The KafkaConnector ``spec.config`` of one captured database."""
    link, side = _endpoint_settings(scope, endpoint)
    props = connector_properties(connect_settings(link, side), side, store, echo_filter=True)
    if wants_origin_filter(link, store):  # the node's declared major stands in for the server's version
        props.update(capture_stream_properties(scope.node_config(endpoint.node).pg_major * 10000))
    config = {k: v for k, v in props.items() if k not in ENGINE_ONLY_KEYS}
    transforms = [t for t in props.get("transforms", "").split(",") if t]
    config.update({
        "key.converter": JSON_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "transforms": ",".join([*transforms, "route"]),
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": ".*",
        "transforms.route.replacement": raw_topic(link, side, store),
    })
    return dict(sorted(config.items()))


def kafka_connect(scope: Scope, endpoint: Endpoint) -> dict[str, Any]:
    """The Kafka Connect cluster of one captured endpoint, its image built with Debezium and the echo filter."""
    dep, cfg, name = scope.dep, scope.dep.config, connect_name(endpoint.id)
    link, side = _endpoint_settings(scope, endpoint)
    engine = connector_properties(connect_settings(link, side), side, "meta")
    labels = scope.labels(endpoint.node, endpoint.id, endpoint.tenant)
    echo_jar: dict[str, Any] = {"type": "jar", "url": cfg.echo_filter_jar_url}
    if cfg.echo_filter_jar_sha512:
        echo_jar["sha512sum"] = cfg.echo_filter_jar_sha512
    env = [{"name": CAPTURE_PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": scope.db_secret(endpoint.id), "key": "capture-password"}}},
           {"name": KEYCLOAK_DB_PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": scope.keycloak_secret(endpoint.id), "key": "db-password"}}}]
    return {
        "apiVersion": API, "kind": "KafkaConnect",
        "metadata": meta(dep, name, labels=labels, annotations={"strimzi.io/use-connector-resources": "true"}),
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
                "offset.flush.interval.ms": int(engine["offset.flush.interval.ms"]),
                "offset.flush.timeout.ms": int(engine["offset.flush.timeout.ms"]),
                "key.converter": JSON_CONVERTER,
                "value.converter": JSON_CONVERTER,
                "key.converter.schemas.enable": False,
                "value.converter.schemas.enable": False,
                "config.providers": "env",
                "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
            },
            "resources": cfg.resources["connect"].as_k8s(),
            "build": {
                "output": {"type": "docker", "image": f"{cfg.connect_image}-{res(endpoint.id)}",
                           "pushSecret": cfg.connect_push_secret},
                "plugins": [{"name": "debezium-postgres",
                             "artifacts": [{"type": "tgz", "url": cfg.debezium_plugin_url}]},
                            {"name": "platsync-echo-filter", "artifacts": [echo_jar]}],
            },
            "template": {
                "pod": {"metadata": {"labels": {**labels, "platsync.io/component": "connect",
                                                "platsync.io/kafka-client": "true", "platsync.io/db-client": "true"}}},
                "connectContainer": {"env": env},
            },
        },
    }


def kafka_connectors(scope: Scope, endpoint: Endpoint) -> list[dict[str, Any]]:
    """One Debezium KafkaConnector per captured database of an endpoint."""
    labels = {"strimzi.io/cluster": connect_name(endpoint.id), **scope.labels(endpoint.node, endpoint.id,
                                                                               endpoint.tenant)}
    return [{"apiVersion": API, "kind": "KafkaConnector",
             "metadata": meta(scope.dep, k8s_name(f"platsync-{res(endpoint.id)}-{store}"), labels=labels),
             "spec": {"class": CONNECTOR_CLASS, "tasksMax": 1, "autoRestart": {"enabled": True},
                      "config": connector_config(scope, endpoint, store)}}
            for store in endpoint.captured]


def connect_files(scope: Scope, nodes: frozenset[str]) -> list[dict[str, Any]]:
    """The Kafka Connect cluster and connectors of every captured endpoint on ``nodes``."""
    return [r for e in scope.captures(nodes) for r in (kafka_connect(scope, e), *kafka_connectors(scope, e))]
