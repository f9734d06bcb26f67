"""Run Debezium's ``Threads.timer()`` in a real JVM, with or without the timer fix ahead of the jars.

Run by ``tests/e2e/test_timer_fix.py`` in its own process (a process can start one JVM):
``python tests/support/timer_fix_probe.py [CLASSES_DIR]``. Prints one JSON object:
``{"loaded": bool, "spinning_checks": int, "timers": int}``: ``spinning_checks`` counts the checks,
over the last milliseconds of short timers, that found ``remaining()`` at zero while ``expired()``
was still false: the window in which ``ChangeEventQueue.poll()`` spins on the clock.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.capture.debezium import start_jvm  # noqa: E402
from connectors.capture.timer_fix import timer_fix_loaded  # noqa: E402

TIMERS = 20
TIMER_MS = 3


def main(classes: str | None) -> None:
    """Run the timers and print the counts."""
    start_jvm(ahead=[Path(classes)] if classes else [])
    import jpype

    threads = jpype.JClass("io.debezium.util.Threads")
    clock = jpype.JClass("io.debezium.util.Clock").SYSTEM
    duration = jpype.JClass("java.time.Duration")
    spinning = 0
    for _ in range(TIMERS):
        timer = threads.timer(clock, duration.ofMillis(TIMER_MS))
        while True:
            remaining = timer.remaining().toMillis()
            expired = bool(timer.expired())  # read after remaining(): elapsed only grows in between
            if expired:
                break
            if remaining <= 0:
                spinning += 1
    print(json.dumps({"loaded": timer_fix_loaded(), "spinning_checks": spinning, "timers": TIMERS}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
