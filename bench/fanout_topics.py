"""Reads the simulated hospitals' notification topics during the fan-out benchmark and counts every
delivery by topic and key (the notifications' idempotency key).

One consumer reads every topic from its start, in a thread, for the whole run: the embedded broker may not
hand a consumer that joins late the newest message of a quiet topic, while one already waiting gets it. It is
assigned every partition rather than joining a group: a group's join took the embedded broker up to ~17 s,
which the run spent waiting for the first message.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings


class TopicCounter:
    """``with TopicCounter(settings, topics) as scan``: counts of ``scan.received(topic)`` by key."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self._counts: dict[str, Counter[str]] = {t: Counter() for t in topics}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({**client_config(settings, "platsync-bench-scan"),
                                   "group.id": f"bench-scan-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                   "auto.offset.reset": "earliest"})
        self._consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for topic in topics
                               for partition in self._partitions(topic)])
        self._thread = threading.Thread(target=self._run, name="topic-scan", daemon=True)

    def _partitions(self, topic: str) -> list[int]:
        """The partitions of ``topic`` (it must exist: the simulated hospitals' subscribers created it)."""
        meta = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {topic} not found on the broker: {meta.error if meta else 'no metadata'}")
        return sorted(meta.partitions)

    def __enter__(self) -> TopicCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error() is None and msg.key() is not None:
                    with self._lock:
                        self._counts[msg.topic()][msg.key().decode()] += 1

    def received(self, topic: str) -> Counter[str]:
        """Deliveries on ``topic`` so far, by key (a copy)."""
        with self._lock:
            return Counter(self._counts.get(topic, Counter()))

    def wait_for(self, expected: dict[str, set[str]], timeout_s: float) -> bool:
        """Wait until every topic carried every expected key; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(keys <= set(self.received(topic)) for topic, keys in expected.items()):
                return True
            time.sleep(0.1)
        return False
