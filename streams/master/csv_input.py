"""Reading a CSV of the MHLW medical institution master (pure: bytes in, rows and errors out).

The accepted columns (docs/master.md), each recognised by its English name or a Japanese header:

========================  ==========================================  =========
column                    headers                                     required
========================  ==========================================  =========
``medical_id``            医療機関コード, 医療機関番号                 yes
``name``                  医療機関名称, 名称                           yes
``name_kana``             医療機関名称カナ, カナ名称, フリガナ
``postal_code``           郵便番号
``address``               住所, 所在地
``phone``                 電話番号
``founder``               開設者
``administrator``         管理者
``designated_on``         指定年月日
``beds``                  病床数
``departments``           診療科名, 診療科
========================  ==========================================  =========

The file is UTF-8 (a BOM is allowed) or Shift_JIS (CP932, as Excel and the regional bureaus' downloads
write it): decoded as UTF-8 if it is valid UTF-8, else as CP932, unless the caller names the encoding. The
first row is the header; columns not listed above are ignored (and named, so a typo is visible). Each
invalid row is reported with its line number, column and reason and left out; the valid rows are kept. A
code appearing twice is an error on its second line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from streams.core.errors import PlatSyncError
from streams.master.codes import InvalidCode, parse_code

#: Column -> accepted headers (the column's own name is always accepted).
HEADERS: dict[str, tuple[str, ...]] = {
    "medical_id": ("医療機関コード", "医療機関番号"),
    "name": ("医療機関名称", "名称"),
    "name_kana": ("医療機関名称カナ", "カナ名称", "フリガナ"),
    "postal_code": ("郵便番号",),
    "address": ("住所", "所在地"),
    "phone": ("電話番号",),
    "founder": ("開設者",),
    "administrator": ("管理者",),
    "designated_on": ("指定年月日",),
    "beds": ("病床数",),
    "departments": ("診療科名", "診療科"),
}
REQUIRED = ("medical_id", "name")
COLUMNS = tuple(HEADERS)
MAX_TEXT = 500
#: Japanese era initials -> the Gregorian year before the era's first (和暦: R5 = 2023).
ERAS = {"M": 1867, "T": 1911, "S": 1925, "H": 1988, "R": 2018}

Row = dict[str, str | int | None]


class MasterFileError(PlatSyncError, ValueError):
    """The file cannot be read at all (encoding, header); the message says why."""


@dataclass(frozen=True)
class RowError:
    """One invalid value: where (line, column) and why."""

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.column}: {self.reason}"


@dataclass
class MasterFile:
    """The valid rows by code, the invalid ones' errors, and the header columns that were ignored."""

    rows: dict[str, Row] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    encoding: str = ""


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding used): ``encoding`` if given, else UTF-8 when valid, else CP932."""
    for candidate in ([encoding] if encoding else ["utf-8-sig", "cp932"]):
        try:
            return data.decode(candidate), "utf-8" if candidate == "utf-8-sig" else candidate
        except (UnicodeDecodeError, LookupError) as exc:
            last = exc
    raise MasterFileError(f"not {encoding or 'UTF-8 or Shift_JIS (CP932)'} text: {last}")


def _text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise ValueError(f"longer than {MAX_TEXT} characters")
    return value


def _postal(value: str) -> str:
    digits = value.replace("-", "").replace("〒", "").strip()
    if not re.fullmatch(r"[0-9]{7}", digits):
        raise ValueError(f"expected 7 digits (123-4567), got {value!r}")
    return f"{digits[:3]}-{digits[3:]}"


def _phone(value: str) -> str:
    if not re.fullmatch(r"[0-9]{2,5}-?[0-9]{1,4}-?[0-9]{3,4}", value):
        raise ValueError(f"expected digits and hyphens (03-1234-5678), got {value!r}")
    return value


def _date(value: str) -> str:
    """ISO date from ``2023-04-01``, ``2023/4/1`` or the Japanese era form ``R5.4.1`` / ``R05.04.01``."""
    era = re.fullmatch(r"([MTSHR])([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{1,2})", value)
    match = era or re.fullmatch(r"([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})", value)
    if match is None:
        raise ValueError(f"expected a date (2023-04-01, 2023/4/1 or R5.4.1), got {value!r}")
    if era:
        year, month, day = ERAS[era[1]] + int(era[2]), int(era[3]), int(era[4])
    else:
        year, month, day = (int(g) for g in match.groups())
    return date(year, month, day).isoformat()


def _beds(value: str) -> int:
    if not value.isdigit() or int(value) > 100_000:
        raise ValueError(f"expected a number of beds (0-100000), got {value!r}")
    return int(value)


def _code(value: str) -> str:
    try:
        return parse_code(value).code
    except InvalidCode as exc:
        raise ValueError(str(exc)) from None


PARSERS: dict[str, Callable[[str], str | int]] = {
    "medical_id": _code, "postal_code": _postal, "phone": _phone, "designated_on": _date, "beds": _beds}


def _columns(header: list[str]) -> tuple[dict[int, str], list[str]]:
    """Position -> column, and the header cells ignored; :class:`MasterFileError` without a required one."""
    known = {alias: column for column, aliases in HEADERS.items() for alias in (column, *aliases)}
    positions: dict[int, str] = {}
    ignored = []
    for i, cell in enumerate(header):
        column = known.get(cell.strip())
        if column is None or column in positions.values():
            ignored.append(cell)
        else:
            positions[i] = column
    missing = [c for c in REQUIRED if c not in positions.values()]
    if missing:
        raise MasterFileError(f"the header lacks {', '.join(missing)} (as "
                              + "; ".join(f"{c}: {' or '.join((c, *HEADERS[c]))}" for c in missing)
                              + f"); it has {', '.join(header) or 'nothing'}")
    return positions, ignored


def csv_header(text: str, refuse: Callable[[str], Exception], empty: str) -> tuple[list[str], Any]:
    """The header row of a CSV text and the reader positioned after it; ``refuse(message)`` is raised for an
    empty file (``empty``) or an unreadable header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return next(reader), reader
    except StopIteration:
        raise refuse(empty) from None
    except csv.Error as exc:
        raise refuse(f"line 1: {exc}") from None


