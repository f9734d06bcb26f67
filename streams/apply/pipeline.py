"""Apply one batch while the agent collects the next, acknowledging each batch only once applied.

Without this, a worker did one thing at a time: collect a batch of events (Faust's per-event
work, under the GIL), then apply it (mostly waiting for PostgreSQL), then collect the next; the
benchmark showed the worker applying at half the rate the capture produced while neither it nor
the machine was busy. Here batches are applied on one thread, in order, up to ``depth`` at a
time, and each batch's events are acknowledged after, and in the order, its apply returned, so
Faust still commits an offset only when everything before it is in the target stores
(at-least-once). After a failed batch nothing more is acknowledged: the failure is raised to
the agent at its next batch (or by :meth:`ApplyPipeline.drain`), and the unacknowledged
batches are delivered again after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

R = TypeVar("R")
M = TypeVar("M")


class ApplyPipeline(Generic[M, R]):
    """Runs ``apply`` on one thread, in submission order, with at most ``depth`` batches in flight."""

    def __init__(self, apply: Callable[[Sequence[M]], R], on_applied: Callable[[R], None], depth: int = 2,
                 name: str = "apply") -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._apply = apply
        self._on_applied = on_applied
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._slots = asyncio.Semaphore(depth)
        self._settled: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None

    async def submit(self, batch: Sequence[M], ack: Callable[[], Awaitable[None]]) -> None:
        """Queue ``batch``; ``ack`` runs once it is applied. Waits while ``depth`` batches are in flight."""
        self.raise_failure()
        await self._slots.acquire()
        self.raise_failure()
        loop = asyncio.get_running_loop()
        applied = loop.run_in_executor(self._executor, self._apply, batch)
        previous = self._settled
        self._settled = loop.create_task(self._settle(applied, previous, ack))

    async def _settle(self, applied: asyncio.Future[R], previous: asyncio.Future[None] | None,
                      ack: Callable[[], Awaitable[None]]) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)  # acknowledge strictly in submission order
            result = await applied
            if self.failure is None:
                await ack()
                self._on_applied(result)
        except BaseException as exc:  # noqa: BLE001 - kept and raised to the agent
            if self.failure is None:
                self.failure = exc
        finally:
            self._slots.release()

    def raise_failure(self) -> None:
        """Raise the first failure of an earlier batch, if any."""
        if self.failure is not None:
            raise self.failure

    async def drain(self) -> None:
        """Wait until every submitted batch is applied and acknowledged; raise a failure if any."""
        if self._settled is not None:
            await asyncio.shield(self._settled)
        self.raise_failure()

    def close(self) -> None:
        """Stop the apply thread after the batch it is applying (if any)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
