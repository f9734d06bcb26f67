"""The capture's saved markers: a journal on the real file system, restored into a new stamper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.capture import capture_state
from connectors.capture.capture_state import CaptureState, read_markers
from connectors.capture.envelope import TransactionStamper
from streams.runtime.settings import Settings
from streams.runtime.state_files import markers_path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"


def _record(index: int) -> dict[str, Any]:
    """A real captured record of the meta_update scenario (0: its marker row, 1: its row change)."""
    scenario = json.loads((FIXTURES / "meta_update.json").read_text(encoding="utf-8"))
    return json.loads(scenario["records"][index]["value"])


def _marker(txid: int) -> str:
    marker = _record(0)
    marker["source"]["txId"] = txid
    marker["after"]["call_id"] = f"call-{txid}"
    return json.dumps(marker)


def _row(txid: int) -> str:
    row = _record(1)
    row["source"]["txId"] = txid
    return json.dumps(row)


def _capture(settings: Settings, **kwargs: Any) -> tuple[TransactionStamper, CaptureState]:
    stamper = TransactionStamper("local", "meta", **kwargs)
    return stamper, CaptureState.restore(settings, "local", "meta", stamper)


def _batch(stamper: TransactionStamper, state: CaptureState, *txids: int) -> None:
    for txid in txids:
        stamper.convert(None, _marker(txid))
    state.save(stamper, [], 0)


def test_batches_append_only_their_new_markers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    stamper, state = _capture(settings)
    _batch(stamper, state, 100, 101)
    _batch(stamper, state, 102)
    _batch(stamper, state)  # no new marker: nothing written
    _batch(stamper, state, 103, 104)
    lines = [json.loads(line)["markers"] for line in markers_path(settings, "local", "meta").read_text().splitlines()]
    assert [list(line) for line in lines] == [["100", "101"], ["102"], ["103", "104"]]
    assert read_markers(markers_path(settings, "local", "meta"), "local.meta") == stamper.markers_state()


def test_a_restarted_capture_stamps_a_transaction_resumed_after_its_marker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    stamper, state = _capture(settings)
    for txid in range(200, 210):
        _batch(stamper, state, txid)
    resumed, _ = _capture(settings)
    assert resumed.markers_state() == stamper.markers_state()
    event = resumed.convert(None, _row(205))[0]
    assert (event.api_id, event.call_id) == ("PRV_PAT_001", "call-205")


def test_the_journal_is_compacted_into_one_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_state, "JOURNAL_DELTAS", 3)
    settings = Settings(data_dir=tmp_path)
    stamper, state = _capture(settings, max_transactions=4)
    for txid in range(300, 305):
        _batch(stamper, state, txid)
    path = markers_path(settings, "local", "meta")
    # snapshot [300], three appended batches, then a snapshot of the newest four
    assert [list(json.loads(line)["markers"]) for line in path.read_text().splitlines()] == [
        ["301", "302", "303", "304"]]
    assert _capture(settings, max_transactions=4)[0].markers_state() == stamper.markers_state()


def test_markers_trimmed_since_the_last_save_force_a_snapshot(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    stamper, state = _capture(settings, max_transactions=2)
    _batch(stamper, state, 400)
    _batch(stamper, state, 401, 402, 403)  # three new markers, two kept: no delta holds them all
    lines = markers_path(settings, "local", "meta").read_text().splitlines()
    assert [list(json.loads(line)["markers"]) for line in lines] == [["402", "403"]]


def test_a_torn_last_line_is_skipped_and_the_rest_restored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(data_dir=tmp_path)
    stamper, state = _capture(settings)
    _batch(stamper, state, 500)
    _batch(stamper, state, 501)
    path = markers_path(settings, "local", "meta")
    with path.open("a", encoding="utf-8") as journal:
        journal.write('{"markers":{"502":{"api_id":"PRV_PA')  # the process died in the middle of an append
    resumed, _ = _capture(settings)
    assert list(resumed.markers_state()) == ["500", "501"]
    assert "skipping line 3" in caplog.text


def test_a_markers_file_of_the_former_format_is_read(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    stamper = TransactionStamper("local", "meta")
    stamper.convert(None, _marker(600))
    path = markers_path(settings, "local", "meta")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"markers": stamper.markers_state()}, indent=1, sort_keys=True) + "\n")
    resumed, _ = _capture(settings)
    assert resumed.convert(None, _row(600))[0].call_id == "call-600"


def test_an_entry_restored_twice_moves_to_the_end() -> None:
    stamper = TransactionStamper("local", "meta")
    stamper.convert(None, _marker(700))
    stamper.convert(None, _marker(701))
    version = stamper.markers_version
    stamper.restore_markers({"700": stamper.markers_state()["700"]})
    assert list(stamper.markers_state()) == ["701", "700"]
    assert list(stamper.markers_since(version) or {}) == ["700"]
    assert stamper.markers_since(version + 5) is None  # a version from the future: take a snapshot
