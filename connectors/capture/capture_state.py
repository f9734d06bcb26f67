"""The saved state of one captured database: transaction markers and progress (both capture paths).

The embedded capture (``connectors/capture/runner.py``) and the stamper of raw Debezium topics on
Kafka Connect (``connectors/capture/stamp.py``) keep the same two files per captured database
(paths in :mod:`streams.runtime.state_files`): the transaction markers, so that a restart inside a
transaction still knows its API, and the progress that ``status``, the sync barrier and the metrics
read. This is the one implementation of both.

The markers file is a journal of JSON lines, each ``{"markers": {...}}``: a whole snapshot, then the
markers added by each later batch. Rewriting all (up to 256) markers after every batch was 44% of
the capture's Python time in steady traffic (py-spy, issue 19); appending a batch's few costs a
fraction. The journal is compacted into one snapshot line every :data:`JOURNAL_DELTAS` appends. A
file of the former format (one snapshot line) reads the same. A torn last line (the process died in
the middle of an append) is ignored: that batch was not acknowledged to Debezium yet, so it is
captured again and its markers seen again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from connectors.capture.envelope import EnvelopeError
from streams.core.model import ChangeEvent
from streams.runtime.jsonfile import append_json, read_json, write_json
from streams.runtime.settings import Settings
from streams.runtime.state_files import markers_path, progress_path

log = logging.getLogger("platsync.capture")
COUNTERS = ("events_produced", "echoes_dropped", "probes")
#: Appended batches after which the markers journal is rewritten as one snapshot.
JOURNAL_DELTAS = 128


class Stamping(Protocol):
    """What a converter of Debezium records offers for its saved state."""

    events: int
    probes: int
    #: Changes whenever :meth:`markers_state` does.
    markers_version: int

    def markers_state(self) -> dict[str, Any]: ...

    def markers_since(self, version: int) -> dict[str, Any] | None:
        """What :meth:`markers_state` gained since ``markers_version`` was ``version`` (entries to add
        to it), or None when only a whole snapshot will do."""

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
    #: The stamper's ``markers_version`` when its markers were last saved (-1: not since the start).
    saved_version: int = -1
    #: Batches appended to the markers journal since its last snapshot.
    journal_deltas: int = 0

    def __post_init__(self) -> None:
        # Built once: pathlib's joins were a visible part of a steady batch's cost.
        self.markers_file = markers_path(self.settings, self.side, self.store)
        self.progress_file = progress_path(self.settings, self.side, self.store)

    @classmethod
    def restore(cls, settings: Settings, side: str, store: str, stamper: Stamping) -> CaptureState:
        """Give ``stamper`` the markers saved by an earlier run and read the saved progress.

        A damaged markers file must not stop the capture: it is ignored with a warning (at worst a
        transaction in progress at the last stop is stamped from its rows again).
        """
        try:
            stamper.restore_markers(read_markers(markers_path(settings, side, store), f"{side}.{store}"))
        except (EnvelopeError, AttributeError) as exc:
            log.warning("%s.%s: ignoring the saved markers (%s)", side, store, type(exc).__name__)
        progress = read_json(progress_path(settings, side, store))
        return cls(settings, side, store, int(progress.get("last_lsn", 0)), int(progress.get("last_commit_ts_ms", 0)),
                   {k: int(progress.get(k, 0)) for k in COUNTERS})

    def save(self, stamper: Stamping, produced: Sequence[ChangeEvent], echoes_dropped: int) -> None:
        """After a batch reached the broker: the markers (when they changed) and the progress.

        Positions count what reached Kafka only: dropped echoes and markers never reach a worker, so
        counting them would show a lag that can never close. ``echoes_dropped`` is this run's count.
        """
        self._save_markers(stamper)
        for event in produced:
            self.last_lsn = max(self.last_lsn, event.lsn)
            self.last_commit_ts_ms = max(self.last_commit_ts_ms, event.commit_ts_ms)
        this_run = {"events_produced": stamper.events, "echoes_dropped": echoes_dropped, "probes": stamper.probes}
        write_json(self.progress_file, {
            "side": self.side, "store": self.store, "last_lsn": self.last_lsn,
            "last_commit_ts_ms": self.last_commit_ts_ms,
            **{k: self.earlier[k] + this_run[k] for k in COUNTERS},
            "updated_ts_ms": time.time_ns() // 1_000_000}, compact=True)  # after every batch

    def _save_markers(self, stamper: Stamping) -> None:
        """Append the markers added since the last save, or write a whole snapshot (see the module docstring)."""
        version = stamper.markers_version
        if version == self.saved_version:
            return
        added = stamper.markers_since(self.saved_version) if self.saved_version >= 0 else None
        if added is not None and self.journal_deltas < JOURNAL_DELTAS:
            append_json(self.markers_file, {"markers": added})  # a snapshot was written first: the file exists
            self.journal_deltas += 1
        else:
            write_json(self.markers_file, {"markers": stamper.markers_state()}, compact=True)
            self.journal_deltas = 0
        self.saved_version = version


def read_markers(path: Path, name: str) -> dict[str, Any]:
    """The markers saved in ``path`` (a snapshot line, then added markers per line), merged in order:
    an entry read again moves to the end, as in the stamper. ``{}`` if the file is absent; a line that
    is not a JSON object with a ``markers`` object is skipped with a warning naming ``name``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    merged: dict[str, Any] = {}
    for number, entry in enumerate(_journal_entries(text), 1):
        markers = entry.get("markers") if isinstance(entry, dict) else None
        if not isinstance(markers, dict):
            log.warning("%s: skipping line %d of %s (not a markers entry; a torn last line is expected after "
                        "a crash)", name, number, path)
            continue
        for key, value in markers.items():
            merged.pop(key, None)
            merged[key] = value
    return merged


def _journal_entries(text: str) -> list[Any]:
    """The JSON value of each line (None where a line does not parse); the whole text as one entry when
    it parses as a whole (an indented snapshot of an earlier version)."""
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    entries: list[Any] = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line) if line.strip() else {"markers": {}})
        except ValueError:
            entries.append(None)
    return entries
