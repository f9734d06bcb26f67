"""The engine's state files (streams/runtime/jsonfile.py): atomic, readable both ways."""

from __future__ import annotations

from pathlib import Path

from streams.runtime.jsonfile import read_json, write_json

DOC = {"markers": {"12": {"api_id": "PRV_DOC_006", "call_id": None, "origin_side": "local",
                          "applied_by_sync": False}}, "note": "退院時サマリー"}


def test_indented_and_compact_files_read_back_the_same(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", DOC)
    write_json(tmp_path / "b.json", DOC, compact=True)
    assert read_json(tmp_path / "a.json") == read_json(tmp_path / "b.json") == DOC
    compact = (tmp_path / "b.json").read_text(encoding="utf-8")
    assert compact.count("\n") == 1 and ": " not in compact and "退院時サマリー" in compact
    assert (tmp_path / "a.json").read_text(encoding="utf-8").count("\n") > 5  # for people: indented
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temporary file left


def test_a_missing_or_broken_file_reads_as_empty(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json") == {}
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    assert read_json(tmp_path / "broken.json") == {}


def test_a_missing_directory_is_created(tmp_path: Path) -> None:
    write_json(tmp_path / "state" / "capture" / "p.json", DOC, compact=True)
    assert read_json(tmp_path / "state" / "capture" / "p.json") == DOC
