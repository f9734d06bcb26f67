"""Dead-letter operations: list and show what the routes could not process, and re-drive it.

A dead letter (``schemas/dead_letter.avsc``) keeps the original key and bytes of what failed.
*Retry* produces those bytes again to the source topic they came from, where the route's worker
takes them like any change: the sinks are idempotent and version-guarded, so a retry never lets an
older version overwrite a newer one and repeating it changes nothing. Each retry is recorded in
the topic ``<prefix>.dlq.retried`` (one partition; key: the dead letter's id), so ``list`` shows
what was re-driven and ``retry`` does not re-drive it twice unless asked.

Dead letters can hold patients' and staff's data (a row's values, a store's error text quoting
them); nothing here prints values unless the operator asks with ``reveal``.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams.core.codec import PLAIN, DecodeError, MessageCodec
from streams.core.errors import PlatSyncError
from streams.core.model import ROUTES
from streams.runtime.confluent_wire import codec_for
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.runtime.topics import TopicError, ensure_topics

OPERATOR_CLIENT_ID = "platsync-operator-dlq"  # names no side: never cut by the embedded link
READ_QUIET_S = 0.5


class DeadLetterError(PlatSyncError, RuntimeError):
    """A dead-letter operation that cannot be done (unknown id, broker unreachable, nothing to re-drive)."""


@dataclass(frozen=True)
class StoredDeadLetter:
    """One dead letter as stored in its route's dead-letter topic."""

    id: str  # <route>:<partition>:<offset> of the dead-letter record itself
    route: str
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        """The error kind (decode, unknown_api, sink_rejected, ...)."""
        return str(self.record["error_kind"])

    @property
    def failed_ts_ms(self) -> int:
        """When the route gave up on the message."""
        return int(self.record["failed_ts_ms"])


@dataclass(frozen=True)
class RetryMark:
    """That a dead letter was re-driven, when, and where its bytes went."""

    id: str
    retried_ts_ms: int
    topic: str
    partition: int
    offset: int


def retried_topic(settings: Settings) -> str:
    """The topic recording which dead letters were re-driven."""
    return f"{settings.topic_prefix}.dlq.retried"


def _consumer_config(settings: Settings) -> dict[str, Any]:
    return {**client_config(settings, OPERATOR_CLIENT_ID),
            "group.id": f"{OPERATOR_CLIENT_ID}-{time.time_ns()}", "enable.auto.commit": False,
            "enable.partition.eof": True, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
            "socket.timeout.ms": 10000}