def csv_rows(reader: Any, errors: list[RowError]) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` of every non-blank row left in ``reader``; a row the csv module cannot read is an
    error of its line in ``errors`` and is passed over."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(RowError(reader.line_num, "(row)", str(exc)))
            continue
        if any(c.strip() for c in cells):
            yield reader.line_num, cells


def read_master(data: bytes, encoding: str | None = None) -> MasterFile:
    """Parse a master CSV (see the module docstring)."""
    text, used = decode(data, encoding)
    header, reader = csv_header(text, MasterFileError, "the file is empty: expected a header row")
    positions, ignored = _columns(header)
    out = MasterFile(ignored_columns=ignored, encoding=used)
    first_line: dict[str, int] = {}
    for line, cells in csv_rows(reader, out.errors):
        _read_row(line, cells, positions, out, first_line)
    return out


def _read_row(line: int, cells: list[str], positions: dict[int, str], out: MasterFile,
              first_line: dict[str, int]) -> None:
    row: Row = dict.fromkeys(COLUMNS)
    bad = False
    for i, column in positions.items():
        value = cells[i].strip() if i < len(cells) else ""
        if not value:
            if column in REQUIRED:
                out.errors.append(RowError(line, column, "required, empty"))
                bad = True
            continue
        try:
            row[column] = PARSERS.get(column, _text)(value)
        except ValueError as exc:
            out.errors.append(RowError(line, column, str(exc)))
            bad = True
    if bad:
        return
    code = str(row["medical_id"])
    if code in first_line:
        out.errors.append(RowError(line, "medical_id", f"code {code} already on line {first_line[code]}"))
        return
    first_line[code] = line
    out.rows[code] = row
