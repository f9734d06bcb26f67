"""A Debezium ``handleJsonBatch`` handler that keeps every record's raw strings, for the fixture
capture scripts under ``tests/fixtures/debezium/``."""

from __future__ import annotations

import json
import threading
from typing import Any

from connectors.capture.debezium import HEARTBEAT_MESSAGE_PREFIX

Record = dict[str, str | None]


class Recorder:
    """Records as delivered (destination, key, value), with heartbeats and their messages apart."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.heartbeats: list[Record] = []
        self.heartbeat_messages: list[Record] = []
        self.lock = threading.Lock()

    def handleJsonBatch(self, records: Any) -> None:  # noqa: N802 - Java callback name
        """Keep each record of the batch (called on the engine's thread)."""
        with self.lock:
            for r in records:
                key, value = r.key(), r.value()
                rec: Record = {"destination": str(r.destination()), "key": None if key is None else str(key),
                               "value": None if value is None else str(value)}
                if rec["destination"].startswith("__debezium-heartbeat"):
                    self.heartbeats.append(rec)
                elif rec["destination"].endswith(".message") and json.loads(rec["key"] or "{}").get(
                        "prefix") == HEARTBEAT_MESSAGE_PREFIX:
                    self.heartbeat_messages.append(rec)  # the heartbeat action query's message
                else:
                    self.records.append(rec)

    def count(self) -> int:
        """Records kept so far (heartbeats apart)."""
        with self.lock:
            return len(self.records)
