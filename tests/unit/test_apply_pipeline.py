"""ApplyPipeline: batches applied in order on one thread, each acknowledged only after its apply."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from streams.apply.pipeline import ApplyPipeline


def test_batches_are_applied_and_acknowledged_in_order_after_their_apply() -> None:
    log: list[str] = []
    threads: set[str] = set()

    def apply(batch: list[int]) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(0.02 * (3 - batch[0] % 3))  # later batches are quicker: order must still hold
        log.append(f"applied {batch[0]}")
        return batch[0]

    async def run() -> None:
        pipeline: ApplyPipeline[int, int] = ApplyPipeline(apply, lambda r: log.append(f"reported {r}"), depth=2)
        for n in range(6):
            async def ack(n: int = n) -> None:
                assert f"applied {n}" in log, f"batch {n} acknowledged before it was applied"
                log.append(f"acked {n}")
            await pipeline.submit([n], ack)
        await pipeline.drain()
        pipeline.close()

    asyncio.run(run())
    assert [e for e in log if e.startswith("applied")] == [f"applied {n}" for n in range(6)]
    assert [e for e in log if e.startswith("acked")] == [f"acked {n}" for n in range(6)]
    assert [e for e in log if e.startswith("reported")] == [f"reported {n}" for n in range(6)]
    assert len(threads) == 1


def test_no_more_than_depth_batches_in_flight() -> None:
    running = {"now": 0, "max": 0}
    lock = threading.Lock()
    release = threading.Event()

    def apply(batch: list[int]) -> int:
        with lock:
            running["now"] += 1
        release.wait(1)
        with lock:
            running["now"] -= 1
        return 0

    async def run() -> int:
        pipeline: ApplyPipeline[int, int] = ApplyPipeline(apply, lambda r: None, depth=2)
        submitted = 0

        async def ack() -> None:
            return None

        for n in range(2):
            await pipeline.submit([n], ack)
            submitted += 1
        third = asyncio.ensure_future(pipeline.submit([2], ack))
        await asyncio.sleep(0.1)
        blocked = not third.done()  # two batches in flight: the third waits for a slot
        release.set()
        await third
        await pipeline.drain()
        pipeline.close()
        return int(blocked)

    assert asyncio.run(run()) == 1


def test_after_a_failed_batch_nothing_more_is_acknowledged_and_the_failure_surfaces() -> None:
    acked: list[int] = []

    def apply(batch: list[int]) -> int:
        if batch[0] == 1:
            raise RuntimeError("sink bug")
        return batch[0]

    async def run() -> None:
        pipeline: ApplyPipeline[int, int] = ApplyPipeline(apply, lambda r: None, depth=3)
        for n in range(3):
            async def ack(n: int = n) -> None:
                acked.append(n)
            await pipeline.submit([n], ack)
        with pytest.raises(RuntimeError, match="sink bug"):
            await pipeline.drain()
        with pytest.raises(RuntimeError, match="sink bug"):
            await pipeline.submit([3], ack)
        pipeline.close()

    asyncio.run(run())
    assert acked == [0]
