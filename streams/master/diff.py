"""The difference between the master table and an imported file (pure): only real changes are written.

An unchanged re-import therefore writes nothing and produces no change event. A row counts as changed when
any imported column differs; the columns the file does not carry are compared as empty (the file is the whole
master: what it leaves out is cleared).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from streams.master.csv_input import COLUMNS, Row


@dataclass
class MasterDiff:
    """What an import changes: rows new, changed (the new row), and codes gone from the file."""

    new: list[Row] = field(default_factory=list)
    changed: list[Row] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True if the import changes nothing."""
        return not (self.new or self.changed or self.gone)

    def summary(self) -> str:
        """``N new, N changed, N gone``."""
        return f"{len(self.new)} new, {len(self.changed)} changed, {len(self.gone)} gone"


def _same(a: Row, b: Row) -> bool:
    return all(a.get(c) == b.get(c) for c in COLUMNS)


def diff_master(current: Mapping[str, Row], incoming: Mapping[str, Row], *, remove_missing: bool = True) -> MasterDiff:
    """The changes that make ``current`` (the table, by code) equal to ``incoming`` (the file, by code), in code
    order; with ``remove_missing`` False, codes missing from the file are kept (a partial file)."""
    out = MasterDiff()
    for code in sorted(incoming):
        row, had = incoming[code], current.get(code)
        if had is None:
            out.new.append(row)
        elif not _same(had, row):
            out.changed.append(row)
    if remove_missing:
        out.gone = sorted(set(current) - set(incoming))
    return out
