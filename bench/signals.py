"""Signals during a benchmark: SIGTERM unwinds like Ctrl-C, and stopping the processes is not cut short.

The benchmark's processes run in sessions of their own (infra/local/process.py), so a signal to the
benchmark reaches only the benchmark. Python ends on SIGTERM without running ``finally`` blocks:
:func:`sigterm_unwinds` makes it raise :class:`SystemExit` instead, so the benchmark stops what it
started; :func:`uninterrupted` keeps a second Ctrl-C or SIGTERM from interrupting that stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Inside, SIGTERM raises ``SystemExit(143)`` in the main thread (elsewhere: nothing changes)."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Inside, Ctrl-C and SIGTERM are ignored (main thread only); the previous handlers come back after."""
    if not _in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
