"""Topic administration: create the engine's topics explicitly, with one partition (runtime layer).

Auto-created topics get the broker's default partition count (4 on the embedded broker), which
breaks the per-store order; every process that may be first to use a topic creates it here
instead. Used by ``platsync up`` (the embedded broker or a Kafka cluster of its own), the captures
and the dead-letter tools; on Kubernetes, Strimzi ``KafkaTopic`` resources do it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from streams.core.errors import PlatSyncError
from streams.runtime.settings import Settings


class TopicError(PlatSyncError, RuntimeError):
    """A topic could not be created."""


def incarnation_topic(settings: Settings) -> str:
    """The topic holding the embedded broker's incarnation token (infra/local/recovery.py)."""
    return f"{settings.topic_prefix}.broker-incarnation"


def ensure_topics(client_options: Mapping[str, Any], names: Iterable[str], *, real_cluster: bool,
                  partitions: int = 1, max_message_bytes: int = 33_554_432, timeout_s: float = 10.0) -> None:
    """Create those of ``names`` that are missing (``client_options``: a client configuration with
    bootstrap servers and client id). On a ``real_cluster`` the topics take the cluster's default
    replication and room for ``max_message_bytes``. Raises ``KafkaException`` if the broker cannot be
    reached, :class:`TopicError` if it refuses a creation."""
    admin = AdminClient(dict(client_options))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [n for n in names if n not in existing]
    if not missing:
        return
    if real_cluster:
        new = [NewTopic(n, num_partitions=partitions, replication_factor=-1,
                        config={"max.message.bytes": str(max_message_bytes)}) for n in missing]
    else:
        new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
    for name, future in admin.create_topics(new).items():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - the broker's own error, reported with the topic
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TopicError(f"cannot create topic {name}: {exc}") from exc
