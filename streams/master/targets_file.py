"""Reading the sync target list from a file, and its difference with the table (pure: bytes in, result out).

The hospital's ``sync_target_orgs`` (``medical_id``, ``note``) can be managed from a file in either shape:

- YAML, the seed's shape: a mapping whose one key ``sync_targets`` is a list of entries with ``medical_id``
  and an optional ``note``::

      sync_targets:
        - medical_id: "1312345678"
          note: "導入予定医療機関A"

  Write every code in quotes. Unquoted, YAML 1.1 reads ``0112345670`` as an octal number (19516344): a code
  read as a number is accepted only if YAML's number is exactly the code as written (``1312345678``),
  otherwise it is an error asking for the quotes. A note is taken as written (``note: 2024-04-01`` is the text
  ``2024-04-01``).
- CSV with a header: ``medical_id`` (or 医療機関コード, 医療機関番号) and an optional ``note`` (or 備考, メモ,
  注記); other columns are ignored and named. UTF-8 (a BOM is allowed) or CP932, detected as for the master
  CSV (:func:`streams.master.csv_input.decode`).

The shape follows the file name's extension (``.yaml``/``.yml``, ``.csv``); any other name is sniffed (a YAML
mapping with ``sync_targets``, or a CSV header with a code column). Every code goes through
:func:`~streams.master.codes.parse_code`. All errors are collected in one pass, each with its line, field
and reason (:class:`~streams.master.csv_input.RowError`); an invalid entry is left out. A code listed twice
is an error on its second line. A file that cannot be read at all (not decodable, not a mapping with a
``sync_targets`` list, a CSV without a code column) is refused whole with :class:`TargetsFileError`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

import yaml
from yaml.constructor import SafeConstructor

from streams.core.errors import PlatSyncError
from streams.master.codes import InvalidCode, parse_code
from streams.master.csv_input import MasterFileError, RowError, csv_header, csv_rows, decode

#: Column -> accepted headers of a CSV target list (the column's own name is always accepted).
HEADERS: dict[str, tuple[str, ...]] = {
    "medical_id": ("医療機関コード", "医療機関番号"),
    "note": ("備考", "メモ", "注記"),
}
#: The keys of a YAML entry.
KEYS = ("medical_id", "note")
TOP_KEY = "sync_targets"
MAX_NOTE = 500
YAML_SUFFIXES = (".yaml", ".yml")
CSV_SUFFIXES = (".csv",)

_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TargetsFileError(PlatSyncError, ValueError):
    """The target file cannot be read at all (encoding, shape, header); the message says why."""


@dataclass
class TargetsFile:
    """The valid targets (code -> note, in file order), the invalid entries' errors, the file's format
    (``yaml`` or ``csv``), its encoding, and the CSV header columns that were ignored."""

    targets: dict[str, str | None] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    format: str = ""
    encoding: str = ""
    ignored_columns: list[str] = field(default_factory=list)


def read_targets(data: bytes, name: str = "", encoding: str | None = None) -> TargetsFile:
    """Parse a target list (see the module docstring); ``name`` is the file's name, whose extension says the
    format; ``encoding`` overrides the detection. :class:`TargetsFileError` if the file is refused whole."""
    try:
        text, used = decode(data, encoding)
    except MasterFileError as exc:
        raise TargetsFileError(str(exc)) from None
    suffix = PurePath(name).suffix.lower()
    if suffix in YAML_SUFFIXES:
        out = _read_yaml(text)
    elif suffix in CSV_SUFFIXES:
        out = _read_csv(text)
    else:
        out = _sniff(text, name)
    out.encoding = used
    return out


def _sniff(text: str, name: str) -> TargetsFile:
    """Read ``text`` as whichever format it looks like, or refuse it saying what was expected."""
    if _csv_header_has_code(text):
        return _read_csv(text)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        root = None
    if isinstance(root, yaml.MappingNode) and any(k.value == TOP_KEY for k, _ in root.value):
        return _read_yaml(text)
    raise TargetsFileError(f"cannot tell the format of {name or 'the file'!r}: expected a .yaml/.yml or .csv "
                           f"name, a YAML mapping with {TOP_KEY}, or a CSV header with medical_id")


# --- YAML ---------------------------------------------------------------------------------------------

def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _read_yaml(text: str) -> TargetsFile:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TargetsFileError(f"not valid YAML: {where}{problem}") from None
    if not isinstance(root, yaml.MappingNode):
        raise TargetsFileError(f"expected a YAML mapping with a {TOP_KEY} list, got "
                               + ("an empty file" if root is None else f"a {_kind(root)} on line {_line(root)}"))
    out = TargetsFile(format="yaml")
    entries: yaml.SequenceNode | None = None
    for key, value in root.value:
        if key.value != TOP_KEY:
            out.errors.append(RowError(_line(key), str(key.value), f"unknown key (expected {TOP_KEY})"))
        elif entries is not None:
            out.errors.append(RowError(_line(key), TOP_KEY, f"given twice (first on line {_line(entries)})"))
        elif not isinstance(value, yaml.SequenceNode):
            raise TargetsFileError(f"line {_line(value)}: {TOP_KEY} must be a list of entries "
                                   f"(- medical_id: \"...\"), got {_kind(value)}")
        else:
            entries = value
    if entries is None:
        raise TargetsFileError(f"the YAML mapping has no {TOP_KEY} list")
    first_line: dict[str, int] = {}
    for entry in entries.value:
        _read_entry(entry, out, first_line)
    return out


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if node.tag == _NULL_TAG:
        return "nothing"
    return f"the value {node.value!r}"


def _read_entry(entry: yaml.Node, out: TargetsFile, first_line: dict[str, int]) -> None:
    line = _line(entry)
    if not isinstance(entry, yaml.MappingNode):
        out.errors.append(RowError(line, "(entry)", f"expected a mapping with medical_id and note, got {_kind(entry)}"))
        return
    values: dict[str, yaml.Node] = {}
    bad = False
    for key, value in entry.value:
        if key.value not in KEYS:
            out.errors.append(RowError(_line(key), str(key.value), f"unknown key (expected {', '.join(KEYS)})"))
            bad = True
        elif key.value in values:
            out.errors.append(RowError(_line(key), key.value,
                                       f"given twice in one entry (first on line {_line(values[key.value])})"))
            bad = True
        else:
            values[key.value] = value
    code_node = values.get("medical_id")
    code = None
    if code_node is None:
        out.errors.append(RowError(line, "medical_id", "required, missing"))
    else:
        line = _line(code_node)
        try:
            code = _yaml_code(code_node)
        except ValueError as exc:
            out.errors.append(RowError(line, "medical_id", str(exc)))
    note = None
    if "note" in values:
        try:
            note = _yaml_note(values["note"])
        except ValueError as exc:
            out.errors.append(RowError(_line(values["note"]), "note", str(exc)))
            bad = True
    if code is None or bad:
        return
    _add(out, first_line, code, note, line)


def _yaml_code(node: yaml.Node) -> str:
    """The valid code a YAML value holds; ``ValueError`` saying what is wrong (quotes, emptiness, code)."""
    if not isinstance(node, yaml.ScalarNode):
        raise ValueError(f"expected a code in quotes (\"1312345678\"), got a {_kind(node)}")
    if node.tag == _NULL_TAG:
        raise ValueError("required, empty")
    if node.tag == _INT_TAG:
        number = SafeConstructor().construct_yaml_int(node)
        if str(number) != node.value or len(node.value) != 10:
            raise ValueError(f"write the code in quotes (\"{node.value}\"): unquoted, YAML reads it as the "
                             f"number {number}")
    elif node.tag != _STR_TAG:
        raise ValueError(f"write the code in quotes (\"{node.value}\"): unquoted, YAML reads it as a "
                         f"{node.tag.rsplit(':', 1)[-1]}, not text")
    return _code(node.value)


def _yaml_note(node: yaml.Node) -> str | None:
    """A note as written (whatever YAML would make of it), None when empty; ``ValueError`` if not text."""
    if not isinstance(node, yaml.ScalarNode):
        raise ValueError(f"expected text, got a {_kind(node)}")
    return None if node.tag == _NULL_TAG else _note(node.value)


# --- CSV ----------------------------------------------------------------------------------------------

def _known() -> dict[str, str]:
    return {alias: column for column, aliases in HEADERS.items() for alias in (column, *aliases)}


def _csv_header_has_code(text: str) -> bool:
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:
        return False
    return any(_known().get(cell.strip()) == "medical_id" for cell in header)


def _read_csv(text: str) -> TargetsFile:
    header, reader = csv_header(text, TargetsFileError, "the file is empty: expected a header row with medical_id")
    known = _known()
    positions: dict[int, str] = {}
    out = TargetsFile(format="csv")
    for i, cell in enumerate(header):
        column = known.get(cell.strip())
        if column is None or column in positions.values():
            out.ignored_columns.append(cell)
        else:
            positions[i] = column
    if "medical_id" not in positions.values():
        raise TargetsFileError(f"the header lacks medical_id (as {' or '.join(('medical_id', *HEADERS['medical_id']))})"
                               f"; it has {', '.join(header) or 'nothing'}")
    first_line: dict[str, int] = {}
    for line, cells in csv_rows(reader, out.errors):
        _read_csv_row(line, cells, positions, out, first_line)
    return out


def _read_csv_row(line: int, cells: list[str], positions: dict[int, str], out: TargetsFile,
                  first_line: dict[str, int]) -> None:
    values = {column: (cells[i].strip() if i < len(cells) else "") for i, column in positions.items()}
    code = note = None
    bad = False
    if not values["medical_id"]:
        out.errors.append(RowError(line, "medical_id", "required, empty"))
        bad = True
    else:
        try:
            code = _code(values["medical_id"])
        except ValueError as exc:
            out.errors.append(RowError(line, "medical_id", str(exc)))
            bad = True
    try:
        note = _note(values.get("note", ""))
    except ValueError as exc:
        out.errors.append(RowError(line, "note", str(exc)))
        bad = True
    if not bad and code is not None:
        _add(out, first_line, code, note, line)


# --- shared -------------------------------------------------------------------------------------------

def _code(value: str) -> str:
    try:
        return parse_code(value).code
    except InvalidCode as exc:
        raise ValueError(str(exc)) from None


def _note(value: str) -> str | None:
    value = value.strip()
    if len(value) > MAX_NOTE:
        raise ValueError(f"longer than {MAX_NOTE} characters ({len(value)})")
    return value or None


def _add(out: TargetsFile, first_line: dict[str, int], code: str, note: str | None, line: int) -> None:
    if code in first_line:
        out.errors.append(RowError(line, "medical_id", f"code {code} already on line {first_line[code]}"))
        return
    first_line[code] = line
    out.targets[code] = note


# --- the difference with the table ---------------------------------------------------------------------

@dataclass
class TargetsDiff:
    """What makes the table equal to the file: targets added (code -> note), removed (codes), and those whose
    note changes (code -> new note; ``old_notes`` keeps the table's, for :meth:`lines`)."""

    added: dict[str, str | None] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    note_changed: dict[str, str | None] = field(default_factory=dict)
    old_notes: dict[str, str | None] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True if the table already equals the file."""
        return not (self.added or self.removed or self.note_changed)

    def summary(self) -> str:
        """``N added, N removed, N note changed``."""
        return f"{len(self.added)} added, {len(self.removed)} removed, {len(self.note_changed)} note changed"

    def lines(self) -> list[str]:
        """One human-readable line per change, in code order: ``+ CODE  note``, ``- CODE``,
        ``~ CODE  note: 'old' -> 'new'``."""
        out: list[tuple[str, str]] = []
        for code, note in self.added.items():
            out.append((code, f"+ {code}  {note}" if note else f"+ {code}"))
        for code in self.removed:
            out.append((code, f"- {code}"))
        for code, note in self.note_changed.items():
            out.append((code, f"~ {code}  note: {self.old_notes.get(code)!r} -> {note!r}"))
        return [line for _, line in sorted(out)]


def diff_targets(current: Mapping[str, str | None], wanted: Mapping[str, str | None]) -> TargetsDiff:
    """The changes that make ``current`` (the table: code -> note) equal to ``wanted`` (the file), in code
    order. An empty note and no note are the same."""
    out = TargetsDiff()
    for code in sorted(wanted):
        note = wanted[code] or None
        if code not in current:
            out.added[code] = note
        elif (current[code] or None) != note:
            out.note_changed[code] = note
            out.old_notes[code] = current[code] or None
    out.removed = sorted(set(current) - set(wanted))
    return out
