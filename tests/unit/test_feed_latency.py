"""A lone feed message is applied at once, and the notifier passes as soon as the subscriber recorded
notifications (streams/apply/feed_loop.py ``poll_batch``, streams/apply/notifier.py ``Notifier.wake``)."""

from __future__ import annotations

import threading
import time
from typing import Any

from streams.apply.feed_loop import poll_batch
from streams.apply.notifier import Notifier, NotifierCounts


class FakeConsumer:
    """``poll`` waits for its timeout when empty; ``consume`` returns what is queued, up to ``n``."""

    def __init__(self, queued: list[str]) -> None:
        self.queued, self.calls = list(queued), []

    def poll(self, timeout: float) -> Any:
        self.calls.append(("poll", timeout))
        return self.queued.pop(0) if self.queued else None

    def consume(self, n: int, timeout: float) -> list[Any]:
        self.calls.append(("consume", n, timeout))
        taken, self.queued = self.queued[:n], self.queued[n:]
        return taken


def test_a_lone_message_is_returned_without_waiting_for_a_full_batch() -> None:
    consumer = FakeConsumer(["m1"])
    assert poll_batch(consumer, 0.5, batch=500) == ["m1"]  # type: ignore[arg-type]
    assert consumer.calls == [("poll", 0.5), ("consume", 499, 0.005)]


def test_what_already_arrived_is_taken_in_one_batch_and_nothing_when_idle() -> None:
    consumer = FakeConsumer([f"m{i}" for i in range(10)])
    assert poll_batch(consumer, 1.0, batch=4) == ["m0", "m1", "m2", "m3"]  # type: ignore[arg-type]
    assert poll_batch(FakeConsumer([]), 1.0) == []  # type: ignore[arg-type]


class CountingNotifier(Notifier):
    def __init__(self) -> None:  # no store, no producer: only the pass loop is under test
        super().__init__("hosp-b", None, None, "t")  # type: ignore[arg-type]
        self.passes = 0

    def run_once(self) -> NotifierCounts:
        self.passes += 1
        return NotifierCounts()


def wait_until(check: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_the_notifier_passes_when_woken_and_stops_when_woken_after_stop() -> None:
    notifier, stop = CountingNotifier(), threading.Event()
    thread = threading.Thread(target=notifier.run, args=(stop,), kwargs={"every_s": 60.0}, daemon=True)
    thread.start()
    notifier.wake()
    assert wait_until(lambda: notifier.passes == 1), "a woken notifier passes at once, not after every_s"
    stop.set()
    notifier.wake()
    thread.join(5)
    assert not thread.is_alive() and notifier.passes == 1
