"""A node's number ranges in the settings: the inclusive ``(lo, hi)`` of its patient numbers (9 digits)
and document numbers (10 digits), as ``[nodes.<id>] patient_numbers = [lo, hi]`` in the settings file.

A node that sets none draws from its side's two-site default (``connectors/stores/serials.py``). A
network gives each node the range of its topology (``docs/topology.md``,
:meth:`streams.topology.model.Topology.home_link_numbers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.topology.model import DEFAULT_NUMBERS, SERIAL_WIDTHS

#: The node settings holding a number range: field name -> digits of the printed number.
RANGE_FIELDS: dict[str, int] = dict(SERIAL_WIDTHS)


def number_range(field: str, raw: Any) -> tuple[int, int]:
    """``raw`` (a TOML array or a tuple ``[lo, hi]``) as the range of ``field`` (a key of :data:`RANGE_FIELDS`).

    Raises ``ValueError`` saying what is expected: two integers with ``1 <= lo <= hi <= 9...9`` (the
    serial's width in digits).
    """
    width = RANGE_FIELDS[field]
    top = 10**width - 1
    ints = isinstance(raw, list | tuple) and len(raw) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in raw)
    if not ints or not 1 <= raw[0] <= raw[1] <= top:
        raise ValueError(f"{field} expects [lo, hi], two integers with 1 <= lo <= hi <= {top} "
                         f"({width}-digit numbers), got {raw!r}")
    return int(raw[0]), int(raw[1])


def node_range(node_id: str, node: Any, field: str) -> tuple[int, int] | None:
    """The range of ``field`` a node draws from: its configured one (``node.<field>``, a
    :class:`~streams.runtime.settings.NodeSettings`), else the two-site default of ``local`` and
    ``remote``; None for another node without one."""
    configured: tuple[int, int] | None = getattr(node, field)
    if configured is not None:
        return configured
    default = DEFAULT_NUMBERS.get(node_id, {}).get(field)
    return (default.lo, default.hi) if default is not None else None


def overlapping_ranges(nodes: Mapping[str, Any]) -> list[str]:
    """Why the nodes' ranges are unsafe: one line per two nodes whose ranges of a serial overlap (their
    numbers would collide after convergence); empty when every range is disjoint from the others."""
    faults = []
    for field in RANGE_FIELDS:
        ranges = [(node_id, node_range(node_id, node, field)) for node_id, node in nodes.items()]
        known = [(node_id, r) for node_id, r in ranges if r is not None]
        for i, (a, (a_lo, a_hi)) in enumerate(known):
            for b, (b_lo, b_hi) in known[i + 1:]:
                if a_lo <= b_hi and b_lo <= a_hi:
                    faults.append(f"nodes.{a}.{field} [{a_lo}, {a_hi}] overlaps nodes.{b}.{field} [{b_lo}, {b_hi}]: "
                                  "numbers drawn by one node would be drawn again by the other; give every node "
                                  "a range of its own (docs/topology.md, 'Number ranges and capacity')")
    return faults
