"""Avro contracts: each committed version reads what the previous one wrote."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from streams.core.contracts import backward_incompatibilities, check_history

REPO = Path(__file__).resolve().parents[2]
CHANGE = json.loads((REPO / "schemas" / "change_event.avsc").read_text(encoding="utf-8"))


def test_every_committed_contract_version_is_backward_compatible() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no committed versions to compare")
    assert check_history(REPO) == []


def test_adding_an_optional_field_is_compatible() -> None:
    new = copy.deepcopy(CHANGE)
    new["fields"].append({"name": "tenant", "type": ["null", "string"], "default": None})
    assert backward_incompatibilities(CHANGE, new) == []


def test_adding_a_required_field_is_detected() -> None:
    new = copy.deepcopy(CHANGE)
    new["fields"].append({"name": "tenant", "type": "string"})
    problems = backward_incompatibilities(CHANGE, new)
    assert problems and "tenant" in problems[0]


def test_changing_a_field_type_is_detected() -> None:
    new = copy.deepcopy(CHANGE)
    for field in new["fields"]:
        if field["name"] == "version":
            field["type"] = "string"
    assert backward_incompatibilities(CHANGE, new) != []


def test_dropping_an_enum_symbol_is_detected() -> None:
    new = copy.deepcopy(CHANGE)
    for field in new["fields"]:
        if field["name"] == "op":
            field["type"]["symbols"] = ["c", "u", "d", "r"]
    assert backward_incompatibilities(CHANGE, new) != []


def test_history_check_flags_an_incompatible_commit(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (tmp_path / "schemas").mkdir()
    schema = tmp_path / "schemas" / "x.avsc"

    def commit(doc: dict, message: str) -> None:
        schema.write_text(json.dumps(doc))
        subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                        "commit", "-qm", message], check=True)

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    v1 = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "long"}]}
    commit(v1, "v1")
    assert check_history(tmp_path) == []
    commit({"type": "record", "name": "X", "fields": [{"name": "a", "type": "long"},
                                                     {"name": "b", "type": "string"}]}, "v2 breaks")
    faults = check_history(tmp_path)
    assert len(faults) == 1 and "schemas/x.avsc" in faults[0] and "cannot read data written by" in faults[0]
