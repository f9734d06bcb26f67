"""The benchmark's pure parts: percentiles, targets, the table, process trees and memory sampling."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cpu import CpuMeter
from bench.memory import MemorySampler, _children_map, process_tree
from bench.runner import FULL, QUICK, SMOKE, TABLE_KEYS, TARGETS, render_table, sized_targets, target_status
from bench.timing import percentile


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # order does not matter
    with pytest.raises(ValueError):
        percentile([], 50)


def test_targets_are_met_or_missed_by_direction() -> None:
    status = target_status({"bulk_rows_per_s": 10_000, "steady_p99_ms": 151, "catchup_s": 11.9,
                            "bulk_cpu_us_per_row": 200.1, "ratio_vs_native": 0.14})
    assert status["bulk_rows_per_s"]["met"] is True
    assert status["steady_p99_ms"]["met"] is False
    assert status["catchup_s"]["met"] is True
    assert status["bulk_cpu_us_per_row"]["met"] is False and status["ratio_vs_native"]["met"] is True
    assert status["peak_rss_mb"] == {"target": "<= 2000", "value": None, "met": False}  # not measured: missed
    assert set(status) == set(TARGETS)


def test_each_size_has_its_own_catch_up_target() -> None:
    assert sized_targets(FULL)["catchup_s"] == ("<=", 12) and sized_targets(QUICK)["catchup_s"] == ("<=", 3)
    assert not target_status({"catchup_s": 3.5}, sized_targets(QUICK))["catchup_s"]["met"]
    assert target_status({"catchup_s": 3.5}, sized_targets(FULL))["catchup_s"]["met"]
    assert "catchup_s" not in sized_targets(SMOKE)  # its figures mean nothing
    assert {k: v for k, v in sized_targets(QUICK).items() if k != "catchup_s"} == \
        {k: v for k, v in TARGETS.items() if k != "catchup_s"}


def test_table_shows_figures_and_failed_checks() -> None:
    figures = {"bulk_rows_per_s": 1234.5, "ratio_vs_native": 0.02, "peak_rss_mb": 100.0}
    report = {"figures": figures, "targets": target_status(figures),
              "checks": [{"name": "a", "ok": True, "detail": ""}, {"name": "b", "ok": False, "detail": "2 of 3"}]}
    table = render_table(report)
    assert "1,234.5" in table and "MISSED" in table and "0.020" in table
    assert "1 of 2 checks passed" in table and "FAILED b: 2 of 3" in table


def test_the_master_figures_have_targets_and_rows_in_the_table() -> None:
    assert {"master_import_s", "master_delta_sync_s", "master_noop_events", "master_topic_bytes_per_row"} \
        <= set(TABLE_KEYS)
    figures = {"master_import_s": 12.34, "master_delta_sync_s": 5.01, "master_noop_events": 0,
               "master_topic_bytes_per_row": 1234.5}
    status = target_status(figures)
    assert status["master_import_s"]["met"] and not status["master_delta_sync_s"]["met"]
    assert status["master_noop_events"] == {"target": "<= 0", "value": 0, "met": True}
    assert not target_status({"master_noop_events": 1})["master_noop_events"]["met"]
    lines = {line.split()[0]: line for line in render_table({"figures": figures, "targets": status, "checks": []})
             .splitlines() if line.startswith("master_")}
    assert lines["master_import_s"].split()[1:] == ["12.3", "<=", "20", "met"]
    assert lines["master_delta_sync_s"].split()[1:] == ["5.0", "<=", "5", "MISSED"]
    assert lines["master_noop_events"].split()[1:] == ["0", "<=", "0", "met"]  # a count: no decimals
    assert lines["master_topic_bytes_per_row"].split()[1:] == ["1,234.5"]
    assert len({line.index(" <=") for line in lines.values() if " <=" in line}) == 1  # the columns line up


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


def test_cpu_meter_counts_a_component_and_its_exited_children() -> None:
    # The child burns ~0.4 s itself, then starts a grandchild that burns ~0.4 s and exits (its
    # time moves into the child's reaped-children counters), then idles.
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    script = (burn + "import subprocess, sys\n"
              f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
              "print('done', flush=True)\ntime.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        meter = CpuMeter(lambda: {"child": child.pid, "gone": None})
        meter.start()
        assert child.stdout is not None and child.stdout.readline().strip() == "done"
        used = meter.stop()
        assert 0.7 <= used["child"] <= 5.0
        assert "gone" not in used
        assert used["total"] == pytest.approx(used["child"])
        idle = CpuMeter(lambda: {"child": child.pid})
        idle.start()
        assert idle.stop()["child"] < 0.2  # sleeping costs nothing
    finally:
        child.kill()
        child.wait()


def test_gc_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    code = ("import gc, sys\nfrom streams.runtime.gc_tuning import YOUNG_THRESHOLD, tune_for_throughput\n"
            "tune_for_throughput()\n"
            "print(gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_freeze_count() > 1000,"
            " sys.getswitchinterval() < 0.005)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr
