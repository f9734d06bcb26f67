"""Replay a route: stop its worker, reset its consumer group's offsets, start it again.

Sinks are idempotent and version-guarded, so a replay converges to the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.local.process import read_pid, stop_pid
from infra.local.stack import Stack
from streams.apply.app import source_topics
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings


def target_offsets(settings: Settings, route: str, to_beginning: bool, to_time: str | None) -> list[TopicPartition]:
    """The offsets each of the route's source partitions must restart from."""
    consumer = Consumer({**client_config(settings),
                         "group.id": f"{settings.consumer_group(route)}-replay-probe", "enable.auto.commit": False})
    try:
        topics = source_topics(settings, route)
        metadata = consumer.list_topics(timeout=10)
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(metadata.topics[t].partitions)]
        if to_beginning:
            return [TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(tp, timeout=10)[0])
                    for tp in partitions]
        when = datetime.fromisoformat(str(to_time))
        if when.tzinfo is None:
            raise ValueError(f"--to-time {to_time!r} needs a UTC offset, e.g. 2026-11-22T09:00:00+09:00")
        ts_ms = int(when.timestamp() * 1000)
        found = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, ts_ms) for tp in partitions],
                                           timeout=10)
        committed = consumer.committed(partitions, timeout=10) if any(tp.offset < 0 for tp in found) else []
        result = []
        for i, tp in enumerate(found):
            # -1: nothing at or after that time: keep the committed position (nothing to replay there).
            offset = tp.offset if tp.offset >= 0 else max(committed[i].offset, 0)
            result.append(TopicPartition(tp.topic, tp.partition, offset))
        return result
    finally:
        consumer.close()


def replay_route(settings: Settings, route: str, to_beginning: bool, to_time: str | None,
                 say: Callable[[str], None] = print) -> None:
    """Stop the route's worker, move its group's offsets, restart it and wait until it consumes."""
    stack = Stack(settings)
    stack.require_running()
    offsets = target_offsets(settings, route, to_beginning, to_time)
    name = f"worker-{route}"
    pid = read_pid(settings.data_dir, name)
    if pid is not None:
        say(f"stopping {name} (pid {pid}) so its consumer group can be moved")
        stop_pid(pid, timeout_s=60)
        (settings.data_dir / "run" / f"{name}.pid").unlink(missing_ok=True)
    admin = AdminClient(client_config(settings))
    group = settings.consumer_group(route)
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)])
    for fut in futures.values():
        fut.result(timeout=30)
    for tp in offsets:
        say(f"{group}: {tp.topic}[{tp.partition}] -> offset {tp.offset}")
    stack.up(say=lambda m: None)
    say(f"{name} restarted; re-applying (sinks are idempotent and version-guarded)")
