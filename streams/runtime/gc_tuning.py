"""Python garbage-collector settings for the long-running engine processes.

Measured with ``perf`` during a 20,000-document bulk (bench/RESULTS.md): the cyclic collector
took about a quarter of the target-side capture's CPU and a tenth of the source side's. It
runs every 700 container allocations and, now and then, walks every object of the process:
SQLAlchemy metadata, JPype's class wrappers, Faust, all long-lived. Almost everything the
engine allocates per change is freed by reference counting and never needs the collector.
"""

from __future__ import annotations

import gc
import sys

#: Container allocations between two young collections (CPython's default is 700).
YOUNG_THRESHOLD = 20_000


def tune_for_throughput() -> None:
    """Collect less often, and never walk again what exists now (call once, after start-up).

    ``gc.freeze`` moves every object alive now into a generation the collector ignores: start-up
    state (modules, metadata, JVM class wrappers) lives as long as the process anyway. Cycles
    created later are still collected.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    sys.setswitchinterval(0.0005)
