"""The sync target list read from YAML or CSV, and its difference with the table (streams/master/targets_file.py)."""

from __future__ import annotations

import pytest

from streams.core.errors import PlatSyncError
from streams.master.codes import make_code
from streams.master.csv_input import RowError
from streams.master.synthetic import generate_rows
from streams.master.targets_file import TargetsFileError, diff_targets, read_targets

TOKYO = make_code(13, "1", 23, 4567)      # 1312345679
OSAKA = make_code(27, "1", 23, 4567)      # 2712345673
DENTAL = make_code(1, "3", 10, 1)         # 0131000010: Hokkaido, a leading zero
#: A Hokkaido code made only of the digits 0-7: unquoted, YAML 1.1 reads it as an octal number.
OCTAL = make_code(1, "1", 1, 0)           # 0110100005


def errors(result: object) -> list[tuple[int, str, str]]:
    return [(e.line, e.column, e.reason) for e in result.errors]  # type: ignore[attr-defined]


def test_the_codes_used_here_are_what_the_names_say() -> None:
    assert (TOKYO, OSAKA, DENTAL, OCTAL) == ("1312345679", "2712345673", "0131000010", "0110100005")
    assert int(OCTAL, 8) == 18907141


# --- YAML ----------------------------------------------------------------------------------------------

SEED_YAML = f"""\
# the seed's shape
sync_targets:
  - medical_id: "{TOKYO}"
    note: "導入予定医療機関A"
  - medical_id: '{DENTAL}'
  - medical_id: "{OSAKA}"
    note:
""".encode()


@pytest.mark.parametrize("name", ["targets.yaml", "TARGETS.YML", "targets", "targets.txt"])
def test_the_seeds_yaml_shape_is_read_by_extension_or_sniffed(name: str) -> None:
    result = read_targets(SEED_YAML, name)
    assert (result.format, result.encoding, result.errors) == ("yaml", "utf-8", [])
    assert result.targets == {TOKYO: "導入予定医療機関A", DENTAL: None, OSAKA: None}
    assert list(result.targets) == [TOKYO, DENTAL, OSAKA]  # file order


def test_an_empty_list_is_valid_and_cp932_yaml_is_read() -> None:
    assert read_targets(b"sync_targets: []\n", "t.yaml").targets == {}
    data = f'sync_targets:\n  - medical_id: "{TOKYO}"\n    note: 備考あり\n'.encode("cp932")
    result = read_targets(data, "t.yml")
    assert (result.encoding, result.targets) == ("cp932", {TOKYO: "備考あり"})


def test_an_unquoted_octal_looking_code_is_refused_naming_the_number_yaml_read() -> None:
    data = f"sync_targets:\n  - medical_id: {OCTAL}\n  - medical_id: {DENTAL}\n".encode()
    result = read_targets(data, "t.yaml")
    assert errors(result) == [
        (2, "medical_id", f'write the code in quotes ("{OCTAL}"): unquoted, YAML reads it as the number '
                          f"{int(OCTAL, 8)}"),
        (3, "medical_id", f'write the code in quotes ("{DENTAL}"): unquoted, YAML reads it as the number '
                          f"{int(DENTAL, 8)}"),
    ]
    assert result.targets == {}  # the same codes in quotes are fine
    quoted = read_targets(f'sync_targets:\n  - medical_id: "{OCTAL}"\n'.encode(), "t.yaml")
    assert quoted.targets == {OCTAL: None}


def test_an_unquoted_code_is_accepted_only_when_yaml_keeps_it_intact() -> None:
    hokkaido_with_a_nine = "0110113719"  # not octal: YAML leaves it a string
    data = (f"sync_targets:\n  - medical_id: {TOKYO}\n  - medical_id: {hokkaido_with_a_nine}\n"
            "  - medical_id: 1_312_345_679\n  - medical_id: 1.5\n  - medical_id: true\n").encode()
    result = read_targets(data, "t.yaml")
    assert result.targets == {TOKYO: None, hokkaido_with_a_nine: None}
    assert errors(result) == [
        (4, "medical_id", 'write the code in quotes ("1_312_345_679"): unquoted, YAML reads it as the number '
                          "1312345679"),
        (5, "medical_id", 'write the code in quotes ("1.5"): unquoted, YAML reads it as a float, not text'),
        (6, "medical_id", 'write the code in quotes ("true"): unquoted, YAML reads it as a bool, not text'),
    ]


