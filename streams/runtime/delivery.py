"""Produce a set of messages and wait until the broker has every one of them (at-least-once senders)."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Producer

from streams.core.errors import PlatSyncError

#: (topic, key, value) of one message to deliver.
Outgoing = tuple[str, bytes | None, bytes]


class DeliveryError(PlatSyncError, RuntimeError):
    """Some messages were not acknowledged: the caller keeps its state and sends them all again."""


def deliver(producer: Producer, messages: Iterable[Outgoing], timeout_s: float, what: str) -> int:
    """Produce ``messages`` and wait up to ``timeout_s`` for every acknowledgement; how many were sent.

    :class:`DeliveryError` (naming ``what``, the undelivered count and the first errors) if any was not
    acknowledged: the caller must not record them as sent, and sends them again (the receivers are
    idempotent)."""
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    count = 0
    for topic, key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        count += 1
    remaining = producer.flush(timeout_s) if count else 0
    if remaining or errors:
        raise DeliveryError(f"{what}: {remaining} of {count} messages undelivered, errors: {errors[:3]}")
    return count
