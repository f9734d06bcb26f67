"""The heartbeat exchange of one side's mode server (see ``streams.apply.mode_server``).

Every ``interval_s`` it publishes this side's heartbeat (``schemas/heartbeat.avsc``) to partition 0
of the heartbeat topic and reads the other side's from it. Both Kafka clients use ``client.id``
``platsync-<side>-mode``: the prefix by which the link proxy (``infra.local.link``) tells the sides
apart. Freshness comes from the payload's ``sent_ts_ms``, never from offsets (the broker's high
watermark is wrong and old records may be re-read). A heartbeat not acknowledged by the broker
within ``publish_timeout_s`` means this side is cut off. No broker failure raises out of here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.core.codec import DecodeError, MessageCodec
from streams.core.modes import HEARTBEAT_CONTRACT, heartbeat_record, heartbeat_topic, iso_ms
from streams.runtime.confluent_wire import codec_for
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.mode")


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the unit of ``sent_ts_ms``)."""
    return int(time.time() * 1000)


def client_id(side: str, settings: Settings | None = None) -> str:
    """``client.id`` (and consumer group) of a side's mode clients (the link proxy cuts ``platsync-local-*``;
    in a network ``platsync-<link>.local-*``)."""
    return f"platsync-{settings.client_tag(side) if settings is not None else side}-mode"


