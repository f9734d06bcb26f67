"""Repeated failures logged once, then summarised: a link cut must not flood the logs.

During a cut every client retries its broker connection: before issue 13, ~57,000 connection
attempts in 8 minutes and 10 MB of logs. Two tools keep that to a line per cut plus one summary
line per interval:

- :class:`RepeatSummaryFilter`, a handler filter for third-party loggers that log each failed
  attempt themselves (aiokafka in the Faust worker): the first record of a kind passes, the
  rest are counted, and the next one after ``summary_every_s`` passes with the count.
- :class:`OutageLog`, for the engine's own retry loops: ``failed()`` on each failed attempt,
  ``recovered()`` on success; it logs the start of an outage, a summary every
  ``summary_every_s`` while it lasts, and its end with its duration and number of attempts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class _Seen:
    first_ts: float
    last_passed_ts: float
    suppressed: int = 0


class RepeatSummaryFilter(logging.Filter):
    """Lets the first warning/error of each kind from ``loggers`` through, then one per interval with
    the number held back meanwhile. A kind is the logger plus the unformatted message template, so
    "cannot connect to node %s" counts as one kind whatever the node."""

    def __init__(self, loggers: Iterable[str], summary_every_s: float = 60.0, min_level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = tuple(loggers)
        self.summary_every_s = summary_every_s
        self.min_level = min_level
        self.clock = clock
        self._seen: dict[tuple[str, str], _Seen] = {}

    def _applies(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.min_level and any(
            record.name == p or record.name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep, annotate or drop ``record`` (see the class docstring)."""
        if not self._applies(record):
            return True
        now = self.clock()
        key = (record.name, str(record.msg))
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(now, now)
            record.msg = f"{record.getMessage()} (repeats of this message are summarised every " \
                         f"{self.summary_every_s:g} s)"
            record.args = None
            return True
        if now - seen.last_passed_ts < self.summary_every_s:
            seen.suppressed += 1
            return False
        record.msg = f"{record.getMessage()} [{seen.suppressed} more like this in the last " \
                     f"{now - seen.last_passed_ts:.0f} s, first {now - seen.first_ts:.0f} s ago]"
        record.args = None
        record.exc_info, record.exc_text = None, None  # the first occurrence had the traceback
        seen.last_passed_ts, seen.suppressed = now, 0
        return True


@dataclass
class OutageLog:
    """Logs one outage of ``what`` (a broker, a database) as start, periodic summaries and end."""

    logger: logging.Logger
    what: str
    summary_every_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    attempts: int = 0
    _since: float | None = field(default=None, repr=False)
    _last_logged: float = field(default=0.0, repr=False)

    @property
    def ongoing(self) -> bool:
        """True between a failure and the next success."""
        return self._since is not None

    def failed(self, error: str, retry_in_s: float) -> None:
        """One failed attempt; ``error`` must not quote row values (it is logged)."""
        now = self.clock()
        self.attempts += 1
        if self._since is None:
            self._since, self._last_logged = now, now
            self.logger.warning("%s unreachable, retrying (next in %.1fs; a summary every %g s until it "
                                "answers): %s", self.what, retry_in_s, self.summary_every_s, error)
        elif now - self._last_logged >= self.summary_every_s:
            self._last_logged = now
            self.logger.warning("%s still unreachable after %.0f s (%d attempts), retrying: %s",
                                self.what, now - self._since, self.attempts, error)

    def recovered(self) -> None:
        """The action succeeded: log the end of an ongoing outage and reset."""
        if self._since is None:
            return
        self.logger.warning("%s reachable again after %.0f s (%d failed attempts)", self.what,
                            self.clock() - self._since, self.attempts)
        self._since, self.attempts = None, 0
