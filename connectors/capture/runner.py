"""The capture process of one side: Debezium -> stamped change events -> the broker.

Usage::

    python -m connectors.capture.runner --side local|remote [--config PATH] [--data-dir DIR]

One process per side runs one embedded Debezium PostgreSQL engine per captured store of that
side (``streams.core.model.CAPTURED_STORES``: the store databases and Keycloak's), all in one JVM,
one thread each. For every batch the handler converts the records
(:class:`~connectors.capture.envelope.TransactionStamper`; Keycloak:
:class:`~connectors.capture.keycloak_converter.KeycloakAccountConverter`),
produces them Avro-encoded to ``settings.topic(side, store)`` keyed ``<table>:<key>`` with an
idempotent ``acks=all`` producer and waits for every delivery report before returning, so that
Debezium commits its offsets only for events the broker acknowledged (at-least-once). Then it
atomically rewrites ``<data_dir>/state/capture/<side>.<store>.json`` (progress) and, when they
changed, the remembered transaction markers (``<side>.<store>.markers.json``).

Exit codes: 0 after SIGTERM/SIGINT (engines closed, offsets flushed); 1 if any engine stops or
fails, or a batch cannot be delivered (the supervisor restarts the process); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from confluent_kafka import KafkaException

from connectors.capture.batch_values import batch_values_classes
from connectors.capture.capture_state import CaptureState
from connectors.capture.debezium import CapturingEngine, connector_properties, make_engine, slot_name, start_jvm
from connectors.capture.echo_filter import compiled_classes, dropped_by_filter
from connectors.capture.envelope import TransactionStamper
from connectors.capture.keycloak_converter import KeycloakAccountConverter
from connectors.capture.marker_lookup import marker_lookup
from connectors.capture.publisher import DeliveryError, Publisher
from connectors.capture.timer_fix import timer_fix_classes, timer_fix_loaded
from connectors.keycloak.accounts import Account, read_accounts
from connectors.keycloak.crypto import key_ring_for
from connectors.stores.origins import capture_stream_properties, server_version, wants_origin_filter
from streams.core.codec import MessageCodec
from streams.core.model import SIDES, ChangeEvent
from streams.runtime.confluent_wire import codec_for
from streams.runtime.connections import keycloak_db_dsn, libpq_dsn
from streams.runtime.gc_tuning import tune_for_throughput
from streams.runtime.jsonfile import read_json, write_json
from streams.runtime.kafka_config import client_config
from streams.runtime.log_repeats import OutageLog
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.metrics import CaptureMetrics, Health, MetricsPortError, capture_metrics, serve
from streams.runtime.retry import Backoff, RetryStopped, retry
from streams.runtime.settings import Settings, SettingsError, load_settings
from streams.runtime.state_files import failure_path, retrying_path
from streams.runtime.topics import TopicError, ensure_topics

log = logging.getLogger("platsync.capture")
T = TypeVar("T")
BROKER_RETRY_MAX_S = 1.0
CLOSE_TIMEOUT_S = 60.0


def _store_dsn(settings: Settings, side: str, store: str) -> str:
    if store == "keycloak":
        return keycloak_db_dsn(settings, side, "capture")
    return libpq_dsn(settings, side, store, "capture")


def capture_ready(settings: Settings, side: str, stores: Sequence[str] | None = None) -> bool:
    """True if every replication slot of ``side`` (or of ``stores``) exists and is active."""
    for store in tuple(stores or settings.captured_stores(side)):
        name = slot_name(settings, side, store)
        try:
            with psycopg.connect(_store_dsn(settings, side, store) + " connect_timeout=3", autocommit=True) as conn:
                row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
        except psycopg.Error:
            return False
        if not row or not row[0]:
            return False
    return True


def transaction_stamper(settings: Settings, side: str, store: str) -> TransactionStamper:
    """The stamper of one captured database, reading a marker Debezium did not deliver from the store."""
    retry_file = retrying_path(settings, side)
    lookup = marker_lookup(lambda: _store_dsn(settings, side, store), f"{side}.{store}",
                           lambda action, what: _retrying(action, what, retry_file))
    return TransactionStamper(side, store, lookup_marker=lookup)


def keycloak_converter(settings: Settings, side: str) -> KeycloakAccountConverter:
    """The account converter of ``side``, reading Keycloak's database and this side's META."""
    realm = settings.keycloak_realm
    retry_file = retrying_path(settings, side)

    def read(user_ids: list[str]) -> dict[str, Account]:
        def query() -> dict[str, Account]:
            with psycopg.connect(keycloak_db_dsn(settings, side, "capture") + " connect_timeout=5") as conn:
                return read_accounts(conn, realm, user_ids)
        return _retrying(query, f"{side} Keycloak database", retry_file)

    def applied(usernames: list[str]) -> dict[str, tuple[str, str]]:
        def query() -> dict[str, tuple[str, str]]:
            with psycopg.connect(libpq_dsn(settings, side, "meta", "capture") + " connect_timeout=5") as conn:
                rows = conn.execute("SELECT username, fingerprint, applied_at::text FROM platsync_keycloak_applied "
                                    "WHERE username = ANY(%s)", (usernames,)).fetchall()
            return {username: (fingerprint, token) for username, fingerprint, token in rows}
        return _retrying(query, f"{side}/meta", retry_file)

    def realm_id() -> str | None:
        def query() -> str | None:
            with psycopg.connect(keycloak_db_dsn(settings, side, "capture") + " connect_timeout=5") as conn:
                row = conn.execute("SELECT id FROM realm WHERE name = %s", (realm,)).fetchone()
            return None if row is None else str(row[0])
        return _retrying(query, f"{side} Keycloak database", retry_file)

    return KeycloakAccountConverter(side, read, applied, key_ring_for(settings), realm_id)


def _retrying(action: Callable[[], T], what: str, retry_file: Path,
              errors: tuple[type[BaseException], ...] = (psycopg.OperationalError,),
              stop: threading.Event | None = None, max_delay_s: float = 10.0,
              summary_every_s: float = 60.0) -> T:
    """Run ``action``, retrying with back-off while ``what`` is unreachable (nothing is acked meanwhile).

    While it retries, ``retry_file`` names what is unreachable so that ``platsync status`` shows it;
    the log gets the outage's start, a summary every ``summary_every_s`` and its end, not a line per
    attempt (a long link cut must not flood it). ``stop`` (set at shutdown) ends the retries with
    :class:`~streams.runtime.retry.RetryStopped`.
    """
    since = time.time_ns() // 10**6
    outage = OutageLog(log, what, summary_every_s)

    def failed(exc: BaseException, attempts: int, delay: float) -> None:
        outage.failed(str(exc).strip()[:500], delay)
        write_json(retry_file, {"what": what, "error": str(exc).strip()[:500], "since_ts_ms": since,
                                "attempts": attempts, "pid": os.getpid()})

    def succeeded(_failed: int) -> None:
        # After every success, not only after this call's failures: a retry that ended without one (an
        # engine rebuilt inside the same process) leaves its file behind, and status would show it forever.
        retry_file.unlink(missing_ok=True)
        outage.recovered()

    return retry(action, what, retry_on=errors, backoff=Backoff(0.5, max_delay_s), stop=stop,
                 on_failure=failed, on_success=succeeded)


class StoreCapture:
    """One captured database: its stamper, publisher, progress file and Debezium engine."""

    def __init__(self, settings: Settings, side: str, store: str, echo_filter: bool = False,
                 metrics: CaptureMetrics | None = None, codec: MessageCodec | None = None,
                 joined_values: bool = False) -> None:
        self.settings = settings
        self.side = side
        self.store = store
        self.metrics = metrics
        self.stamper: TransactionStamper | KeycloakAccountConverter = (
            keycloak_converter(settings, side) if store == "keycloak" else transaction_stamper(settings, side, store))
        self.state = CaptureState.restore(settings, side, store, self.stamper)
        self._retry_file = retrying_path(settings, side)  # built once, not per batch
        self.publisher = Publisher(settings, settings.topic(side, store),
                                   f"platsync-{settings.client_tag(side)}-capture-{store}", codec,
                                   principal=f"capture-{side}")
        self.failure: BaseException | None = None
        self.close_error: BaseException | None = None  # raised by the engine's run while closing
        self.stopping = threading.Event()
        self.batches = 0
        self._counted = (0, 0)  # (events, echoes) of this process already added to the metrics
        properties = connector_properties(settings, side, store, echo_filter=echo_filter)
        if wants_origin_filter(settings, store):  # asked first: it saves the version query
            properties.update(capture_stream_properties(
                server_version(_store_dsn(settings, side, store) + " connect_timeout=5")))
        #: The server leaves the sinks' transactions out (PostgreSQL >= 16: connectors/stores/origins.py).
        self.origin_filter = "slot.stream.params" in properties
        # Echo rows dropped inside the engine never reach the stamper; they are counted by the filter
        # (connector_properties decides which stores get it).
        self.echo_filter = "transforms.echo.type" in properties
        self.engine: CapturingEngine = make_engine(properties, self, joined_values)
        self.thread = threading.Thread(target=self._run, name=f"capture-{side}-{store}", daemon=True)

    @property
    def name(self) -> str:
        """``<side>.<store>``."""
        return f"{self.side}.{self.store}"

    def _run(self) -> None:
        try:
            self.engine.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            if self.stopping.is_set():
                # Raised by the engine while it is being closed: judged at exit by the engine's own
                # completion report (a clean close flushed the offsets).
                log.warning("%s: the engine's run ended with %s while closing", self.name, type(exc).__name__)
                self.close_error = exc
                return
            self.failure = self.failure or exc

    def closed_cleanly(self) -> bool:
        """After close: no handler or engine failure, and Debezium reported a successful completion if
        its run raised while closing."""
        if self.failure is not None:
            return False
        if self.close_error is None:
            return True
        return self.engine.completed.is_set() and bool(self.engine.outcomes) and self.engine.outcomes[-1].success

    def handleJsonBatch(self, records: Any) -> None:  # noqa: N802 - the Java callback's name
        """Handle one batch of Java records (without the batch helper, see ``handleValues``)."""
        # The value names the table and the row's id: the record key is not fetched (a JNI call and a
        # Java object fewer per record).
        self.handleValues([None if (value := record.value()) is None else str(value) for record in records])

    def handleValues(self, values: list[str | None]) -> None:  # noqa: N802 - named like the Java callback
        """Convert, publish and acknowledge one Debezium batch, given as its records' JSON values (None:
        a tombstone), on the engine's thread."""
        try:
            events: list[ChangeEvent] = []
            for value in values:  # heartbeats (value without "op") are ignored by the stamper
                events.extend(self.stamper.convert(None, value))
            if isinstance(self.stamper, KeycloakAccountConverter):
                events.extend(self.stamper.finish_batch())
            # A broker out of reach (link cut, broker restart) is waited out: the batch stays
            # unacknowledged, so Debezium keeps its position and the slot keeps the WAL.
            # Retried at least every second: after a link cut, the catch-up starts as soon as the
            # broker answers again instead of after a long back-off.
            _retrying(lambda: self.publisher.publish(events, self.stopping),
                      f"broker {self.settings.broker_bootstrap}", self._retry_file,
                      (DeliveryError, KafkaException), self.stopping,
                      max_delay_s=BROKER_RETRY_MAX_S, summary_every_s=self.settings.log_repeat_summary_s)
            self.batches += 1
            self._save_state(events)
        except BaseException as exc:
            if isinstance(exc, RetryStopped):  # raised by _retrying only once self.stopping is set
                # Stopped while the broker was out of reach: not a failure. Nothing of this batch was
                # acknowledged, so Debezium captures it again at the next start (a DeliveryError of a
                # publish cut short by the stop is retried, and so ends as RetryStopped too).
                log.info("%s: stopped while waiting for the broker; the batch is captured again at the next "
                         "start", self.name)
                raise
            # The exception's text may quote row values (PHI): the log names its class and the file
            # (not a log) that holds the text; the supervisor restarts us.
            failure = failure_path(self.settings, self.side, self.store)
            write_json(failure, {"side": self.side, "store": self.store, "error_class": type(exc).__name__,
                                 "error": str(exc)[:4000], "failed_ts_ms": time.time_ns() // 1_000_000})
            log.error("%s: batch failed, offsets not committed: %s (details in %s)", self.name,
                      type(exc).__name__, failure)
            self.failure = self.failure or exc
            raise

    def _save_state(self, produced: list[ChangeEvent]) -> None:
        echoes = self.stamper.echoes_dropped + (
            dropped_by_filter(slot_name(self.settings, self.side, self.store)) if self.echo_filter else 0)
        self.state.save(self.stamper, produced, echoes)
        if self.metrics is not None:
            events = self.stamper.events
            self.metrics.record_batch(self.store, events - self._counted[0], echoes - self._counted[1],
                                      self.state.last_lsn, self.state.last_commit_ts_ms)
            self._counted = (events, echoes)

    def problem(self) -> str | None:
        """Why this capture cannot continue, or None while it runs fine (no row values: it is logged)."""
        if self.failure is not None:
            where = failure_path(self.settings, self.side, self.store)
            return f"handler failed: {type(self.failure).__name__} (details in {where})"
        error = self.engine.python_error()
        if error is not None:
            return f"handler failed: {type(error).__name__}"
        if self.engine.completed.is_set():
            outcome = self.engine.outcomes[-1]
            return f"Debezium engine stopped (success={outcome.success}): {outcome.message} {outcome.error or ''}"
        if not self.thread.is_alive():
            return "engine thread exited"
        return None


def _close_all(captures: Sequence[StoreCapture]) -> bool:
    """Close every engine in parallel (offsets are flushed on close); True if all stopped in time."""
    closers = [threading.Thread(target=c.engine.close, name=f"close-{c.name}", daemon=True)
               for c in captures if not c.engine.completed.is_set()]
    for t in closers:
        t.start()
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    for t in closers:
        t.join(max(0.0, deadline - time.monotonic()))
    for c in captures:
        c.thread.join(max(0.0, deadline - time.monotonic()))
    return all(not t.is_alive() for t in closers) and all(not c.thread.is_alive() for c in captures)


def ensure_capture_topics(settings: Settings, side: str) -> None:
    """Create the side's capture topics (one partition each) if they are missing.

    An unreachable broker (link cut) is not fatal here, and not waited for long: publishing retries
    until it is back.
    """
    topics = [settings.topic(side, s) for s in settings.captured_stores(side)]
    try:
        admin_id = f"platsync-{settings.client_tag(side)}-capture-admin"
        ensure_topics(client_config(settings, admin_id, f"capture-{side}"), topics,
                      real_cluster=bool(settings.broker_bootstrap_servers), timeout_s=3.0)
    except (TopicError, KafkaException) as exc:
        log.warning("capture %s: cannot check the topics now (%s); publishing will retry", side, exc)


def run(settings: Settings, side: str) -> int:
    """Run the capture of ``side`` until a signal (exit 0) or a failure (exit 1)."""
    stop = threading.Event()
    received: list[int] = []

    def _on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    metrics = capture_metrics(side, settings.captured_stores(side))
    health = Health(settings.metrics_stall_after_s)
    health.beat("main")
    retry_file = retrying_path(settings, side)
    health.add_check(lambda: f"retrying: {read_json(retry_file).get('what', 'a store')} unreachable"
                     if retry_file.exists() else None, readiness=True)
    server = serve(settings, f"capture-{side}", metrics.registry, health)
    try:
        return _run_captures(settings, side, stop, received, metrics, health)
    finally:
        if server is not None:
            server.stop()


def _run_captures(settings: Settings, side: str, stop: threading.Event, received: list[int],
                  metrics: CaptureMetrics, health: Health) -> int:
    """The body of :func:`run`: start the engines, watch them, close them."""
    ensure_capture_topics(settings, side)
    (settings.data_dir / "capture").mkdir(parents=True, exist_ok=True)
    retrying_path(settings, side).unlink(missing_ok=True)  # left by a capture killed while retrying
    codec = codec_for(settings)  # with a schema registry: registers schemas/*.avsc, refuses incompatible ones
    filter_classes = compiled_classes(settings)
    batch_classes = batch_values_classes(settings)
    timer_classes = timer_fix_classes(settings)
    start_jvm([c for c in (filter_classes, batch_classes) if c], ahead=[timer_classes] if timer_classes else [])
    if timer_classes is not None and not timer_fix_loaded():
        log.warning("capture %s: the Debezium timer fix in %s was not loaded; running Debezium's own timer",
                    side, timer_classes)
    captures = [StoreCapture(settings, side, store, echo_filter=filter_classes is not None, metrics=metrics,
                             codec=codec, joined_values=batch_classes is not None)
                for store in settings.captured_stores(side)]
    tune_for_throughput()
    for c in captures:
        c.thread.start()
    log.info("capture %s started: %s", side, ", ".join(c.name + (" (origin = none)" if c.origin_filter else "")
                                                       for c in captures))
    code = 0
    next_slot_check: float | None = 0.0  # until every slot streams; then readiness follows the retry file
    while not stop.wait(0.2):
        health.beat("main")
        problems = [(c.name, p) for c in captures if (p := c.problem()) is not None]
        if problems:
            for name, problem in problems:
                log.error("capture %s: %s; exiting so that the supervisor restarts the capture", name, problem)
            health.fail(f"{problems[0][0]}: {problems[0][1]}")
            code = 1
            break
        if next_slot_check is not None and time.monotonic() >= next_slot_check:
            if capture_ready(settings, side):
                health.set_ready(True)
                next_slot_check = None
            else:
                health.set_ready(False, "replication slots not active yet")
                next_slot_check = time.monotonic() + 2.0
    health.set_ready(False, "stopping")
    if received:
        log.info("capture %s: signal %d received, closing engines", side, received[0])
    for c in captures:
        c.stopping.set()
    clean = _close_all(captures)
    if not clean:
        log.error("capture %s: engines did not stop within %.0fs", side, CLOSE_TIMEOUT_S)
        code = code or 1
    for c in captures:
        if code == 0 and not c.closed_cleanly():
            outcome = c.engine.outcomes[-1] if c.engine.outcomes else None
            log.error("capture %s: did not close cleanly: %s", c.name,
                      type(c.failure or c.close_error).__name__ if (c.failure or c.close_error) else
                      f"engine outcome {outcome.success if outcome else 'missing'}")
            code = 1
    log.info("capture %s stopped (exit %d)", side, code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m connectors.capture.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--side", required=True, choices=SIDES)
    parser.add_argument("--config", type=Path, default=None, help="settings TOML file")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory (overrides the settings)")
    args = parser.parse_args(argv)
    configure_logging(f"capture-{args.side}")
    try:
        settings = load_settings(config=args.config, data_dir=args.data_dir)
        configure_for(settings, f"capture-{args.side}")
    except (SettingsError, ValueError) as exc:
        log.error("capture %s: bad settings: %s", args.side, exc)
        return 2
    try:
        return run(settings, args.side)
    except MetricsPortError as exc:
        log.error("%s", exc)
        return 2
    except Exception:  # noqa: BLE001 - a clear error and a non-zero exit for the supervisor
        log.exception("capture %s failed", args.side)
        return 1


if __name__ == "__main__":
    exit_code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)  # the JVM's non-daemon threads must not keep the process alive
