"""A link cut is logged once, then summarised (streams/runtime/log_repeats.py; issue 13)."""

from __future__ import annotations

import io
import logging

from streams.runtime.log_repeats import OutageLog, RepeatSummaryFilter
from streams.runtime.logs import configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records(logger_name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(logger_name, level, __file__, 1, msg, args, None)


def test_the_first_error_of_a_kind_passes_repeats_are_counted_into_one_summary_per_interval() -> None:
    clock = Clock()
    f = RepeatSummaryFilter(("aiokafka",), summary_every_s=60, clock=clock)
    first = records("aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 111, "closed")
    assert f.filter(first)
    assert "Unable connect to node with id 111: closed" in first.getMessage()
    assert "summarised every 60 s" in first.getMessage()
    passed = 0
    for _ in range(240):  # four a second for a minute, other node ids included: one kind
        clock.now += 0.25
        if f.filter(records("aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 112, "closed")):
            passed += 1
    assert passed == 1
    clock.now += 1
    held = records("aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 111, "closed")
    assert not f.filter(held)  # within the minute after the summary


def test_the_summary_counts_what_was_held_back() -> None:
    clock = Clock()
    f = RepeatSummaryFilter(("aiokafka",), summary_every_s=60, clock=clock)
    assert f.filter(records("aiokafka.consumer.fetcher", logging.ERROR, "Failed fetch messages from %s", 1))
    for _ in range(10):
        clock.now += 1
        assert not f.filter(records("aiokafka.consumer.fetcher", logging.ERROR, "Failed fetch messages from %s", 1))
    clock.now += 55
    summary = records("aiokafka.consumer.fetcher", logging.ERROR, "Failed fetch messages from %s", 1)
    assert f.filter(summary)
    assert "[10 more like this in the last 65 s, first 65 s ago]" in summary.getMessage()


def test_other_loggers_levels_and_kinds_are_untouched() -> None:
    clock = Clock()
    f = RepeatSummaryFilter(("aiokafka",), summary_every_s=60, clock=clock)
    for _ in range(5):
        assert f.filter(records("platsync.worker", logging.ERROR, "same"))
        assert f.filter(records("aiokafka", logging.INFO, "same"))  # below the level: not summarised
        assert f.filter(records("aiokafkaesque", logging.ERROR, "same"))  # not a child of 'aiokafka'
    assert f.filter(records("aiokafka", logging.ERROR, "kind one"))
    assert f.filter(records("aiokafka", logging.ERROR, "kind two"))
    assert not f.filter(records("aiokafka", logging.ERROR, "kind one"))


def test_every_process_log_summarises_aiokafka_repeats() -> None:
    out = io.StringIO()
    handler = configure_logging("worker-test", stream=out, repeat_summary_s=60)
    try:
        for _ in range(50):
            logging.getLogger("aiokafka").error("Unable to update metadata from [%s]", 111)
        lines = [line for line in out.getvalue().splitlines() if "Unable to update metadata" in line]
        assert len(lines) == 1, lines
    finally:
        logging.getLogger().removeHandler(handler)


def test_an_outage_is_logged_at_its_start_once_a_minute_and_at_its_end(caplog) -> None:  # noqa: ANN001
    clock = Clock()
    outage = OutageLog(logging.getLogger("platsync.test"), "broker 127.0.0.1:1", 60, clock)
    caplog.set_level(logging.INFO, "platsync.test")
    for _ in range(150):  # one attempt a second for 150 s
        outage.failed("connection refused", 1.0)
        clock.now += 1
    assert outage.ongoing and outage.attempts == 150
    outage.recovered()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages
    assert messages[0].startswith("broker 127.0.0.1:1 unreachable, retrying") and "connection refused" in messages[0]
    assert messages[1].startswith("broker 127.0.0.1:1 still unreachable after 60 s (61 attempts)")
    assert messages[2].startswith("broker 127.0.0.1:1 still unreachable after 120 s (121 attempts)")
    assert messages[3] == "broker 127.0.0.1:1 reachable again after 150 s (150 failed attempts)"
    assert not outage.ongoing
    outage.recovered()  # nothing ongoing: nothing more to say
    assert len(caplog.records) == 4
