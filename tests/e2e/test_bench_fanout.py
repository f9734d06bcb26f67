"""``platsync bench --fanout`` end to end, small: 3 documents to 2 simulated hospitals. Asserts the run's
correctness checks and counts (never a timing), and that the benchmark stopped and removed what it started."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def test_fan_out_bench_delivers_every_document_once_to_each_subscriber_only(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "streams.cli.main", "bench", "--fanout", "--subscribers", "2",
                           "--documents", "3", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["figures"]["documents"], report["figures"]["subscribers"]) == (3, 2)
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["copies", "notifications", "topic", "webhook", "not subscribed"]
    assert all(c["ok"] for c in checks.values()), report["checks"]
    assert "each of 2 subscribers holds exactly the 3 documents" in checks["copies"]["detail"]
    assert checks["notifications"]["detail"].startswith("6 recorded: one per document and subscriber")
    assert "hosp-a, hosp-b hold no copy and no notification" in checks["not subscribed"]["detail"]
    # every latency was sampled (3 documents x 2 subscribers): a figure exists, whatever its value
    assert all(report["figures"][f"{kind}_p50_ms"] is not None for kind in ("copy", "notify_topic", "webhook"))
    assert {"subscriber-sim-01", "subscriber-sim-02", "pg-sim-01", "fanout"} <= set(
        report["cpu_ms_per_document_by_process"])
    assert "correctness: 5 of 5 checks passed" in proc.stdout
    root = re.search(r"to 2 subscribers, in (\S+)", proc.stdout)
    assert root and not Path(root.group(1)).exists(), "the benchmark's data dir was left behind"
    left = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert root.group(1) not in left, "a process of the benchmark still runs"
