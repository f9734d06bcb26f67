"""The fan-out benchmark's figures, checks and table (bench/fanout_report.py), and its webhook receiver,
without running it."""

from __future__ import annotations

import argparse
import json
import urllib.request
from collections import Counter

import pytest

from bench.fanout_receiver import WebhookReceiver
from bench.fanout_report import (
    SubscriberSeen,
    checks_of,
    cpu_per_document,
    latency_figures,
    memory_by_kind,
    render_fanout_table,
)
from streams.cli.bench import cmd_bench

DOCS = ["r1", "r2"]


def good(node: str) -> SubscriberSeen:
    keys = [f"{node}-k1", f"{node}-k2"]
    return SubscriberSeen(copies=list(DOCS), notifications=list(zip(keys, DOCS, strict=True)),
                          topic=Counter(keys), webhook=Counter(keys))


def failed(checks: list) -> set[str]:
    return {c.name for c in checks if not c.ok}


def test_latencies_are_summarised_by_nearest_rank() -> None:
    figures = latency_figures({"copy": [float(v) for v in range(100, 0, -1)], "webhook": []})
    assert (figures["copy_p50_ms"], figures["copy_p99_ms"], figures["copy_max_ms"]) == (50.0, 99.0, 100.0)
    assert figures["webhook_p50_ms"] is None and figures["webhook_max_ms"] is None
    assert latency_figures({"copy": [7.25]}) == {"copy_p50_ms": 7.2, "copy_p99_ms": 7.2, "copy_max_ms": 7.2}


def test_cpu_is_given_per_document_and_memory_per_kind() -> None:
    assert cpu_per_document({"fanout": 0.5, "total": 2.0}, 100) == {"fanout": 5.0, "total": 20.0}
    assert cpu_per_document({"total": 1.0}, 0) == {}
    peak = {"broker": 100.0, "pg-remote": 200.0, "subscriber-sim-01": 60.0, "pg-sim-01": 40.0,
            "subscriber-sim-02": 80.0, "pg-sim-02": 20.0}
    assert memory_by_kind(peak, ["sim-01", "sim-02"]) == {
        "total": 500.0, "network": 300.0, "per_simulated_subscriber": 100.0, "subscriber_process_mean": 70.0}


def test_a_complete_run_passes_every_check() -> None:
    checks = checks_of(DOCS, {"sim-01": good("sim-01"), "sim-02": good("sim-02")},
                       {"hosp-a": {"copies": 0, "notifications": 0}, "hosp-b": {"copies": 0, "notifications": 0}})
    assert [c.name for c in checks] == ["copies", "notifications", "topic", "webhook", "not subscribed"]
    assert not failed(checks), checks


def test_a_missing_or_extra_copy_fails() -> None:
    short, extra = good("sim-01"), good("sim-02")
    short.copies, extra.copies = ["r1"], [*DOCS, "r9"]
    checks = checks_of(DOCS, {"sim-01": short, "sim-02": extra}, {})
    assert failed(checks) == {"copies"}
    assert "2 subscriber(s) differ" in checks[0].detail


def test_a_document_notified_twice_or_not_at_all_fails() -> None:
    twice, never = good("sim-01"), good("sim-02")
    twice.notifications.append(("sim-01-k3", "r1"))  # a second key for the same change: not exactly once
    twice.topic["sim-01-k3"] += 1
    twice.webhook["sim-01-k3"] += 1
    never.notifications = never.notifications[:1]
    never.topic, never.webhook = Counter(["sim-02-k1"]), Counter(["sim-02-k1"])
    checks = checks_of(DOCS, {"sim-01": twice, "sim-02": never}, {})
    assert failed(checks) == {"notifications"}
    detail = next(c.detail for c in checks if c.name == "notifications")
    assert "1 documents notified twice" in detail and "1 documents without one" in detail


def test_redeliveries_by_key_are_counted_not_failed_but_a_missing_delivery_fails() -> None:
    again = good("sim-01")
    again.topic["sim-01-k1"] += 2
    again.webhook["sim-01-k2"] += 1
    checks = checks_of(DOCS, {"sim-01": again}, {})
    assert not failed(checks)
    assert "2 duplicate" in next(c.detail for c in checks if c.name == "topic")
    assert "1 duplicate" in next(c.detail for c in checks if c.name == "webhook")
    lost = good("sim-01")
    del lost.topic["sim-01-k2"]
    lost.webhook = Counter()
    assert failed(checks_of(DOCS, {"sim-01": lost}, {})) == {"topic", "webhook"}


def test_anything_held_by_a_hospital_that_did_not_subscribe_fails() -> None:
    checks = checks_of(DOCS, {"sim-01": good("sim-01")},
                       {"hosp-a": {"copies": 0, "notifications": 0}, "hosp-b": {"copies": 0, "notifications": 1}})
    assert failed(checks) == {"not subscribed"}
    assert "hosp-b" in checks[-1].detail and "hosp-a" not in checks[-1].detail


def test_the_table_shows_every_latency_memory_and_the_verdict() -> None:
    figures = {**latency_figures({"copy": [10.0, 20.0], "notify_topic": [30.0], "webhook": []}),
               "documents": 2, "subscribers": 10, "cpu_ms_per_document": 12.5, "peak_rss_mb": 900.0}
    report = {"figures": figures, "cpu_ms_per_document_by_process": {"fanout": 3.0, "total": 12.5},
              "memory_mb": {"total": 900.0, "network": 700.0, "per_simulated_subscriber": 20.0,
                            "subscriber_process_mean": 15.0},
              "checks": [{"name": "copies", "ok": False, "detail": "differ"},
                         {"name": "topic", "ok": True, "detail": "fine"}]}
    table = render_fanout_table(report)
    for text in ("copy at the subscriber", "notification on its topic", "webhook acknowledged", "fanout",
                 "900 MB in all", "FAILED copies: differ", "ok     topic: fine", "1 of 2 checks passed"):
        assert text in table, text
    webhook_row = next(line for line in table.splitlines() if line.startswith("webhook acknowledged"))
    assert webhook_row.split()[-3:] == ["-", "-", "-"]


def post(url: str, key: str, node: str) -> None:
    body = json.dumps({"node": node, "idempotency_key": key}).encode()
    request = urllib.request.Request(url, data=body, headers={"Idempotency-Key": key}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 204


def test_the_webhook_receiver_counts_per_hospital_and_key() -> None:
    with WebhookReceiver() as hook:
        for key, node in (("k1", "sim-01"), ("k2", "sim-01"), ("k2", "sim-01"), ("k3", "sim-02")):
            post(hook.url, key, node)
        assert hook.received("sim-01") == Counter({"k1": 1, "k2": 2})
        assert hook.received("sim-02") == Counter({"k3": 1})
        assert hook.received("sim-03") == Counter()


@pytest.mark.parametrize(("options", "error"), [
    ({"documents": 5}, "--documents applies to --topology and --fanout only"),
    ({"subscribers": 3}, "--subscribers applies to --fanout only"),
    ({"fanout": True, "topology": "x.toml"}, "--fanout runs its own network"),
])
def test_fan_out_options_are_checked(options: dict, error: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(**{"documents": None, "topology": None, "quick": False, "json": None,
                                 "work_dir": None, "keep": False, "fanout": False, "subscribers": None, **options})
    assert cmd_bench(args) == 2
    assert error in capsys.readouterr().err
