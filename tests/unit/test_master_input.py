"""The master's codes, CSV reading, synthetic data and import difference (streams/master, issue 16)."""

from __future__ import annotations

import pytest

from streams.master.codes import InvalidCode, check_digit, make_code, parse_code
from streams.master.csv_input import MasterFileError, RowError, read_master
from streams.master.diff import diff_master
from streams.master.synthetic import changed, generate_rows, to_csv

#: A real-format code (Wikipedia's example of a prescription's institution code): Hokkaido, medical.
HOKKAIDO = "0110113719"


def test_a_code_is_ten_digits_with_prefecture_fee_schedule_and_luhn_check() -> None:
    code = parse_code(f" {HOKKAIDO} ")
    assert (code.code, code.prefecture, code.kind) == (HOKKAIDO, 1, "medical")
    assert parse_code(make_code(47, "4", 12, 345)).kind == "pharmacy"
    assert check_digit("011011371") == "9"
    # As an integer Okinawa's codes overflow the seed's 32-bit INTEGER, and Hokkaido's lose their leading zero.
    assert int(make_code(47, "1", 1, 1)) > 2**31 - 1 and str(int(HOKKAIDO)) != HOKKAIDO


@pytest.mark.parametrize(("text", "reason"), [
    ("011011371", "expected 10 ASCII digits"),
    ("０１１０１１３７１９", "expected 10 ASCII digits"),  # full-width digits
    ("01101137a9", "expected 10 ASCII digits"),
    ("0010113719", "prefecture number 00 is not 01-47"),
    ("4810113719", "prefecture number 48 is not 01-47"),
    ("0120113719", "fee schedule digit 2 is not one of 1 (medical), 3 (dental), 4 (pharmacy)"),
    ("0110113718", "check digit 8 is wrong (the Luhn digit of 011011371 is 9)"),
])
def test_an_invalid_code_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(InvalidCode, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_code(text)


def test_both_encodings_and_either_header_language_are_read() -> None:
    rows = list(generate_rows(300, seed=7))
    for encoding in ("utf-8", "cp932", "utf-8-sig"):
        read = read_master(to_csv(rows, encoding))
        assert read.errors == [] and list(read.rows.values()) == rows
        assert read.encoding == ("cp932" if encoding == "cp932" else "utf-8")
    english = "medical_id,name,beds,extra\r\n0110113719,札幌クリニック,19,x\r\n".encode()
    read = read_master(english)
    assert read.rows[HOKKAIDO]["name"] == "札幌クリニック" and read.rows[HOKKAIDO]["beds"] == 19
    assert read.ignored_columns == ["extra"]


def test_invalid_rows_are_reported_with_line_column_and_reason_and_the_valid_ones_kept() -> None:
    good = make_code(13, "1", 1, 1)
    data = "\r\n".join([
        "医療機関コード,医療機関名称,郵便番号,電話番号,指定年月日,病床数",
        f"{good},東京クリニック,100-0001,03-1234-5678,R5.4.1,20",
        "0110113718,誤りクリニック,,,,",  # line 3: check digit
        f"{make_code(13, '3', 1, 2)},,,,,",  # line 4: no name
        f"{make_code(13, '4', 1, 3)},薬局,1000001,電話,2023/13/01,-1",  # line 5: three bad values
        "",
        f"{good},重複クリニック,,,,",  # line 7: the same code again
    ]).encode("cp932")
    read = read_master(data)
    assert list(read.rows) == [good]
    assert read.rows[good]["designated_on"] == "2023-04-01" and read.rows[good]["postal_code"] == "100-0001"
    assert read.errors == [
        RowError(3, "medical_id", "check digit 8 is wrong (the Luhn digit of 011011371 is 9)"),
        RowError(4, "name", "required, empty"),
        RowError(5, "phone", "expected digits and hyphens (03-1234-5678), got '電話'"),
        RowError(5, "designated_on", "month must be in 1..12"),
        RowError(5, "beds", "expected a number of beds (0-100000), got '-1'"),
        RowError(7, "medical_id", f"code {good} already on line 2"),
    ]
    assert str(read.errors[1]) == "line 4, name: required, empty"


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "the file is empty"),
    ("名称,住所\r\nx,y\r\n".encode(), "the header lacks medical_id"),
    (b"\x81\n", "not UTF-8 or Shift_JIS"),  # a Shift_JIS lead byte without its trail byte
])
def test_an_unreadable_file_is_refused_whole(data: bytes, reason: str) -> None:
    with pytest.raises(MasterFileError, match=reason):
        read_master(data)


def test_the_synthetic_master_has_unique_valid_codes_and_a_reproducible_change_set() -> None:
    rows = list(generate_rows(2_000, seed=3))
    assert len({r["medical_id"] for r in rows}) == 2_000
    assert all(parse_code(str(r["medical_id"])) for r in rows)
    assert rows == list(generate_rows(2_000, seed=3))
    edited = changed(rows, 0.01, seed=5)
    assert 5 <= sum(a != b for a, b in zip(rows, edited, strict=True)) <= 40
    assert edited == changed(rows, 0.01, seed=5)


def test_the_difference_writes_only_real_changes() -> None:
    rows = {str(r["medical_id"]): r for r in generate_rows(500, seed=4)}
    assert diff_master(rows, dict(rows)).empty  # an unchanged re-import changes nothing
    edited = {str(r["medical_id"]): r for r in changed(rows.values(), 0.05, seed=6)}
    extra = next(generate_rows(1, seed=99))
    gone = sorted(rows)[0]
    incoming = {**{c: r for c, r in edited.items() if c != gone}, str(extra["medical_id"]): extra}
    diff = diff_master(rows, incoming)
    assert [r["medical_id"] for r in diff.new] == [extra["medical_id"]]
    assert {r["medical_id"] for r in diff.changed} == {c for c in edited if edited[c] != rows[c] and c != gone}
    assert diff.gone == [gone]
    assert diff_master(rows, incoming, remove_missing=False).gone == []
    assert diff.summary() == f"1 new, {len(diff.changed)} changed, 1 gone"
