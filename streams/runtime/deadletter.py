"""Dead letters: a message a route cannot process goes, with its original bytes, the error and
a hint, to the route's dead-letter topic; the route then continues."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Producer

from streams.core.codec import MessageCodec
from streams.runtime.confluent_wire import codec_for
from streams.runtime.delivery import deliver
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings


@dataclass(frozen=True)
class IncomingMessage:
    """A message as consumed, with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class DeadLetterWriter:
    """Buffers dead letters of one route and produces them durably on :meth:`flush`."""

    def __init__(self, settings: Settings, route: str, client_id: str | None = None,
                 codec: MessageCodec | None = None, principal: str | None = None) -> None:
        self.route = route
        self._encode = (codec or codec_for(settings)).encode  # plain framing or the Confluent wire format
        self.topic = settings.dead_letter_topic(route)
        self._producer = Producer({
            # The worker runs on the side it writes: its client id names that side for the link.
            **client_config(settings,
                            client_id or f"platsync-{settings.worker_client_tag(route)}-worker-{route}-dlq",
                            principal or f"worker-{route}"),
            "enable.idempotence": True,
            # A dead letter carries the original message, which may be as large as a message may be.
            "message.max.bytes": 2 * settings.kafka_message_max_bytes,
            "acks": "all", "linger.ms": 5})
        self._pending: list[bytes] = []

    def add(self, msg: IncomingMessage, kind: str, error: str, hint: str) -> None:
        """Queue a dead letter for ``msg``."""
        self._pending.append(self._encode("dead_letter", {
            "route": self.route, "source_topic": msg.topic, "source_partition": msg.partition,
            "source_offset": msg.offset, "original_key": msg.key, "original_value": msg.value,
            "error_kind": kind, "error": error, "hint": hint, "failed_ts_ms": int(time.time() * 1000)}))

    def flush(self, timeout_s: float = 30.0) -> int:
        """Produce every queued dead letter and wait for the broker's acknowledgement."""
        count = deliver(self._producer, ((self.topic, None, value) for value in self._pending), timeout_s,
                        f"dead-letter topic {self.topic}")
        self._pending.clear()
        return count
