"""What the apply agent reports per batch (pure data): positions per source store and counts per target.

Kept in the core so that the metrics (runtime layer) can read a report without importing the agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StoreProgress:
    """Progress of one source store within one batch (counts are increments)."""

    last_lsn: int = 0
    last_commit_ts_ms: int = 0
    last_probe_id: str | None = None
    events_seen: int = 0
    writes_applied: int = 0
    dead_letters: int = 0


@dataclass
class TargetCounts:
    """What one target store's sink did with one batch."""

    applied: int = 0
    stale: int = 0
    conflicts: int = 0
    rejected: int = 0


@dataclass
class BatchReport:
    """What one batch did, for logs, metrics (streams/runtime/metrics.py) and tests."""

    events: int = 0
    writes: int = 0
    applied: int = 0
    stale: int = 0
    skipped: int = 0
    dead_letters: int = 0
    progress: dict[str, StoreProgress] = field(default_factory=dict)
    targets: dict[str, TargetCounts] = field(default_factory=dict)  # per target store
    dead_letter_kinds: dict[str, int] = field(default_factory=dict)  # error kind -> count
