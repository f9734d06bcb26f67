"""Peak memory of the stack's processes, sampled from ``/proc`` while the benchmark runs.

Each component of the stack (``pg-local``, ``capture-local``, ``broker`` ...) is its pid-file
process plus all its descendants (PostgreSQL backends, the JVM's threads live in one process).
Every sample sums the proportional set size (``Pss`` of ``/proc/PID/smaps_rollup``) of a
component's processes, so PostgreSQL's shared buffers, mapped by every backend, count once;
where ``Pss`` is unreadable the resident set (``VmRSS``) stands in. A component's peak is its
largest sample, and for a single-process component never less than the kernel's own peak
(``VmHWM``), which sampling cannot miss.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _status_kb(pid, "VmRSS")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = (PROC / entry.name / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root: int, children: dict[int, list[int]]) -> list[int]:
    """``root`` and every descendant of it."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


@dataclass
class MemoryReport:
    """Peak memory per component, in MiB, and their sum."""

    peak_mb: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    @property
    def total_mb(self) -> float:
        """The sum of every component's peak."""
        return round(sum(self.peak_mb.values()), 1)


class MemorySampler:
    """Samples the memory of the stack's components in a background thread."""

    def __init__(self, components: Callable[[], dict[str, int | None]], interval_s: float = 0.25) -> None:
        self._components = components
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self.report = MemoryReport()

    def sample(self) -> None:
        """Take one sample of every running component."""
        children = _children_map()
        for name, pid in self._components().items():
            if pid is None:
                continue
            tree = process_tree(pid, children)
            kb = sum(_pss_kb(p) for p in tree)
            if len(tree) == 1:
                kb = max(kb, _status_kb(pid, "VmHWM"))
            mb = round(kb / 1024, 1)
            if mb > self.report.peak_mb.get(name, 0.0):
                self.report.peak_mb[name] = mb
        self.report.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()
