"""The one sink contract: ``setup`` once, ``apply_batch`` (durable when it returns), ``close``.

Every sink apply is idempotent and version-guarded: applying the same batch twice, or an
older version after a newer one, leaves the store unchanged. Writes the store refuses for
a reason tied to the data (constraint, bad value) come back as :class:`RejectedWrite` so the
route can dead-letter them and continue; an unreachable store raises
:class:`StoreUnavailableError` so the route retries the whole batch later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streams.core.errors import RetryableError
from streams.core.model import Write


class StoreUnavailableError(RetryableError, RuntimeError):
    """The target store cannot be reached right now; the batch must be retried."""


@dataclass(frozen=True)
class RejectedWrite:
    """A write the store refused, with the reason and a hint for the operator."""

    write: Write
    error: str
    hint: str


@dataclass
class SinkResult:
    """What one ``apply_batch`` did."""

    applied: int = 0  # writes that changed the store
    stale: int = 0  # writes skipped by the version guard (already applied, or older)
    rejected: list[RejectedWrite] = field(default_factory=list)
    conflicts: int = 0  # concurrent edits detected and recorded (docs/conflicts.md)


class Sink(Protocol):
    """A target store on one side."""

    side: str
    store: str

    def setup(self) -> None:
        """Connect and verify the store is usable; raise a clear error if not."""

    def apply_batch(self, writes: Sequence[Write], origin_side: str) -> SinkResult:
        """Apply ``writes`` (all originating on ``origin_side``) durably and idempotently."""

    def close(self) -> None:
        """Release connections."""
