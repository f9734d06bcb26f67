"""The one retry policy of the engine: exponential back-off while a dependency is unreachable.

Every loop that waits out an unreachable store, broker, registry or Keycloak goes through
:func:`retry` (the worker's apply, the capture's publishing and Keycloak reads, the raw-topic
stamper, the schema registry at start, the worker waiting for its broker, the reference API's
Keycloak calls), so they share one behaviour: the delay starts at ``Backoff.initial_s`` and grows
by ``Backoff.factor`` up to ``Backoff.max_s``; a stop event ends the wait at once
(:class:`RetryStopped`); an optional deadline or attempt limit gives up with the last error;
``retry_if`` can refuse to repeat a particular error; ``on_failure``/``on_success`` report the
outage (status files, metrics, logs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from streams.core.errors import RetryableError

T = TypeVar("T")


class RetryStopped(RetryableError):
    """The process is stopping while it waited for a dependency; nothing was acknowledged."""


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``initial_s``, multiplied by ``factor`` up to ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0

    def next(self, delay: float) -> float:
        """The delay after ``delay``."""
        return min(self.max_s, delay * self.factor)

    def waits(self, attempts: int) -> list[float]:
        """The waits between ``attempts`` attempts (what an error message can quote)."""
        waits, delay = [], self.initial_s
        for _ in range(max(0, attempts - 1)):
            waits.append(delay)
            delay = self.next(delay)
        return waits


def retry(action: Callable[[], T], what: str, *,
          retry_on: tuple[type[BaseException], ...] = (RetryableError,),
          backoff: Backoff = Backoff(),
          stop: threading.Event | None = None,
          deadline_s: float | None = None,
          max_attempts: int | None = None,
          retry_if: Callable[[BaseException], bool] | None = None,
          on_failure: Callable[[BaseException, int, float], None] | None = None,
          on_success: Callable[[int], None] | None = None,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``action`` until it succeeds, waiting with back-off after each error of ``retry_on``.

    ``on_failure(error, attempts, delay)`` is called after each failed attempt, ``on_success(failed
    attempts)`` once it succeeded. With ``stop``, setting it ends the wait with :class:`RetryStopped`;
    with ``deadline_s``, the last error is raised once the next wait would pass the deadline, with
    ``max_attempts`` once that many attempts failed. Errors not in ``retry_on``, and those for which
    ``retry_if`` is false, propagate at once.
    """
    delay = backoff.initial_s
    attempts = 0
    deadline = None if deadline_s is None else clock() + deadline_s
    while True:
        try:
            result = action()
        except retry_on as exc:
            attempts += 1
            if retry_if is not None and not retry_if(exc):
                raise
            if max_attempts is not None and attempts >= max_attempts:
                raise
            if deadline is not None and clock() + delay > deadline:
                raise
            if on_failure is not None:
                on_failure(exc, attempts, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise RetryStopped(f"{what}: stopped while retrying ({type(exc).__name__})") from exc
            else:
                sleep(delay)
            delay = backoff.next(delay)
            continue
        if on_success is not None:
            on_success(attempts)
        return result
