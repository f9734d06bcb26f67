"""CPU seconds used by each component of the stack, read from ``/proc``, per scenario.

A component is its pid-file process and every descendant (like :mod:`bench.memory`). Its CPU
time is the sum, over the processes alive at the reading, of their own user and system time
(all threads) plus what their already reaped children used (``cutime``/``cstime``): a
PostgreSQL backend that exited is counted in its postmaster. The difference of two readings is
what the component used in between; a component restarted in between is read from zero.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from bench.memory import PROC, _children_map, process_tree

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    """User + system time of ``pid`` and its reaped children, in seconds (0 if it is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name (which may hold spaces): state is field 3, utime field 14.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    except (ValueError, IndexError):
        return 0.0
    return (utime + stime + cutime + cstime) / _TICKS_PER_S


def read_cpu(components: Mapping[str, int | None]) -> dict[str, tuple[int, float]]:
    """``{component: (pid, cpu seconds of its process tree)}`` for every running component."""
    children = _children_map()
    return {name: (pid, sum(_process_cpu_s(p) for p in process_tree(pid, children)))
            for name, pid in components.items() if pid is not None}


class CpuMeter:
    """Measures what each component used between :meth:`start` and :meth:`stop`."""

    def __init__(self, components: Callable[[], Mapping[str, int | None]]) -> None:
        self._components = components
        self._start: dict[str, tuple[int, float]] = {}

    def start(self) -> None:
        """Take the first reading."""
        self._start = read_cpu(self._components())

    def stop(self) -> dict[str, float]:
        """CPU seconds per component since :meth:`start`, largest first, and their ``total``."""
        used: dict[str, float] = {}
        for name, (pid, seconds) in read_cpu(self._components()).items():
            start_pid, start_s = self._start.get(name, (pid, 0.0))
            used[name] = round(seconds - (start_s if start_pid == pid else 0.0), 2)
        ordered = dict(sorted(used.items(), key=lambda item: -item[1]))
        ordered["total"] = round(sum(used.values()), 2)
        return ordered
