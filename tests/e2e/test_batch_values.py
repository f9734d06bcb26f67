"""A Debezium batch's values in one call (connectors/capture/batch_values.py): the Java helper compiled
by the real javac and run in the real JVM; the split that the capture relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.capture.batch_values import batch_values_classes, split_values
from streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "support" / "batch_values_probe.py"


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiled = batch_values_classes(Settings(java_cache_dir=str(tmp_path_factory.mktemp("java-cache"))))
    assert compiled is not None, "javac is part of the machine image (OpenJDK 17)"
    return compiled


def _join(classes: Path, values: list[str | None]) -> dict[str, object]:
    out = subprocess.run([sys.executable, str(PROBE), str(classes)], input=json.dumps(values), capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_values_come_back_in_order_with_tombstones_and_escaped_newlines(classes: Path) -> None:
    values = [json.dumps({"op": "c", "after": {"id": "d1", "title": "退院時サマリー\n2行目"}}, ensure_ascii=False),
              None,
              json.dumps({"op": "u", "after": {"id": "d2", "body": "a\\nb \u2028 \r"}}, ensure_ascii=False),
              json.dumps({"schema": {}, "payload": None})]
    report = _join(classes, values)
    assert report["split"] == values
    assert report["text"].count("\n") == 3  # compact JSON: its newlines are escaped, the three are separators


def test_a_single_tombstone_and_an_empty_batch(classes: Path) -> None:
    assert _join(classes, [None]) == {"text": "", "split": [None]}
    assert _join(classes, []) == {"text": "", "split": None}  # the capture never asks for an empty batch


@pytest.mark.parametrize(("text", "size", "expected"), [
    ('{"a":1}\n\n{"b":2}', 3, ['{"a":1}', None, '{"b":2}']),
    ('{"a":1}', 1, ['{"a":1}']),
    ("", 1, [None]),
    ('{"a":"x\ny"}', 1, None),  # an unescaped newline inside a value: the capture fetches one by one
    ('{"a":1}\n{"b":2}', 3, None),
])
def test_split_values_refuses_a_text_of_another_size(text: str, size: int, expected: list[str | None] | None) -> None:
    assert split_values(text, size) == expected