class HeartbeatLink:
    """Publishes this side's heartbeats and follows the other side's (runs in its own thread)."""

    def __init__(self, settings: Settings, side: str, incarnation: str, interval_s: float,
                 publish_timeout_s: float, current_mode: Callable[[], str], codec: MessageCodec | None = None) -> None:
        self.settings, self.side, self.incarnation = settings, side, incarnation
        # Plain framing, or the Confluent wire format with a schema registry (registers the contracts now).
        self._codec = codec or codec_for(settings)
        self.interval_s, self.publish_timeout_ms = interval_s, int(publish_timeout_s * 1000)
        self.topic = heartbeat_topic(settings)
        self._current_mode = current_mode
        self._lock = threading.Lock()
        self._started_ms = now_ms()
        self._last_ack_ms = self._started_ms  # sent_ts_ms of the newest acknowledged heartbeat
        self._last_ack_offset: int | None = None  # where our newest acknowledged heartbeat is in partition 0
        self._own_read_ms = self._started_ms  # sent_ts_ms of the newest own heartbeat read back
        self._last_reseek = 0.0
        self._error = ""
        self._failing_logged_at: float | None = None  # monotonic time of the last "cannot publish" log line
        self._peer: dict[str, Any] = {}
        self._topic_ready = False
        common = {**client_config(settings, client_id(side, settings), f"mode-{side}"),
                  "socket.timeout.ms": 5000,
                  "log_level": 2, "error_cb": self._on_error}
        self._producer = Producer({**common, "linger.ms": 0, "acks": 1, "enable.idempotence": False,
                                   "message.timeout.ms": max(1000, self.publish_timeout_ms)})
        self._consumer = Consumer({**common, "group.id": client_id(side, settings), "enable.auto.commit": False,
                                   "enable.auto.offset.store": False, "auto.offset.reset": "latest",
                                   "enable.partition.eof": False})
        self._assigned = False  # assigned once the topic exists (or could not be created)

    def _on_error(self, err: KafkaError) -> None:
        with self._lock:
            self._error = f"{err.name()}: {err.str()}"

    def _on_delivery(self, err: KafkaError | None, offset: int, sent_ms: int) -> None:
        with self._lock:
            if err is None:
                if sent_ms >= self._last_ack_ms:
                    self._last_ack_ms, self._last_ack_offset = sent_ms, offset
                self._error = ""
            else:
                self._error = f"{err.name()}: {err.str()}"

    def snapshot(self, at_ms: int) -> dict[str, Any]:
        """What the decision needs: the peer's last heartbeat and whether publishing fails."""
        with self._lock:
            unacked_ms = at_ms - self._last_ack_ms
            failing = unacked_ms > self.publish_timeout_ms
            error = self._error or "no acknowledgement from the broker"
            return {"peer": dict(self._peer), "publish_failing": failing,
                    "publish_error": f"{error}; last heartbeat acknowledged {unacked_ms / 1000:.1f} s ago"
                    if failing else "", "last_ack_ts_ms": self._last_ack_ms}

    def _ensure_topic(self) -> None:
        admin = AdminClient({**client_config(self.settings, client_id(self.side, self.settings), f"mode-{self.side}"),
                             "log_level": 2, "socket.timeout.ms": 2000})
        if self.topic not in admin.list_topics(timeout=2).topics:
            fut = admin.create_topics([NewTopic(self.topic, num_partitions=1, replication_factor=1)])[self.topic]
            try:
                fut.result(timeout=5)
            except Exception as exc:  # noqa: BLE001
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
        self._topic_ready = True

    def beat(self) -> None:
        """One round: make sure the topic exists, publish, read what arrived."""
        if not self._topic_ready:
            try:
                self._ensure_topic()
            except Exception as exc:  # noqa: BLE001 - broker unreachable: publish anyway, retry next round
                with self._lock:
                    self._error = self._error or f"{type(exc).__name__}: {exc}"
        if not self._assigned:
            self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_END)])
            self._assigned = True
        sent = now_ms()
        value = self._codec.encode(HEARTBEAT_CONTRACT, heartbeat_record(self.side, sent, self._current_mode(),
                                                                         self.incarnation))
        try:
            self._producer.produce(self.topic, value=value, key=self.side.encode(), partition=0,
                                   on_delivery=lambda err, msg, s=sent: self._on_delivery(err, msg.offset(), s))
        except BufferError as exc:  # local queue full while the broker is away: the heartbeat is lost
            self._on_error_text(f"producer queue full: {exc}")
        self._producer.poll(0)
        self._read()
        self._producer.poll(0)
        self._check_reading()
        self._log_publish_state()

    def _on_error_text(self, text: str) -> None:
        with self._lock:
            self._error = text

    def _read(self) -> None:
        while True:
            messages = self._consumer.consume(num_messages=500, timeout=min(0.2, self.interval_s / 4))
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION):
                        self._topic_ready = False
                    continue
                try:
                    beat = self._codec.decode(HEARTBEAT_CONTRACT, msg.value())
                except DecodeError as exc:
                    log.warning("ignoring a message on %s at offset %s: %s", self.topic, msg.offset(), exc)
                    continue
                if beat["side"] == self.side:
                    self._own_read_ms = max(self._own_read_ms, beat["sent_ts_ms"])
                    continue
                with self._lock:
                    if beat["sent_ts_ms"] > self._peer.get("last_seen_ts_ms", 0):
                        self._peer = {"side": beat["side"], "last_seen_ts_ms": beat["sent_ts_ms"],
                                      "last_seen": iso_ms(beat["sent_ts_ms"]), "mode": beat["mode"],
                                      "incarnation": beat["incarnation"]}
            if len(messages) < 500:
                return

    def _check_reading(self) -> None:
        """Re-position the consumer if it does not read back our own acknowledged heartbeats.

        The consumer reads the partition our heartbeats go to, so it must see them. If it does not
        (the broker lost its log, e.g. an in-memory broker restarted, and the consumer waits at an
        offset the new log has not reached yet), it re-reads from our newest acknowledged heartbeat.
        """
        with self._lock:
            ack_ms, ack_offset = self._last_ack_ms, self._last_ack_offset
        lag_ms = ack_ms - self._own_read_ms
        if ack_offset is None or lag_ms <= 3 * self.interval_s * 1000:
            return
        if time.monotonic() - self._last_reseek < 3 * self.interval_s:
            return
        self._last_reseek = time.monotonic()
        log.warning("own heartbeats not read back for %.1f s (the broker's log was reset?): reading %s from "
                    "offset %d", lag_ms / 1000, self.topic, ack_offset)
        self._consumer.assign([TopicPartition(self.topic, 0, ack_offset)])

    def _log_publish_state(self) -> None:
        """One line when publishing starts failing (repeated every 30 s), one when it works again."""
        state = self.snapshot(now_ms())
        logged = self._failing_logged_at
        if state["publish_failing"] and (logged is None or time.monotonic() - logged >= 30):
            log.warning("cannot publish heartbeats to the broker %s: %s", self.settings.broker_bootstrap,
                        state["publish_error"])
            self._failing_logged_at = time.monotonic()
        elif not state["publish_failing"] and logged is not None:
            log.info("heartbeats acknowledged by the broker %s again", self.settings.broker_bootstrap)
            self._failing_logged_at = None

    def run(self, stop: threading.Event) -> None:
        """Beat every ``interval_s`` until ``stop``; then close both clients."""
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - never let one bad round end the heartbeats
                    log.exception("heartbeat round failed")
                stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            self._producer.flush(1.0)
            self._consumer.close()
