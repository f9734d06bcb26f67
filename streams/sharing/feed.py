"""A subscriber's feed: the messages of ``platsync.<node>.sub`` (pure; docs/sharing.md).

The cloud's fan-out turns what :mod:`streams.sharing.subscriptions` decides into messages of each
subscriber's own topic (``<prefix>.<node>.sub``), so a hospital's processes read one topic that
carries nothing but what it is entitled to. Four kinds (``schemas/subscription_message.avsc``),
keyed by patient so that one patient's messages keep their order:

- ``subscribe``: the subscriber starts keeping the patient's copies; the patient's shared documents
  (``copy`` messages, the snapshot) follow it;
- ``copy``: a document's row as the shared store holds it, marked with its home institution;
- ``withdraw``: the document left the shared store (made private, or deleted) at ``version``; it
  carries no row (a private document's content never reaches another institution);
- ``unsubscribe``: the subscriber drops every copy of the patient and ignores later copies of it
  (one already in flight when the subscription ended).

``message_id`` is stable across replays (it is made of the captured event's id), so a notification
caused by a message is delivered at least once with the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.core.codec import DecodeError, decode, encode
from streams.core.model import ChangeEvent, RowValue, Write
from streams.routing.matrix_model import Matrix
from streams.sharing.gate import is_shared
from streams.sharing.subscriptions import SOURCE_COLUMN, route_subscribed, subscribe_writes

CONTRACT = "subscription_message"
KINDS: tuple[str, ...] = ("subscribe", "unsubscribe", "copy", "withdraw")
#: The last part of every subscriber's feed topic: ``<prefix>.<node>.sub``, under the node's link prefix.
FEED_TOPIC_PART = "sub"


def feed_topic(topic_prefix: str, node: str) -> str:
    """The feed topic of subscriber ``node`` (``platsync.hosp-b.sub``, under its link's prefix): the only topic
    of other institutions' records that the node's processes may read (NetworkPlan.feed_topic)."""
    return f"{topic_prefix}.{node}.{FEED_TOPIC_PART}"


@dataclass(frozen=True)
class FeedMessage:
    """One message of a subscriber's feed (see the module docstring for the kinds)."""

    kind: str
    subscriber: str
    patient_id: str
    message_id: str
    source_commit_ts_ms: int
    record_id: str | None = None
    source_node: str | None = None
    version: int = 0
    row: dict[str, RowValue] | None = None
    #: The fan-out's order of the record's states: greater is later (it is not the version: two states of
    #: a conflict share a version, and a withdrawal may lose to a copy at the same version).
    seq: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feed message kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.kind in ("copy", "withdraw") and (not self.record_id or not self.source_node):
            raise ValueError(f"a {self.kind} message names its record and its source node")
        if self.kind == "copy" and self.row is None:
            raise ValueError("a copy message carries the document's row")


def encode_feed_message(message: FeedMessage) -> bytes:
    """The message's bytes against ``schemas/subscription_message.avsc``."""
    record: dict[str, Any] = {name: getattr(message, name) for name in FeedMessage.__dataclass_fields__}
    if message.row is not None:
        record["row"] = {k: {"data": v} if isinstance(v, bytes) else v for k, v in message.row.items()}
    return encode(CONTRACT, record)


def decode_feed_message(data: bytes | None) -> FeedMessage:
    """Decode a feed message; :class:`streams.core.codec.DecodeError` if it is not one."""
    record = decode(CONTRACT, data)
    row = record.get("row")
    if row is not None:
        record["row"] = {k: v["data"] if isinstance(v, dict) else v for k, v in row.items()}
    try:
        return FeedMessage(**record)
    except ValueError as exc:
        raise DecodeError(f"{CONTRACT}: {exc}") from None


def _message(write: Write, subscriber: str, patient: str, home: str, commit_ts_ms: int) -> FeedMessage:
    return FeedMessage(
        kind="copy" if write.op == "upsert" else "withdraw", subscriber=subscriber, patient_id=patient,
        message_id=f"{write.event_id}@{subscriber}", source_commit_ts_ms=commit_ts_ms, record_id=write.key,
        source_node=home, version=write.version, row=write.row if write.op == "upsert" else None)


def _may_have_been_shared(change: ChangeEvent) -> bool:
    """A withdrawal concerns a subscriber only if the document may have reached it: deleted, or shared
    just before this change. A private note written or edited as private is never mentioned (not even by
    id) on another institution's feed."""
    return change.op == "d" or (change.before is not None and is_shared(change.before))


def feed_for_change(change: ChangeEvent, matrix: Matrix, home: str,
                    subscribers: Mapping[str, Iterable[str]]) -> dict[str, tuple[FeedMessage, ...]]:
    """The feed messages (by subscriber) that a change captured on ``home``'s link requires; empty if the
    change concerns no other institution's subscription (:func:`route_subscribed` says why)."""
    decision = route_subscribed(change, matrix, home, subscribers)
    image = change.row if change.row is not None else change.before
    patient = str((image or {}).get("patient_id", ""))
    out: dict[str, tuple[FeedMessage, ...]] = {}
    for node, writes in decision.writes.items():
        messages = tuple(_message(w, node, patient, home, change.commit_ts_ms) for w in writes
                         if w.op == "upsert" or _may_have_been_shared(change))
        if messages:
            out[node] = messages
    return out


def subscribe_feed(subscriber: str, patient: str, held: Iterable[tuple[str, Mapping[str, RowValue], int]],
                   subscription_id: str, now_ms: int) -> tuple[FeedMessage, ...]:
    """A new subscription's messages: ``subscribe``, then a ``copy`` of each shared document of the patient
    that another institution holds (``held``: (home, row, seq) triples, as the fan-out knows them)."""
    held = list(held)
    seqs = {str(row["id"]): seq for _home, row, seq in held}
    opening = FeedMessage(kind="subscribe", subscriber=subscriber, patient_id=patient,
                          message_id=f"{subscription_id}:subscribe", source_commit_ts_ms=now_ms)
    copies = tuple(
        FeedMessage(kind="copy", subscriber=subscriber, patient_id=patient,
                    message_id=f"{subscription_id}:{w.key}", source_commit_ts_ms=now_ms, record_id=w.key,
                    source_node=str(w.row[SOURCE_COLUMN]) if w.row else None, version=w.version, row=w.row,
                    seq=seqs[w.key])
        for w in subscribe_writes(subscriber, ((home, row) for home, row, _seq in held))
        if w.row is not None and w.row.get("patient_id") == patient)
    return (opening, *copies)


def unsubscribe_feed(subscriber: str, patient: str, subscription_id: str, now_ms: int) -> FeedMessage:
    """The message ending a subscription: the subscriber drops every copy of the patient it holds."""
    return FeedMessage(kind="unsubscribe", subscriber=subscriber, patient_id=patient,
                       message_id=f"{subscription_id}:unsubscribe", source_commit_ts_ms=now_ms)