def test_every_yaml_error_is_collected_with_its_line() -> None:
    long_note = "あ" * 501
    data = f"""\
sync_targets:
  - medical_id: "{TOKYO}"
    note: first
  - medical_id: "131234567"
  - medical_id: "{OSAKA}"
    note: "{long_note}"
  - note: no code
  - medical_id: "{DENTAL}"
    colour: red
  - medical_id: "{TOKYO}"
    note: again
  - just a string
  - medical_id:
  - medical_id: ["{OSAKA}"]
  - medical_id: "{OSAKA}"
    note: {{a: 1}}
  - medical_id: "{OSAKA}"
    medical_id: "{DENTAL}"
extra: 1
""".encode()
    result = read_targets(data, "t.yaml")
    assert errors(result) == [
        (19, "extra", "unknown key (expected sync_targets)"),
        (4, "medical_id", "expected 10 ASCII digits, got '131234567'"),
        (6, "note", "longer than 500 characters (501)"),
        (7, "medical_id", "required, missing"),
        (9, "colour", "unknown key (expected medical_id, note)"),
        (10, "medical_id", f"code {TOKYO} already on line 2"),
        (12, "(entry)", "expected a mapping with medical_id and note, got the value 'just a string'"),
        (13, "medical_id", "required, empty"),
        (14, "medical_id", 'expected a code in quotes ("1312345678"), got a list'),
        (16, "note", "expected text, got a mapping"),
        (18, "medical_id", "given twice in one entry (first on line 17)"),
    ]
    assert result.targets == {TOKYO: "first"}  # the first occurrence is kept; every invalid entry left out
    assert all(isinstance(e, RowError) for e in result.errors)
    assert str(result.errors[0]) == "line 19, extra: unknown key (expected sync_targets)"


def test_a_note_is_taken_as_written() -> None:
    data = f'sync_targets:\n  - medical_id: "{TOKYO}"\n    note: 2024-04-01\n  - medical_id: "{OSAKA}"\n' \
           f"    note: yes\n".encode()
    assert read_targets(data, "t.yaml").targets == {TOKYO: "2024-04-01", OSAKA: "yes"}


@pytest.mark.parametrize(("data", "message"), [
    (b"", "expected a YAML mapping with a sync_targets list, got an empty file"),
    (b"- a\n- b\n", "expected a YAML mapping with a sync_targets list, got a list on line 1"),
    (b"other: 1\n", "the YAML mapping has no sync_targets list"),
    (b"sync_targets:\n", "line 1: sync_targets must be a list of entries"),  # no entries: not "remove all"
    (b"sync_targets: {a: 1}\n", "line 1: sync_targets must be a list of entries"),
    (b"sync_targets:\n  - a: [\n", "not valid YAML: line 3"),
    (b"\xff\xfe\xfa", "not UTF-8 or Shift_JIS"),
])
def test_a_yaml_file_of_the_wrong_shape_is_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(TargetsFileError, match=message.replace("(", r"\(")) as caught:
        read_targets(data, "targets.yaml")
    assert isinstance(caught.value, PlatSyncError)


def test_sync_targets_given_twice_is_an_error_on_its_second_line() -> None:
    data = f'sync_targets:\n  - medical_id: "{TOKYO}"\nsync_targets:\n  - medical_id: "{OSAKA}"\n'.encode()
    result = read_targets(data, "t.yaml")
    assert errors(result) == [(3, "sync_targets", "given twice (first on line 2)")]
    assert result.targets == {TOKYO: None}


# --- CSV -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
@pytest.mark.parametrize(("code_header", "note_header"), [
    ("medical_id", "note"), ("医療機関コード", "備考"), ("医療機関番号", "メモ"), ("医療機関コード", "注記")])
