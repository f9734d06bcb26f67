"""A real Apache Kafka (Confluent's distribution) and a real Confluent Schema Registry in containers,
for running the end-to-end suite against them wherever Docker is available (testcontainers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REGISTRY_IMAGE = "confluentinc/cp-schema-registry:7.6.0"
#: Environment variable that makes tests/e2e/conftest.py run the session stack on these containers.
E2E_KAFKA_ENV = "PLATSYNC_E2E_KAFKA"
E2E_KAFKA_TESTCONTAINERS = "testcontainers"


def _wait_registry(url: str, timeout_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/subjects", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@contextmanager
def kafka_and_registry(timeout_s: float = 180.0) -> Iterator[tuple[str, str]]:
    """Start Kafka and a schema registry on one Docker network; yield (bootstrap servers, registry URL)."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    with Network() as network:
        kafka = (KafkaContainer(KAFKA_IMAGE).with_network(network).with_network_aliases("kafka")
                 # Large signed records (settings.kafka_message_max_bytes) must fit the broker's limits too.
                 .with_env("KAFKA_MESSAGE_MAX_BYTES", str(64 * 1024 * 1024))
                 .with_env("KAFKA_REPLICA_FETCH_MAX_BYTES", str(64 * 1024 * 1024))
                 .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"))
        with kafka:
            registry = (DockerContainer(REGISTRY_IMAGE).with_network(network).with_exposed_ports(8081)
                        .with_env("SCHEMA_REGISTRY_HOST_NAME", "schema-registry")
                        .with_env("SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081")
                        .with_env("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "PLAINTEXT://kafka:9092"))
            with registry:
                url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8081)}"
                _wait_registry(url, timeout_s)
                yield kafka.get_bootstrap_server(), url
