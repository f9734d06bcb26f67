"""The one retry policy (streams/runtime/retry.py): back-off, stop, deadline, reports."""

from __future__ import annotations

import threading

import pytest

from streams.core.errors import RetryableError
from streams.runtime.retry import Backoff, RetryStopped, retry


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(times: int, error: BaseException) -> tuple[list[int], object]:
    calls: list[int] = []

    def action() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "done"

    return calls, action


def test_delays_double_from_the_initial_value_up_to_the_cap_and_reports_are_made() -> None:
    t = FakeTime()
    calls, action = failing(6, RetryableError("store down"))
    failures: list[tuple[str, int, float]] = []
    succeeded: list[int] = []
    result = retry(action, "store", backoff=Backoff(0.5, 3.0), clock=t.clock, sleep=t.sleep,
                   on_failure=lambda exc, n, d: failures.append((str(exc), n, d)), on_success=succeeded.append)
    assert result == "done" and len(calls) == 7
    assert t.slept == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert [n for _, n, _ in failures] == [1, 2, 3, 4, 5, 6] and failures[0][0] == "store down"
    assert succeeded == [6]


def test_errors_outside_retry_on_propagate_at_once() -> None:
    t = FakeTime()
    calls, action = failing(1, ValueError("a bug, not an outage"))
    with pytest.raises(ValueError):
        retry(action, "store", clock=t.clock, sleep=t.sleep)
    assert len(calls) == 1 and t.slept == []


def test_a_deadline_gives_up_with_the_last_error() -> None:
    t = FakeTime()
    calls, action = failing(100, RetryableError("registry down"))
    with pytest.raises(RetryableError, match="registry down"):
        retry(action, "registry", backoff=Backoff(0.25, 2.0), deadline_s=5.0, clock=t.clock, sleep=t.sleep)
    assert sum(t.slept) <= 5.0
    assert t.slept == [0.25, 0.5, 1.0, 2.0]  # the next 2 s wait would pass the deadline


def test_a_stop_event_ends_the_wait_at_once() -> None:
    stop = threading.Event()
    attempts: list[int] = []

    def action() -> None:
        attempts.append(1)
        stop.set()  # e.g. SIGTERM arrives while the broker is away
        raise RetryableError("broker down")

    with pytest.raises(RetryStopped, match="broker: stopped while retrying"):
        retry(action, "broker", backoff=Backoff(60.0, 60.0), stop=stop)  # would wait a minute otherwise
    assert len(attempts) == 1


def test_retry_stopped_is_itself_retryable_and_nothing_was_acknowledged() -> None:
    assert issubclass(RetryStopped, RetryableError)


def test_an_attempt_limit_gives_up_with_the_last_error_after_the_quoted_waits() -> None:
    t = FakeTime()
    calls, action = failing(100, RetryableError("keycloak 503"))
    backoff = Backoff(0.2, 1.2, factor=3.0)
    with pytest.raises(RetryableError, match="keycloak 503"):
        retry(action, "keycloak", backoff=backoff, max_attempts=4, clock=t.clock, sleep=t.sleep)
    assert len(calls) == 4
    assert t.slept == pytest.approx([0.2, 0.6, 1.2]) == backoff.waits(4)


def test_retry_if_refuses_to_repeat_a_particular_error() -> None:
    t = FakeTime()

    class MaybeApplied(RetryableError):
        maybe_applied = True

    calls, action = failing(5, MaybeApplied("no answer after the request was sent"))
    with pytest.raises(MaybeApplied):
        retry(action, "create", retry_if=lambda exc: not getattr(exc, "maybe_applied", False),
              clock=t.clock, sleep=t.sleep)
    assert len(calls) == 1 and t.slept == []
