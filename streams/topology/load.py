"""Load and validate a topology file (TOML), or build the default topology in code.

:func:`load_topology` either returns a :class:`~streams.topology.model.Topology` or raises one
:class:`TopologyError` listing *all* faults found, one :class:`TopologyFault` each (file, dotted
path such as ``nodes[2].parent``, what was expected), so an operator fixes the file in one pass.

Number ranges: in the default topology (hospital ``local`` under the cloud ``remote``) a node that
declares no range gets today's (``connectors/stores/serials.py``). Every node of any other
topology must declare both ranges explicitly: a derived range would silently change when a node
is added or reordered, and numbers already drawn would then collide.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.core.errors import FileFault, FileFaultsError
from streams.topology.model import (
    DEFAULT_HOSPITAL_ID,
    DEFAULT_NUMBERS,
    DEFAULT_ROOT_ID,
    NODE_KINDS,
    SERIAL_WIDTHS,
    Node,
    NumberRange,
    Topology,
)

#: A node id becomes part of Kafka topic names and database names: keep it short and plain.
NODE_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
TOP_LEVEL_KEYS: tuple[str, ...] = ("nodes",)
NODE_KEYS: tuple[str, ...] = ("id", "kind", "parent", "institution", *SERIAL_WIDTHS)
#: 医療機関コード: 2-digit prefecture (01-47), 1-digit 点数表 code (1 医科, 3 歯科, 4 薬局), 7 digits.
INSTITUTION_FORMAT = ("a 10-digit 医療機関コード as a string: 2-digit prefecture 01-47, "
                      "点数表 code 1 (医科), 3 (歯科) or 4 (薬局), 7-digit number")
SERIAL_LABELS: dict[str, str] = {"patient_numbers": "patient numbers", "document_numbers": "document numbers"}
DEFAULT_SHAPE = {(DEFAULT_ROOT_ID, "common", None), (DEFAULT_HOSPITAL_ID, "hospital", DEFAULT_ROOT_ID)}

_NODE_ID_RE = re.compile(NODE_ID_PATTERN)
_INSTITUTION_RE = re.compile(r"[0-9]{10}")
_TOML_POSITION_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


#: One problem in a topology file: the file, the dotted key path inside it, and what is wrong.
TopologyFault = FileFault


class TopologyError(FileFaultsError):
    """A topology file is invalid; ``faults`` lists every problem found."""


def default_topology() -> Topology:
    """Today's deployment: the hospital ``local`` under the cloud ``remote``, with today's ranges.

    ``infra/topologies/default.toml`` describes the same topology (a unit test keeps them equal).
    """
    return Topology(nodes=(
        Node(DEFAULT_ROOT_ID, "common", None, None, **DEFAULT_NUMBERS[DEFAULT_ROOT_ID]),
        Node(DEFAULT_HOSPITAL_ID, "hospital", DEFAULT_ROOT_ID, None, **DEFAULT_NUMBERS[DEFAULT_HOSPITAL_ID]),
    ))


def load_topology(path: Path) -> Topology:
    """Load and validate a topology file; raises :class:`TopologyError` carrying every fault."""
    file = str(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise TopologyError([TopologyFault(file, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise TopologyError([TopologyFault(file, "", f"not UTF-8 text: {exc.reason}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION_RE.search(message)
        where = f"line {match.group(1)}, column {match.group(2)}" if match else ""
        raise TopologyError([TopologyFault(file, where, f"invalid TOML: {message}")]) from exc
    return _Validator(file).build(data)


def _names(values: Sequence[str]) -> str:
    return ", ".join(values)


@dataclass
class _Entry:
    """What could be read of one ``[[nodes]]`` table; ``None`` where the value is missing or invalid."""

    index: int
    id: str | None = None
    kind: str | None = None
    parent: str | None = None
    institution: str | None = None
    numbers: dict[str, NumberRange] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)  # the keys the file gives, valid or not
    defaulted: set[str] = field(default_factory=set)  # serials given their default range

    @property
    def path(self) -> str:
        return f"nodes[{self.index}]"

    @property
    def name(self) -> str:
        return repr(self.id) if self.id else self.path

    @property
    def label(self) -> str:
        return f"{self.path} ({self.id!r})" if self.id else self.path


class _Validator:
    """Walks the parsed TOML, collecting faults; builds the Topology only when there are none."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.faults: list[TopologyFault] = []

    def fault(self, path: str, message: str) -> None:
        self.faults.append(TopologyFault(self.file, path, message))

    def build(self, data: dict[str, Any]) -> Topology:
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.fault(key, f"unknown top-level key; expected one of {_names(TOP_LEVEL_KEYS)}")
        raw = data.get("nodes")
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            got = "nothing" if "nodes" not in data else type(raw).__name__
            self.fault("nodes", f"expected an array of tables [[nodes]], got {got}")
            raise TopologyError(self.faults)
        entries = [self.check_node(index, item) for index, item in enumerate(raw)]
        by_id = self.check_ids(entries)
        self.check_parents(entries, by_id)
        self.check_root(entries)
        in_cycles = self.check_cycles(entries, by_id)
        self.check_hospitals(entries, by_id, in_cycles)
        self.check_institutions(entries)
        self.check_numbers(entries)
        if self.faults:
            raise TopologyError(self.faults)
        nodes = tuple(
            Node(e.id or "", e.kind or "", e.parent, e.institution, **e.numbers) for e in entries
        )
        return Topology(nodes=nodes, path=self.file)

    def check_node(self, index: int, item: dict[str, Any]) -> _Entry:
        """The fields of one node, each checked on its own."""
        entry = _Entry(index, keys=set(item))
        path = entry.path
        for key in item:
            if key not in NODE_KEYS:
                self.fault(f"{path}.{key}", f"unknown key; expected one of {_names(NODE_KEYS)}")
        for key in ("id", "kind"):
            if key not in item:
                self.fault(path, f"missing {key!r}")
        node_id = item.get("id")
        if "id" in item:
            if isinstance(node_id, str) and _NODE_ID_RE.match(node_id):
                entry.id = node_id
            else:
                self.fault(f"{path}.id", f"expected lowercase letters, digits, '-' or '_', starting with a letter, "
                                         f"at most 32 characters ({NODE_ID_PATTERN}; the id becomes part of Kafka "
                                         f"topic names and database names), got {node_id!r}")
        kind = item.get("kind")
        if "kind" in item:
            if kind in NODE_KINDS:
                entry.kind = kind
            else:
                self.fault(f"{path}.kind", f"expected one of {_names(NODE_KINDS)}, got {kind!r}")
        if "parent" in item:
            parent = item["parent"]
            if isinstance(parent, str):
                entry.parent = parent
            else:
                self.fault(f"{path}.parent", f"expected the id of a common node (a string), got {parent!r}")
                entry.parent = ""  # given but unusable: not a root either
        if "institution" in item:
            entry.institution = self.check_institution(f"{path}.institution", item["institution"])
        for serial in SERIAL_WIDTHS:
            if serial in item:
                value = self.check_range(f"{path}.{serial}", serial, item[serial])
                if value is not None:
                    entry.numbers[serial] = value
        return entry

    def check_institution(self, path: str, value: Any) -> str | None:
        """A well-formed 医療機関コード, or ``None`` after reporting why it is not one."""
        if isinstance(value, int) and not isinstance(value, bool):
            why = " (an integer: quote it, or a leading zero is lost)"
        elif not isinstance(value, str) or not _INSTITUTION_RE.fullmatch(value):
            why = ""
        elif not 1 <= int(value[:2]) <= 47:
            why = f" (prefecture code {value[:2]} is not 01-47)"
        elif value[2] not in "134":
            why = f" (点数表 code {value[2]} is not 1, 3 or 4)"
        else:
            return value
        self.fault(path, f"expected {INSTITUTION_FORMAT}, got {value!r}{why}")
        return None

    def check_range(self, path: str, serial: str, value: Any) -> NumberRange | None:
        """``[lo, hi]`` within the serial's width, or ``None`` after reporting what was expected."""
        top = 10 ** SERIAL_WIDTHS[serial] - 1
        ints = isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
        if ints and 1 <= value[0] <= value[1] <= top:
            return NumberRange(value[0], value[1])
        self.fault(path, f"expected [lo, hi]: two integers with 1 <= lo <= hi <= {top} "
                         f"({SERIAL_WIDTHS[serial]}-digit {SERIAL_LABELS[serial]}), got {value!r}")
        return None

    def check_ids(self, entries: list[_Entry]) -> dict[str, _Entry]:
        """Ids are unique; a duplicate is left out of every later check."""
        by_id: dict[str, _Entry] = {}
        for entry in entries:
            if entry.id is None:
                continue
            first = by_id.get(entry.id)
            if first is not None:
                self.fault(f"{entry.path}.id", f"duplicate node id {entry.id!r} (already used by {first.path})")
                entry.id = None
            else:
                by_id[entry.id] = entry
        return by_id

    def check_parents(self, entries: list[_Entry], by_id: dict[str, _Entry]) -> None:
        """A parent exists and is a common node (hospitals cannot have children)."""
        commons = [e.id for e in entries if e.kind == "common" and e.id]
        for entry in entries:
            if not entry.parent or entry.parent == entry.id:
                continue  # missing (a root), unusable (already a fault) or itself (a cycle)
            parent = by_id.get(entry.parent)
            if parent is None:
                self.fault(f"{entry.path}.parent", f"unknown node {entry.parent!r}; expected the id of a "
                                                   f"common node: {_names(commons)}")
            elif parent.kind == "hospital":
                self.fault(f"{entry.path}.parent", f"{entry.parent!r} ({parent.path}) is a hospital; hospitals "
                                                   f"cannot have children, expected a common node: {_names(commons)}")

    def check_root(self, entries: list[_Entry]) -> None:
        """Exactly one node has no parent, and it is a common node: the cloud."""
        roots: list[_Entry] = []
        for entry in entries:
            if entry.id is None or entry.parent is not None:
                continue
            if entry.kind == "hospital":
                self.fault(entry.path, "missing 'parent': a hospital cannot be the root (the node without "
                                       "parent is the cloud, kind \"common\"); give it its common node as parent")
            else:
                roots.append(entry)
        if not roots:
            self.fault("nodes", "no root: exactly one node, the cloud (kind \"common\"), must have no parent")
        elif len(roots) > 1:
            self.fault("nodes", f"exactly one node may have no parent (the root: the cloud), found {len(roots)}: "
                                f"{_names([e.label for e in roots])}")

    def check_cycles(self, entries: list[_Entry], by_id: dict[str, _Entry]) -> set[str]:
        """No node is its own ancestor; returns the ids of the nodes on a cycle."""
        on_cycle: set[str] = set()
        for entry in entries:
            if entry.id is None or entry.id in on_cycle:
                continue
            chain = [entry.id]
            parent = by_id.get(entry.parent or "")
            while parent is not None and parent.id not in chain and parent.id not in on_cycle:
                chain.append(parent.id or "")
                parent = by_id.get(parent.parent or "")
            if parent is None or parent.id != entry.id:
                continue  # reaches a root, a bad parent, or a cycle that does not contain this node
            on_cycle.update(chain)
            self.fault(f"{entry.path}.parent", f"cycle: {' -> '.join([*chain, entry.id])} "
                                               "(a node cannot be its own ancestor)")
        return on_cycle

    def check_hospitals(self, entries: list[_Entry], by_id: dict[str, _Entry], in_cycles: set[str]) -> None:
        """At least one hospital; every regional server has a hospital below it."""
        hospitals = [e for e in entries if e.kind == "hospital" and e.id]
        if not hospitals:
            self.fault("nodes", "no hospital: a topology needs at least one node with kind = \"hospital\"")
            return
        served: set[str] = set()
        for hospital in hospitals:
            parent = by_id.get(hospital.parent or "")
            while parent is not None and parent.id not in served and parent.id not in in_cycles:
                served.add(parent.id or "")
                parent = by_id.get(parent.parent or "")
        for entry in entries:
            if entry.kind == "common" and entry.id and entry.parent and entry.id not in served | in_cycles:
                self.fault(entry.path, f"common node {entry.id!r} has no hospital below it: a regional server "
                                       "only receives its hospitals' replicas (add hospitals under it or remove it)")

    def check_institutions(self, entries: list[_Entry]) -> None:
        """Only hospitals have an institution code, and each institution has one home node."""
        owner: dict[str, _Entry] = {}
        for entry in entries:
            if entry.institution is None:
                continue
            if entry.kind == "common":
                self.fault(f"{entry.path}.institution", "only hospital nodes have an institution code (the cloud "
                                                        "and regional servers hold records of many institutions)")
            elif entry.institution in owner:
                self.fault(f"{entry.path}.institution",
                           f"institution {entry.institution} already belongs to {owner[entry.institution].label}; "
                           "an institution has one home node")
            else:
                owner[entry.institution] = entry

    def check_numbers(self, entries: list[_Entry]) -> None:
        """Every node has both ranges (defaults only in the default topology); no two nodes overlap."""
        default = len(entries) == len(DEFAULT_SHAPE) and {(e.id, e.kind, e.parent) for e in entries} == DEFAULT_SHAPE
        for entry in entries:
            for serial, width in SERIAL_WIDTHS.items():
                if serial in entry.keys:
                    continue  # given: valid, or already reported
                if default and entry.id in DEFAULT_NUMBERS:
                    entry.numbers[serial] = DEFAULT_NUMBERS[entry.id][serial]
                    entry.defaulted.add(serial)
                else:
                    self.fault(entry.path, f"missing {serial!r}: outside the default topology (hospital "
                                           f"{DEFAULT_HOSPITAL_ID!r} under the cloud {DEFAULT_ROOT_ID!r}) every node "
                                           f"declares its ranges, [lo, hi] with 1 <= lo <= hi <= {10 ** width - 1}")
        for serial in SERIAL_WIDTHS:
            for later_index, later in enumerate(entries):
                for earlier in entries[:later_index]:
                    a, b = earlier.numbers.get(serial), later.numbers.get(serial)
                    if a is None or b is None or not a.overlaps(b):
                        continue
                    mine = "its default range " if serial in later.defaulted else ""
                    theirs = "default " if serial in earlier.defaulted else ""
                    self.fault(f"{later.path}.{serial}",
                               f"{mine}{b} overlaps the {theirs}{serial} {a} of {earlier.label}: the ranges of "
                               f"{earlier.name} and {later.name} must be disjoint, or both draw the same numbers")