def test_a_csv_is_read_in_either_encoding_and_header_language(encoding: str, code_header: str,
                                                               note_header: str) -> None:
    codes = [str(row["medical_id"]) for row in generate_rows(20, seed=3)]
    text = f"{code_header},{note_header},担当\r\n" + "".join(f"{c},導入予定{i},佐藤\r\n" for i, c in enumerate(codes))
    result = read_targets(text.encode(encoding), "targets.csv")
    assert (result.format, result.encoding, result.errors) == ("csv", "utf-8" if "utf" in encoding else "cp932", [])
    assert result.targets == {c: f"導入予定{i}" for i, c in enumerate(codes)}
    assert result.ignored_columns == ["担当"]


def test_a_csv_without_a_note_column_and_sniffed_without_an_extension() -> None:
    result = read_targets(f"医療機関コード\n{TOKYO}\n\n{DENTAL}\n".encode(), "targets")
    assert (result.format, result.targets) == ("csv", {TOKYO: None, DENTAL: None})


def test_every_csv_error_is_collected_with_its_line() -> None:
    text = (f"medical_id,note\n{TOKYO},ok\n{TOKYO[:-1]}0,bad check\n,no code\n{OSAKA},{'x' * 501}\n"
            f"{TOKYO},again\n{OSAKA}\n")
    result = read_targets(text.encode(), "t.csv")
    assert errors(result) == [
        (3, "medical_id", "check digit 0 is wrong (the Luhn digit of 131234567 is 9)"),
        (4, "medical_id", "required, empty"),
        (5, "note", "longer than 500 characters (501)"),
        (6, "medical_id", f"code {TOKYO} already on line 2"),
    ]
    assert result.targets == {TOKYO: "ok", OSAKA: None}


@pytest.mark.parametrize(("data", "name", "message"), [
    (b"", "t.csv", "the file is empty"),
    ("名称,備考\nA,B\n".encode(), "t.csv",
     "the header lacks medical_id .as medical_id or 医療機関コード or 医療機関番号.; it has 名称, 備考"),
    (b"hello world\n", "targets.txt", "cannot tell the format of 'targets.txt'"),
    (b"other: 1\n", "targets", "cannot tell the format"),
])
def test_a_csv_or_unknown_file_of_the_wrong_shape_is_refused_whole(data: bytes, name: str, message: str) -> None:
    with pytest.raises(TargetsFileError, match=message):
        read_targets(data, name)


# --- the difference --------------------------------------------------------------------------------------

def test_the_difference_says_what_is_added_removed_and_renoted_in_code_order() -> None:
    current = {TOKYO: "old", OSAKA: None, DENTAL: ""}
    wanted = {TOKYO: "new", DENTAL: None, OCTAL: "導入予定医療機関A"}
    diff = diff_targets(current, wanted)
    assert diff.added == {OCTAL: "導入予定医療機関A"}
    assert diff.removed == [OSAKA]
    assert diff.note_changed == {TOKYO: "new"}  # '' and None are the same note
    assert not diff.empty
    assert diff.summary() == "1 added, 1 removed, 1 note changed"
    assert diff.lines() == [
        f"+ {OCTAL}  導入予定医療機関A",
        f"~ {TOKYO}  note: 'old' -> 'new'",
        f"- {OSAKA}",
    ]


def test_no_difference_is_empty_and_a_cleared_note_shows_none() -> None:
    same = {TOKYO: "a", OSAKA: None}
    assert diff_targets(same, dict(same)).empty and diff_targets(same, dict(same)).lines() == []
    assert diff_targets({}, {}).summary() == "0 added, 0 removed, 0 note changed"
    cleared = diff_targets({TOKYO: "a"}, {TOKYO: None, OSAKA: None})
    assert cleared.lines() == [f"~ {TOKYO}  note: 'a' -> None", f"+ {OSAKA}"]
    assert diff_targets({TOKYO: "a", OSAKA: "b"}, {}).removed == [TOKYO, OSAKA]


def test_a_file_read_then_diffed_against_the_table() -> None:
    file = read_targets(SEED_YAML, "targets.yaml")
    diff = diff_targets({TOKYO: "導入予定医療機関A", "4741203451": None}, file.targets)
    assert diff.lines() == [f"+ {DENTAL}", f"+ {OSAKA}", "- 4741203451"]