def read_topic_records(settings: Settings, topic: str,
                       timeout_s: float) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every record of ``topic`` as (partition, offset, key, value), read to the end of each partition.

    The embedded broker reports a wrong high watermark (see BRIEF), so the end is "partition EOF and
    then nothing more for a moment", not the watermark alone.
    """
    consumer = Consumer(_consumer_config(settings))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return []
        partitions = sorted(found.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[tuple[int, int, bytes | None, bytes | None]] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None:
                if len(at_end) == len(partitions):
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= READ_QUIET_S:
                        return records
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise DeadLetterError(f"reading {topic}: {msg.error()}")
            at_end.discard(msg.partition())
            quiet_since = None
            records.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
        raise DeadLetterError(f"reading {topic} did not reach its end within {timeout_s:.0f} s "
                              f"(broker {settings.broker_bootstrap} slow or unreachable)")
    except KafkaException as exc:
        raise DeadLetterError(f"broker {settings.broker_bootstrap}: {exc}") from exc
    finally:
        consumer.close()


def message_codec(settings: Settings) -> MessageCodec:
    """How this engine's messages are framed: plain, or the Confluent wire format of a registry
    (looked up only: an operator tool registers nothing)."""
    if not settings.schema_registry_url:
        return PLAIN

    return codec_for(settings, register=False)


def read_dead_letters(settings: Settings, routes: Iterable[str] = tuple(ROUTES), timeout_s: float = 30.0,
                      codec: MessageCodec | None = None) -> list[StoredDeadLetter]:
    """Every dead letter of ``routes``, oldest first per route."""
    codec = codec or message_codec(settings)
    letters: list[StoredDeadLetter] = []
    for route in routes:
        topic = settings.dead_letter_topic(route)
        for partition, offset, _key, value in read_topic_records(settings, topic, timeout_s):
            try:
                record = codec.decode("dead_letter", value)
            except DecodeError as exc:  # not ours: say so instead of hiding it
                record = {"route": route, "source_topic": "?", "source_partition": -1, "source_offset": -1,
                          "original_key": None, "original_value": value, "error_kind": "unreadable_dead_letter",
                          "error": str(exc), "hint": "this record is not a dead letter of this engine",
                          "failed_ts_ms": 0}
            letters.append(StoredDeadLetter(f"{route}:{partition}:{offset}", route, record))
    return letters


def read_retry_marks(settings: Settings, timeout_s: float = 30.0) -> dict[str, RetryMark]:
    """The latest retry of each dead letter that was re-driven, by dead-letter id."""
    marks: dict[str, RetryMark] = {}
    for _partition, _offset, _key, value in read_topic_records(settings, retried_topic(settings), timeout_s):
        try:
            data = json.loads(value or b"")
            mark = RetryMark(str(data["id"]), int(data["retried_ts_ms"]), str(data["topic"]),
                             int(data["partition"]), int(data["offset"]))
        except (ValueError, KeyError, TypeError):
            continue  # a foreign record in our bookkeeping topic: it marks nothing
        marks[mark.id] = mark
    return marks


def select(letters: Sequence[StoredDeadLetter], marks: dict[str, RetryMark], *, kind: str | None = None,
           since_ms: int | None = None, status: str = "all") -> list[StoredDeadLetter]:
    """The letters matching an error kind, a time and a status (``pending``, ``retried``, ``all``)."""
    chosen = []
    for letter in letters:
        if kind and letter.kind != kind:
            continue
        if since_ms is not None and letter.failed_ts_ms < since_ms:
            continue
        if status == "pending" and letter.id in marks or status == "retried" and letter.id not in marks:
            continue
        chosen.append(letter)
    return chosen


_QUOTED_VALUES = (
    (re.compile(r"=\((.*?)\)(?= already exists| is not present| conflicts|\.|,|\s|$)"), "=(…)"),
    (re.compile(r"Failing row contains \(.*\)", re.DOTALL), "Failing row contains (…)"),
    (re.compile(r"(invalid input (?:syntax|value) for (?:type )?[\w ]+?: )\".*?\""), r'\1"…"'),
)


def redact(text: str) -> str:
    """``text`` with the values a store quotes in its errors (``Key (code)=(S-1)``) masked."""
    for pattern, replacement in _QUOTED_VALUES:
        text = pattern.sub(replacement, text)
    return text


def summary(letter: StoredDeadLetter, marks: dict[str, RetryMark], reveal: bool = False) -> dict[str, Any]:
    """One dead letter as ``platsync dlq list`` and the operator console show it: id, route, failure time, kind,
    source position, key, size, the store's error (redacted unless ``reveal``), hint and retry status."""
    rec = letter.record
    mark = marks.get(letter.id)
    error = str(rec["error"])
    return {
        "id": letter.id, "route": letter.route, "failed": iso(letter.failed_ts_ms), "kind": letter.kind,
        "source": f"{rec['source_topic']}[{rec['source_partition']}]@{rec['source_offset']}",
        "key": None if rec["original_key"] is None else rec["original_key"].decode("utf-8", "replace"),
        "bytes": 0 if rec["original_value"] is None else len(rec["original_value"]),
        "error": error if reveal else redact(error), "hint": rec["hint"],
        "status": "pending" if mark is None else "retried",
        "retried": None if mark is None else {"at": iso(mark.retried_ts_ms), "to": f"{mark.topic}[{mark.partition}]"
                                                                                 f"@{mark.offset}"},
    }


