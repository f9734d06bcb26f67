"""The saved state of one captured database: transaction markers and progress (both capture paths).

The embedded capture (``connectors/capture/runner.py``) and the stamper of raw Debezium topics on
Kafka Connect (``connectors/capture/stamp.py``) keep the same two files per captured database
(paths in :mod:`streams.runtime.state_files`): the transaction markers, so that a restart inside a
transaction still knows its API, and the progress that ``status``, the sync barrier and the metrics
read. This is the one implementation of both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.capture.envelope import EnvelopeError
from streams.core.model import ChangeEvent
from streams.runtime.jsonfile import read_json, write_json
from streams.runtime.settings import Settings
from streams.runtime.state_files import markers_path, progress_path

log = logging.getLogger("platsync.capture")
COUNTERS = ("events_produced", "echoes_dropped", "probes")


class Stamping(Protocol):
    """What a converter of Debezium records offers for its saved state."""

    events: int
    probes: int

    def markers_state(self) -> dict[str, Any]: ...

    def restore_markers(self, markers: dict[str, Any]) -> None: ...


@dataclass
class CaptureState:
    """Markers and progress of ``side``/``store``, restored at start and saved after each batch."""

    settings: Settings
    side: str
    store: str
    last_lsn: int = 0
    last_commit_ts_ms: int = 0
    #: Counters of earlier runs of the capture (this run's are the stamper's own).
    earlier: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    saved_markers: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def restore(cls, settings: Settings, side: str, store: str, stamper: Stamping) -> CaptureState:
        """Give ``stamper`` the markers saved by an earlier run and read the saved progress.

        A damaged markers file must not stop the capture: it is ignored with a warning (at worst a
        transaction in progress at the last stop is stamped from its rows again).
        """
        try:
            stamper.restore_markers(read_json(markers_path(settings, side, store)).get("markers") or {})
        except (EnvelopeError, AttributeError) as exc:
            log.warning("%s.%s: ignoring the saved markers (%s)", side, store, type(exc).__name__)
        progress = read_json(progress_path(settings, side, store))
        return cls(settings, side, store, int(progress.get("last_lsn", 0)), int(progress.get("last_commit_ts_ms", 0)),
                   {k: int(progress.get(k, 0)) for k in COUNTERS}, stamper.markers_state())

    def save(self, stamper: Stamping, produced: Sequence[ChangeEvent], echoes_dropped: int) -> None:
        """After a batch reached the broker: the markers (when they changed) and the progress.

        Positions count what reached Kafka only: dropped echoes and markers never reach a worker, so
        counting them would show a lag that can never close. ``echoes_dropped`` is this run's count.
        """
        markers = stamper.markers_state()
        if markers != self.saved_markers:
            write_json(markers_path(self.settings, self.side, self.store), {"markers": markers}, compact=True)
            self.saved_markers = markers
        for event in produced:
            self.last_lsn = max(self.last_lsn, event.lsn)
            self.last_commit_ts_ms = max(self.last_commit_ts_ms, event.commit_ts_ms)
        this_run = {"events_produced": stamper.events, "echoes_dropped": echoes_dropped, "probes": stamper.probes}
        write_json(progress_path(self.settings, self.side, self.store), {
            "side": self.side, "store": self.store, "last_lsn": self.last_lsn,
            "last_commit_ts_ms": self.last_commit_ts_ms,
            **{k: self.earlier[k] + this_run[k] for k in COUNTERS},
            "updated_ts_ms": time.time_ns() // 1_000_000}, compact=True)  # after every batch
