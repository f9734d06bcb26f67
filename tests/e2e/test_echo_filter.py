"""The Java echo filter (connectors/capture/echo_filter.py): compiled by the real javac, run in
the real JVM against Debezium-shaped Kafka Connect records, same rules as the Python stamper."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.capture import echo_filter
from streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "support" / "echo_filter_probe.py"


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings(java_cache_dir=str(tmp_path_factory.mktemp("java-cache")))
    compiled = echo_filter.compiled_classes(settings)
    assert compiled is not None, "javac is part of the machine image (OpenJDK 17)"
    return compiled


def test_filter_drops_exactly_the_rows_of_echo_transactions(classes: Path) -> None:
    out = subprocess.run([sys.executable, str(PROBE), str(classes)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert dict(report["results"]) == {
        "echo marker (origin remote) passes": "kept",
        "row of the echo transaction": "dropped",
        "non-synced table in the echo transaction": "kept",
        "own marker passes": "kept",
        "row of an own transaction": "kept",
        "first marker own": "kept",
        "second marker echo": "kept",
        "row after two markers (first wins)": "kept",
        "marker applied_by_sync on own side": "kept",
        "row of an applied_by_sync transaction": "dropped",
        "marker without origin_side": "kept",
        "row after a malformed marker": "kept",
        "marker update (not an insert)": "kept",
        "row after a marker update": "kept",
        "row without any marker": "kept",
        "row without txId": "kept",
        "tombstone": "kept",
        "row of an evicted echo transaction": "kept",
        "row of a remembered echo transaction": "dropped",
    }
    assert report["dropped"] == {"probe": 2, "bounded": 1, "never-configured": 0}
    assert "needs the property" in report["errors"]["empty config"]


def test_compiled_classes_are_cached_by_source_digest(classes: Path) -> None:
    settings = Settings(java_cache_dir=str(classes.parent))
    stamp = (classes / "platsync" / "EchoFilter.class").stat().st_mtime_ns
    assert echo_filter.compiled_classes(settings) == classes
    assert (classes / "platsync" / "EchoFilter.class").stat().st_mtime_ns == stamp
    assert [p.name for p in classes.parent.iterdir()] == [classes.name]  # no staging dir left


def test_switched_off_or_without_javac_the_capture_runs_unfiltered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(java_cache_dir=str(tmp_path / "cache"))
    assert echo_filter.compiled_classes(dataclasses.replace(settings, debezium_echo_filter=False)) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no javac here
    with caplog.at_level(logging.WARNING, "platsync.capture"):
        assert echo_filter.compiled_classes(settings) is None
    assert "no javac on PATH" in caplog.text
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_compile_error_is_reported_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "EchoFilter.java"
    broken.write_text("package platsync; public class EchoFilter { not java }\n")
    monkeypatch.setattr(echo_filter, "SOURCE", broken)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, "platsync.capture"):
        assert echo_filter.compiled_classes(Settings(java_cache_dir=str(cache))) is None
    assert "cannot compile EchoFilter.java" in caplog.text and "error" in caplog.text
    assert os.listdir(cache) == []
