"""Recovery of the embedded stack after its broker lost its log.

The embedded broker keeps its log in memory (the only durable engine it ships, S3, would need
an S3 server, and the one installable here keeps its objects in memory too). So the design is
not to need the broker's data: every ``up`` checks whether the broker still holds the
*incarnation token* it wrote there; if it does not, the broker restarted empty, and ``up``
stops the captures and workers, re-captures both sides (``connectors.capture.resync``: the
current state of every row their APIs wrote, from the data itself), writes a new token and
starts the captures and workers again. Consumer offsets died with the broker; the workers start
from the beginning of the new, re-captured log; the sinks make every repeat harmless.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.capture.publisher import Publisher
from connectors.capture.resync import ResyncReport, resync_keycloak, resync_store
from streams.core.model import SIDES, ChangeEvent
from streams.runtime.confluent_wire import codec_for
from streams.runtime.jsonfile import read_json, write_json
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.runtime.topics import incarnation_topic

Say = Callable[[str], None]
ADMIN_CLIENT_ID = "platsync-admin-recovery"


def _state_path(settings: Settings) -> Path:
    return settings.data_dir / "state" / "broker.json"


def _read_state(settings: Settings) -> dict[str, Any]:
    return read_json(_state_path(settings))


def tokens_on_broker(settings: Settings, timeout_s: float = 3.0) -> list[str]:
    """Every incarnation token the broker holds (read from the beginning of the topic)."""
    consumer = Consumer({**client_config(settings, ADMIN_CLIENT_ID),
                         "group.id": f"platsync-incarnation-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(incarnation_topic(settings), 0, 0)])
        tokens: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if tokens:
                    break
                continue
            if msg.error() is None and msg.value():
                tokens.append(msg.value().decode())
                deadline = max(deadline, time.monotonic() + 0.5)
        return tokens
    finally:
        consumer.close()


def write_incarnation(settings: Settings, pending_sides: list[str] | None = None) -> str:
    """Write a new token to the broker and remember it (and sides still to re-capture) in the data dir."""
    token = uuid.uuid4().hex
    producer = Producer({**client_config(settings, ADMIN_CLIENT_ID), "acks": "all"})
    producer.produce(incarnation_topic(settings), value=token.encode())
    if producer.flush(10):
        raise RuntimeError("the broker did not acknowledge the incarnation token")
    _save_state(settings, {"token": token, "written_ts_ms": time.time_ns() // 10**6,
                           "pending_sides": list(pending_sides or [])})
    return token


def _save_state(settings: Settings, doc: dict[str, Any]) -> None:
    write_json(_state_path(settings), doc)


def pending_sides(settings: Settings) -> list[str]:
    """Sides whose re-capture still waits for the link (the broker was lost during a cut)."""
    return [side for side in _read_state(settings).get("pending_sides", []) if side in SIDES]


def recapture_pending(settings: Settings, say: Say) -> list[ResyncReport]:
    """Re-capture the sides left pending by a recovery during a cut (call once the link is up)."""
    sides = pending_sides(settings)
    reports = [resync_side(settings, side, say) for side in sides]
    if sides:
        _save_state(settings, {**_read_state(settings), "pending_sides": []})
    return reports


def broker_lost_log(settings: Settings) -> bool:
    """True if this data dir wrote a token to the broker and the broker no longer has it."""
    token = _read_state(settings).get("token")
    return bool(token) and token not in tokens_on_broker(settings)


def ensure_incarnation(settings: Settings) -> None:
    """Write the first token of a data dir (nothing to recover before it)."""
    if not _read_state(settings).get("token"):
        write_incarnation(settings)


def resync_side(settings: Settings, side: str, say: Say) -> ResyncReport:
    """Re-capture every database store of ``side`` into its topics."""

    report = ResyncReport(side)
    codec = codec_for(settings)
    for store in settings.captured_stores(side):
        publisher = Publisher(settings, settings.topic(side, store),
                              f"platsync-{settings.client_tag(side)}-resync-{store}", codec)
        started = time.monotonic()

        def publish(events: list[ChangeEvent], publisher: Any = publisher, store: str = store,
                    started: float = started) -> None:
            publisher.publish(events)
            done = report.sent.get(store, 0) + len(events)
            report.sent[store] = done
            say(f"  re-captured {side}/{store}: {done} rows ({time.monotonic() - started:.1f}s)")

        if store == "keycloak":
            resync_keycloak(settings, side, publish, report, lambda: time.time_ns() // 10**6)
        else:
            resync_store(settings, side, store, publish, report, lambda: time.time_ns() // 10**6)
    say(f"re-capture {report.summary()}")
    return report


def recapture_all(settings: Settings, say: Say, reachable: tuple[str, ...] = SIDES) -> list[ResyncReport]:
    """Re-capture the ``reachable`` sides now, then write a new incarnation token; the others are
    left pending until :func:`recapture_pending` (a side cut off the broker cannot publish)."""
    reports = [resync_side(settings, side, say) for side in reachable]
    write_incarnation(settings, [side for side in SIDES if side not in reachable])
    return reports
