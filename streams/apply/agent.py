"""Apply one batch of a route: decode -> route -> sinks -> dead letters -> progress.

This is what the Faust agent calls for every batch; it has no Faust dependency so it can be
driven directly. The order is the commit protocol: (1) every sink applies durably, (2) dead
letters are acknowledged by the broker, (3) progress is recorded; only then does the agent
return and Faust commit the consumer offsets. A crash anywhere replays the batch, which the
idempotent, version-guarded sinks absorb.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from connectors.sinks.base import Sink, SinkResult
from streams.core.codec import PLAIN, DecodeError, MessageCodec
from streams.core.errors import RetryableError
from streams.core.model import REPLICA_SOURCE_SIDES, REPLICA_STORE, ROUTES, ChangeEvent, Write, replica_node
from streams.core.reports import BatchReport, StoreProgress, TargetCounts
from streams.routing.matrix_model import Matrix
from streams.routing.replica import route_replica
from streams.routing.route import RoutingError, UndeclaredSourceError, UnknownApiError, route
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.log_repeats import OutageLog
from streams.runtime.retry import Backoff, retry

log = logging.getLogger("platsync.apply")
_EXCEPTION_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*(Error|Exception|Violation)")
T = TypeVar("T")
SCHEMA_REGISTRY = "schema registry"  # what the worker's state names while the registry is unreachable

HINTS = {
    "decode": ("the message is not a valid ChangeEvent or ChangeBatch (schemas/change_event.avsc, "
               "change_batch.avsc); check the capture version"),
    "unknown_api": ("the transaction carried no known API id: call platsync_mark_api(api_id) first in every "
                    "transaction that writes a source store (docs/integration.md), or add the API to the matrix"),
    "undeclared_source": ("the API wrote a store the matrix does not list as its source: fix the application "
                          "or streams/routing/matrix.toml"),
}


class RouteApplier:
    """Applies batches of one route's messages to the other side's target stores.

    A replica route (``local_to_<regional node>``, :func:`streams.core.model.replica_node`) reads both
    sides of a home link and writes a regional server's read-only copy: its changes are routed by
    :func:`streams.routing.replica.route_replica`, and its progress is kept per ``<side>.<store>``
    (both sides have a ``fructos_own``, with positions of their own).
    """

    def __init__(
        self,
        route_name: str,
        matrix: Matrix,
        sinks: dict[str, Sink],
        dead_letters: DeadLetterWriter,
        record_progress: Callable[[dict[str, StoreProgress]], None],
        retry_backoff_s: tuple[float, float] = (0.5, 10.0),
        codec: MessageCodec = PLAIN,
    ) -> None:
        self.route_name = route_name
        # Plain framing or the Confluent wire format (streams/runtime/confluent_wire.py); bound once, no per-event cost.
        self._split_changes, self._decode_change = codec.split_changes, codec.decode_change
        replica = replica_node(route_name)
        if replica is None:
            self.source_side, self.target_side = ROUTES[route_name]
            self.source_sides: tuple[str, ...] = (self.source_side,)
        else:
            self.source_side, self.target_side = "local", replica
            self.source_sides = REPLICA_SOURCE_SIDES
        self.replica = replica is not None
        self.matrix = matrix
        self.sinks = sinks
        self.dead_letters = dead_letters
        self.record_progress = record_progress
        self.retry_backoff_s = retry_backoff_s
        #: Stores currently unreachable (what -> last error), published in the worker's state file.
        self.retrying: dict[str, str] = {}
        #: Failed attempts per unreachable target since start (the metrics read it when scraped).
        self.retry_attempts: dict[str, int] = {}
        #: ``time.monotonic()`` when the batch being applied started; None between batches (liveness).
        self.busy_since: float | None = None

    def apply_batch(self, messages: Sequence[IncomingMessage]) -> BatchReport:
        """Process ``messages`` fully (blocking and retrying while a target store is unreachable)."""
        self.busy_since = time.monotonic()
        try:
            return self._apply_batch(messages)
        finally:
            self.busy_since = None

    def _apply_batch(self, messages: Sequence[IncomingMessage]) -> BatchReport:
        report = BatchReport()
        writes_by_store: dict[str, list[tuple[Write, IncomingMessage]]] = {}
        for msg in self._events_of(messages, report):
            report.events += 1
            change = self._decode(msg, report)
            if change is None:
                continue
            progress = report.progress.setdefault(self._progress_key(change.source_side, change.source_store),
                                                  StoreProgress())
            progress.events_seen += 1
            progress.last_lsn = max(progress.last_lsn, change.lsn)
            progress.last_commit_ts_ms = max(progress.last_commit_ts_ms, change.commit_ts_ms)
            if change.op == "probe":
                progress.last_probe_id = change.key
                continue
            try:
                decision = (route_replica(change, self.matrix, REPLICA_STORE) if self.replica
                            else route(change, self.matrix))
            except RoutingError as exc:
                kind = "unknown_api" if isinstance(exc, UnknownApiError) else (
                    "undeclared_source" if isinstance(exc, UndeclaredSourceError) else "routing")
                self._dead_letter(msg, kind, str(exc), HINTS.get(kind, "check the routing matrix"), report,
                                  self._progress_key(change.source_side, change.source_store))
                continue
            if decision.skipped:
                report.skipped += 1
            for write in decision.writes:
                writes_by_store.setdefault(write.target_store, []).append((write, msg))
                report.writes += 1
        for store, pairs in writes_by_store.items():
            self._apply_store(store, pairs, report)
        if report.dead_letters:
            self.dead_letters.flush()
        self._retry(lambda: self.record_progress(report.progress), "progress")
        return report

    def _events_of(self, messages: Sequence[IncomingMessage], report: BatchReport) -> Iterator[IncomingMessage]:
        """One message per change event: the elements of ``change_batch`` messages are taken apart
        (each keeps its batch's topic, partition and offset), a corrupt batch is dead-lettered whole."""
        for msg in messages:
            try:
                try:
                    elements = self._split_changes(msg.value)
                except RetryableError:  # the schema registry: wait for it, never dead-letter for it
                    elements = self._retry(lambda msg=msg: self._split_changes(msg.value), SCHEMA_REGISTRY)
            except DecodeError as exc:
                report.events += 1
                self._dead_letter(msg, "decode", str(exc), HINTS["decode"], report, None)
                continue
            if len(elements) == 1 and elements[0] is msg.value:
                yield msg
            else:
                for value in elements:
                    yield dataclasses.replace(msg, value=value)

    def _decode(self, msg: IncomingMessage, report: BatchReport) -> ChangeEvent | None:
        try:
            try:
                change = self._decode_change(msg.value)
            except RetryableError:  # the schema registry: wait for it, never dead-letter for it
                change = self._retry(lambda: self._decode_change(msg.value), SCHEMA_REGISTRY)
        except DecodeError as exc:
            self._dead_letter(msg, "decode", str(exc), HINTS["decode"], report, None)
            return None
        if change.source_side not in self.source_sides:
            self._dead_letter(msg, "wrong_route", f"change from side {change.source_side} on route "
                              f"{self.route_name}", "the topic carries another side's changes", report, None)
            return None
        return change

    def _apply_store(self, store: str, pairs: list[tuple[Write, IncomingMessage]], report: BatchReport) -> None:
        sink = self.sinks.get(store)
        by_event = {w.event_id: msg for w, msg in pairs}
        if sink is None:
            for _write, msg in pairs:
                self._dead_letter(msg, "no_sink", f"no sink for target store {store} on {self.target_side}",
                                  "configure the target store or fix the matrix", report, None)
            return
        by_origin: dict[str, list[Write]] = {}
        for w, _ in pairs:  # one origin on a home route; a replica route's batch may hold both sides'
            by_origin.setdefault(w.origin_side, []).append(w)
        result = SinkResult()
        for origin, writes in by_origin.items():
            part = self._retry(lambda writes=writes, origin=origin: sink.apply_batch(writes, origin),
                               f"{self.target_side}/{store}")
            result.applied += part.applied
            result.stale += part.stale
            result.conflicts += part.conflicts
            result.rejected.extend(part.rejected)
        report.applied += result.applied
        report.stale += result.stale
        report.targets[store] = TargetCounts(result.applied, result.stale, result.conflicts, len(result.rejected))
        for rejected in result.rejected:
            msg = by_event[rejected.write.event_id]
            self._dead_letter(msg, "sink_rejected", f"{self.target_side}/{store}: {rejected.error}",
                              rejected.hint, report, None)
        for _write, msg in pairs:
            report.progress.setdefault(self._store_of(msg), StoreProgress()).writes_applied += 1

    def _dead_letter(self, msg: IncomingMessage, kind: str, error: str, hint: str, report: BatchReport,
                     source_store: str | None) -> None:
        # The error may quote row values (a constraint's "DETAIL: Key (...)=(...)"): it goes to the
        # dead-letter record (access-controlled), the log gets where, the kind and the error's class.
        log.warning("dead letter on %s (%s[%d]@%d): %s (%s); details in %s", self.route_name, msg.topic,
                    msg.partition, msg.offset, kind, _error_class(error), self.dead_letters.topic)
        self.dead_letters.add(msg, kind, error, hint)
        report.dead_letters += 1
        report.dead_letter_kinds[kind] = report.dead_letter_kinds.get(kind, 0) + 1
        store = source_store or self._store_of(msg)
        report.progress.setdefault(store, StoreProgress()).dead_letters += 1

    def _retry(self, action: Callable[[], T], what: str) -> T:
        """``action`` retried while ``what`` is unreachable (streams/runtime/retry.py); shown in ``retrying``."""
        outage = OutageLog(log, f"{self.route_name}: {what}")

        def failed(exc: BaseException, _attempts: int, delay: float) -> None:
            self.retrying[what] = str(exc)
            self.retry_attempts[what] = self.retry_attempts.get(what, 0) + 1
            outage.failed(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, delay)

        def succeeded(_failed: int) -> None:
            self.retrying.pop(what, None)
            outage.recovered()

        return retry(action, what, backoff=Backoff(*self.retry_backoff_s), on_failure=failed, on_success=succeeded)


    def _progress_key(self, side: str, store: str) -> str:
        """Where a source store's progress is kept: the store, or ``<side>.<store>`` on a replica route."""
        return f"{side}.{store}" if self.replica else store

    def _store_of(self, msg: IncomingMessage) -> str:
        """The progress key of a message, from its topic name (``<prefix>.<side>.<store>``)."""
        side, store = msg.topic.rsplit(".", 2)[-2:]
        return self._progress_key(side, store)


def _error_class(error: str) -> str:
    """The exception class leading ``error`` (``UniqueViolation: ...``, ``side/store: KeyError: ...``),
    or ``"see the record"``: anything else in the text may be a row value and is not logged."""
    for part in error.split(": ", 2)[:2]:
        if _EXCEPTION_NAME.fullmatch(part):
            return part
    return "see the record"

