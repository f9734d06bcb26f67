"""Who a process id is: alive or not, and when it started (runtime layer).

A pid outlives its process; the start time and the boot id tell the process that wrote a state or pid
file from a later one that got the same pid (the embedded stack's pid files, the mode servers' state).
"""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def boot_id() -> str:
    """This boot's id (/proc), "" if unknown: a pid recorded under another boot is not ours."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, from /proc), or "" if unknown: with the boot id it
    tells the process we started from a later one that got the same pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
