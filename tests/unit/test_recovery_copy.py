"""The selection of "copy selected" (streams/ops/recovery_copy.py): ids and what crosses."""

from __future__ import annotations

import pytest

from streams.ops.recovery_copy import Selected, invalid
from streams.ops.recovery_report import Entry, as_json


def test_an_id_round_trips_and_keeps_slashes_in_the_row_id() -> None:
    chosen = Selected.parse("local/meta/documents/6f1c/x")
    assert chosen == Selected("local", "meta", "documents", "6f1c/x")
    assert Selected.parse(chosen.id) == chosen


@pytest.mark.parametrize("text", ["", "local", "local/meta/documents", "local//documents/1", "/meta/documents/1",
                                  "local/meta/documents/"])
def test_a_malformed_id_names_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="expected side/store/table/row_id"):
        Selected.parse(text)


@pytest.mark.parametrize(("selected", "reason"), [
    (Selected("moon", "meta", "documents", "1"), "unknown side 'moon'"),
    (Selected("remote", "fructos_patient", "signed_records", "1"), "store 'fructos_patient' is not copied"),
    (Selected("local", "meta", "no_such_table", "1"), "table 'no_such_table' of meta is not sent by local"),
])
def test_what_does_not_cross_is_refused_with_the_reason(selected: Selected, reason: str) -> None:
    found = invalid(selected)
    assert found is not None and found.startswith(reason), found


def test_documents_of_either_side_may_be_copied() -> None:
    assert invalid(Selected("local", "meta", "documents", "1")) is None
    assert invalid(Selected("remote", "meta", "documents", "1")) is None


def test_the_report_names_each_entry_by_the_id_copy_takes() -> None:
    entry = Entry("local", "meta", "documents", "abc", "D000000001", 2, "2026-12-05T00:00:00.000+00:00",
                  "PRV_DOC_006", "copyable", "not yet on remote")
    row = as_json([entry], 0, None)["entries"][0]
    assert row["id"] == "local/meta/documents/abc"
    assert Selected.parse(row["id"]) == Selected("local", "meta", "documents", "abc")
