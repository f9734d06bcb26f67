"""Smoke test of ``platsync bench --smoke``: it completes on a fresh stack and its correctness checks pass.

The figures themselves are machine-dependent and never asserted here (issue #5): only that the
benchmark ran every scenario, measured something for every key, verified what it measured, and
left nothing behind. ``--smoke`` runs the scenarios and checks of ``--quick`` at the smallest sizes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import SMOKE

pytestmark = pytest.mark.e2e

KEYS = ("bulk_rows_per_s", "native_rows_per_s", "ratio_vs_native", "bulk_cpu_us_per_row", "steady_p50_ms",
        "steady_p99_ms", "catchup_s", "peak_rss_mb", "master_import_s", "master_delta_sync_s",
        "master_topic_bytes_per_row")


def test_bench_smoke_completes_and_verifies_what_it_measured(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "streams.cli.main", "bench", "--smoke", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["smoke"] is True and report["sizes"]["bulk_documents"] == SMOKE.bulk_documents
    for key in KEYS:
        assert isinstance(report[key], int | float) and report[key] > 0, (key, report[key])
    # Both rates are rounded to 0.1 row/s in the report, the ratio to 6 decimals.
    assert report["ratio_vs_native"] == pytest.approx(report["bulk_rows_per_s"] / report["native_rows_per_s"],
                                                      rel=1e-3, abs=2e-6)
    assert report["figures"]["bulk_rows"] == 2 * SMOKE.bulk_documents  # a META row and a signed record per document
    assert report["bulk_cpu_us_per_row"] == pytest.approx(
        1e6 * report["cpu_s_by_process"]["bulk"]["total"] / report["figures"]["bulk_rows"], abs=0.1)
    assert "catchup_s" not in report["targets"]  # smoke sizes have no catch-up target
    assert report["figures"]["catchup_changes"] == SMOKE.catchup_changes
    assert report["figures"]["steady_calls"] == SMOKE.steady_rate_per_s * SMOKE.steady_duration_s
    assert report["steady_p50_ms"] <= report["steady_p99_ms"]
    # The MHLW master (issue 16; 100,000 rows in quick and full runs): an unchanged re-import makes no change event.
    assert report["sizes"]["master_rows"] == report["figures"]["master_rows"] == SMOKE.master_rows
    assert report["master_noop_events"] == 0 and report["targets"]["master_noop_events"]["met"] is True
    assert report["fhir_validate_extract_ms"] > 0  # the FHIR documents' cost (docs/fhir.md)
    # The idle stack's CPU (issue 19): measured per process, and their total as a share of one core.
    idle = report["cpu_s_by_process"]["idle"]
    assert idle["total"] > 0 and {"capture-local", "worker-local_to_remote", "mode-local"} <= set(idle)
    assert report["idle_cpu_pct_of_core"] == pytest.approx(100 * idle["total"] / report["sizes"]["idle_s"], abs=0.1)
    assert 0 < report["figures"]["master_delta_target_rows"] <= report["figures"]["master_delta_changed_rows"]
    assert report["figures"]["master_topic_events"] == report["figures"]["master_delta_target_rows"]
    assert "master" in report["cpu_s_by_process"]
    names = [c["name"] for c in report["checks"]]
    assert len(names) >= 15 and all(c["ok"] for c in report["checks"]), report["checks"]
    assert any("native" in n for n in names) and any("catch-up" in n for n in names)
    assert sum(n.startswith("master:") for n in names) >= 5
    assert set(report["peak_rss_mb_by_process"]) >= {"pg-local", "pg-remote", "broker", "capture-local",
                                                     "worker-local_to_remote"}
    for name in ("figure", "bulk_rows_per_s", "master_import_s", "correctness:"):
        assert name in proc.stdout
    assert not list(tmp_path.glob("*-data")), "a process wrote its state into the current directory"
    data_dir = re.search(r"benchmark \(smoke\) in (\S+)", proc.stdout)
    assert data_dir and not Path(data_dir.group(1)).exists(), "the benchmark's data dir was left behind"
