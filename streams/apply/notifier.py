"""A subscriber's notifier: publishes and delivers its notifications (docs/sharing.md).

Runs as a thread of the subscriber's process. Every second it takes the notifications that are due
(:func:`connectors.stores.notifications.due_notifications`): publishes the unpublished ones to the
node's notification topic (``<link prefix>.notifications``, ``schemas/notification.avsc``, keyed by
the idempotency key) and, when the node has a webhook, POSTs each undelivered one to it with the
header ``Idempotency-Key``. At-least-once: a notification is marked only after the broker or the
webhook (any 2xx) acknowledged it, so a crash in between sends it again with the same key; a failed
delivery is retried with back-off (1 s doubling to 5 min), its attempts and last error kept for
``platsync notifications list``. The log says how many and why a delivery failed, never what about.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from connectors.stores.notifications import (
    due_notifications,
    get_webhook,
    mark_delivered,
    mark_failed,
    mark_published,
)
from streams.core.codec import encode
from streams.runtime.delivery import DeliveryError, deliver
from streams.runtime.metrics import Health

log = logging.getLogger("platsync.notifier")
CONTRACT = "notification"
WEBHOOK_TIMEOUT_S = 10.0

#: POSTs a JSON body with headers; returns the HTTP status, raises OSError when the server is unreachable.
Post = Callable[[str, bytes, dict[str, str]], int]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to ``url`` (stdlib: no client to configure); the HTTP status, even an error's."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - operator's URL
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def notification_body(node: str, n: dict[str, Any]) -> dict[str, Any]:
    """What a notification says (the topic's record and the webhook's JSON body)."""
    return {"idempotency_key": n["message_id"], "node": node, "kind": n["kind"], "patient_id": n["patient_id"],
            "record_id": n["record_id"], "source_node": n["source_node"], "version": n["version"],
            "created_ts_ms": int(n["created_at"].timestamp() * 1000)}


@dataclass
class NotifierCounts:
    """What one pass did."""

    published: int = 0
    delivered: int = 0
    failed: int = 0


class Notifier:
    """Publishes and delivers one node's notifications (see the module docstring)."""

    def __init__(self, node: str, engine: Engine, producer: Producer, topic: str, post: Post = http_post) -> None:
        self.node, self.engine, self.producer, self.topic, self.post = node, engine, producer, topic, post
        self._woken = threading.Event()

    def run_once(self) -> NotifierCounts:
        """One pass over the due notifications."""
        counts = NotifierCounts()
        with self.engine.begin() as conn:
            due = due_notifications(conn)
            webhook = get_webhook(conn)
        if not due:
            return counts
        unpublished = [n for n in due if n["published_at"] is None]
        if unpublished:
            try:
                deliver(self.producer, ((self.topic, n["message_id"].encode(),
                                         encode(CONTRACT, notification_body(self.node, n))) for n in unpublished),
                        30, f"{self.node}: notification topic {self.topic}")
            except DeliveryError as exc:
                log.warning("%s; retried", exc)
            else:
                with self.engine.begin() as conn:
                    mark_published(conn, [n["message_id"] for n in unpublished])
                counts.published = len(unpublished)
        if webhook:
            for n in (n for n in due if n["delivered_at"] is None):
                if self._deliver(webhook, n):
                    counts.delivered += 1
                else:
                    counts.failed += 1
        if counts.delivered or counts.failed:
            log.info("%s: notifications: %d delivered to the webhook, %d failed (retried with back-off)",
                     self.node, counts.delivered, counts.failed)
        return counts

    def _deliver(self, webhook: str, n: dict[str, Any]) -> bool:
        body = json.dumps(notification_body(self.node, n), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": n["message_id"]}
        try:
            status = self.post(webhook, body, headers)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except OSError as exc:  # refused, timed out, name not resolved
            error = f"{type(exc).__name__}: {exc}"
        with self.engine.begin() as conn:
            if error is None:
                mark_delivered(conn, n["message_id"])
                return True
            when = mark_failed(conn, n["message_id"], n["attempts"], error)
        log.warning("%s: webhook delivery failed (%s); attempt %d, next at %s", self.node, error.split(":")[0],
                    n["attempts"] + 1, when.isoformat(timespec="seconds"))
        return False

    def wake(self) -> None:
        """Pass now: the subscriber recorded notifications (without it, the next pass is at most ``every_s`` away)."""
        self._woken.set()

    def run(self, stop: threading.Event, every_s: float = 1.0, health: Health | None = None) -> None:
        """Pass when woken or every ``every_s`` until ``stop``; a failed pass (an unreachable store) is logged and
        retried. ``health``: beaten every pass (a notifier thread that stopped passing makes the process not live)."""
        while not stop.is_set():
            self._woken.wait(every_s)
            self._woken.clear()
            if stop.is_set():
                return
            if health is not None:
                health.beat("notifier")
            try:
                self.run_once()
            except OperationalError as exc:
                log.warning("%s: notifications wait for the store: %s", self.node, str(exc).splitlines()[0])
            except Exception as exc:  # noqa: BLE001 - the thread must outlive one bad pass; retried next pass
                log.error("%s: notification pass failed: %s; retried in %.0f s", self.node, type(exc).__name__,
                          every_s)