def describe_original(value: bytes | None, reveal: bool, codec: MessageCodec = PLAIN) -> dict[str, Any]:
    """What the dead letter's original bytes are: the change event's identity always, row values only
    with ``reveal`` (otherwise each field's type and size)."""
    if value is None:
        return {"bytes": 0, "readable": False, "note": "no original bytes kept (see the error)"}
    summary: dict[str, Any] = {"bytes": len(value)}
    try:
        elements = codec.split_changes(value)
        change = codec.decode_change(elements[0]) if len(elements) == 1 else None
    except DecodeError as exc:
        change, summary["decode_error"] = None, str(exc)
    if change is None:
        summary["readable"] = False
        if reveal:
            summary["base64"] = base64.b64encode(value).decode()
        return summary
    summary.update(readable=True, api_id=change.api_id, call_id=change.call_id, op=change.op,
                   source=f"{change.source_side}/{change.source_store}", table=change.table, key=change.key,
                   version=change.version, origin_side=change.origin_side, lsn=change.lsn, txid=change.txid,
                   commit_time=iso(change.commit_ts_ms))
    summary["row"] = None if change.row is None else {
        name: _value(v) if reveal else _shape(v) for name, v in sorted(change.row.items())}
    return summary


def _shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bytes | str):
        return f"<{type(value).__name__}, {len(value)} {'bytes' if isinstance(value, bytes) else 'chars'}>"
    return f"<{type(value).__name__}>"


def _value(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def iso(ts_ms: int) -> str:
    """A millisecond timestamp as ISO-8601 UTC."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ensure_retried_topic(settings: Settings) -> None:
    """Create the retry bookkeeping topic (one partition) unless it exists, as ``platsync up`` creates the
    stack's topics (the embedded broker, or a Kafka cluster of its own)."""
    try:
        ensure_topics(client_config(settings, OPERATOR_CLIENT_ID), [retried_topic(settings)],
                      real_cluster=bool(settings.broker_bootstrap_servers))
    except (TopicError, KafkaException) as exc:
        raise DeadLetterError(f"cannot create {retried_topic(settings)}: {exc}") from exc


def retry(settings: Settings, letters: Sequence[StoredDeadLetter], marks: dict[str, RetryMark], *,
          again: bool = False, say: Callable[[str], None] = print) -> list[RetryMark]:
    """Produce each letter's original key and bytes to its source topic and record the retry.

    Letters already retried are skipped unless ``again``; letters without original bytes (or from an
    unreadable record) cannot be re-driven and are reported.
    """
    todo: list[StoredDeadLetter] = []
    for letter in letters:
        if letter.id in marks and not again:
            say(f"{letter.id}: already retried at {iso(marks[letter.id].retried_ts_ms)} (use --again to re-drive)")
        elif letter.record["original_value"] is None or letter.kind == "unreadable_dead_letter":
            say(f"{letter.id}: nothing to re-drive ({letter.kind}); {letter.record['hint']}")
        else:
            todo.append(letter)
    if not todo:
        return []
    ensure_retried_topic(settings)
    producer = Producer({**client_config(settings, OPERATOR_CLIENT_ID),
                         "acks": "all", "enable.idempotence": True, "message.timeout.ms": 30000})
    delivered: dict[str, tuple[str, int, int]] = {}
    errors: list[str] = []

    def on_delivery(letter_id: str) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(f"{letter_id}: {err}")
            else:
                delivered[letter_id] = (msg.topic(), msg.partition(), msg.offset())
        return report

    for letter in todo:
        rec = letter.record
        partition = rec["source_partition"] if rec["source_partition"] >= 0 else -1
        producer.produce(rec["source_topic"], key=rec["original_key"], value=rec["original_value"],
                         partition=partition, on_delivery=on_delivery(letter.id))
    producer.flush(60)
    now = time.time_ns() // 1_000_000
    done = [RetryMark(letter_id, now, *where) for letter_id, where in delivered.items()]
    for mark in done:
        producer.produce(retried_topic(settings), key=mark.id.encode(), value=json.dumps({
            "id": mark.id, "retried_ts_ms": mark.retried_ts_ms, "topic": mark.topic, "partition": mark.partition,
            "offset": mark.offset}).encode(), on_delivery=on_delivery(f"mark {mark.id}"))
    remaining = producer.flush(60)
    for mark in done:
        say(f"{mark.id}: re-driven to {mark.topic}[{mark.partition}]@{mark.offset}")
    if errors or remaining:
        raise DeadLetterError(f"{len(errors)} re-drive(s) failed, {remaining} undelivered: {errors[:5]}")
    return done
