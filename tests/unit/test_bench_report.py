"""The benchmark's pure parts: percentiles, targets, the table, process trees and memory sampling."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.memory import MemorySampler, _children_map, process_tree
from bench.runner import TARGETS, render_table, target_status
from bench.timing import percentile


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # order does not matter
    with pytest.raises(ValueError):
        percentile([], 50)


def test_targets_are_met_or_missed_by_direction() -> None:
    status = target_status({"bulk_rows_per_s": 5_000, "steady_p99_ms": 301, "catchup_s": 29.9})
    assert status["bulk_rows_per_s"]["met"] is True
    assert status["steady_p99_ms"]["met"] is False
    assert status["catchup_s"]["met"] is True
    assert status["peak_rss_mb"] == {"target": "<= 2500", "value": None, "met": False}  # not measured: missed
    assert set(status) == set(TARGETS)


def test_table_shows_figures_and_failed_checks() -> None:
    figures = {"bulk_rows_per_s": 1234.5, "ratio_vs_native": 0.02, "peak_rss_mb": 100.0}
    report = {"figures": figures, "targets": target_status(figures),
              "checks": [{"name": "a", "ok": True, "detail": ""}, {"name": "b", "ok": False, "detail": "2 of 3"}]}
    table = render_table(report)
    assert "1,234.5" in table and "MISSED" in table and "0.020" in table
    assert "1 of 2 checks passed" in table and "FAILED b: 2 of 3" in table


def test_process_tree_and_memory_of_a_real_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(30)"])
    try:
        import time

        time.sleep(1.0)
        assert child.pid in process_tree(os.getpid(), _children_map())
        sampler = MemorySampler(lambda: {"child": child.pid, "gone": None}, interval_s=0.05)
        with sampler:
            time.sleep(0.2)
        assert sampler.report.samples >= 3
        assert sampler.report.peak_mb["child"] >= 64  # the 64 MiB it touched
        assert "gone" not in sampler.report.peak_mb
        assert sampler.report.total_mb == pytest.approx(sampler.report.peak_mb["child"], abs=0.1)
    finally:
        child.kill()
        child.wait()
