"""Which node each process of a running network belongs to, and figures summed per node.

A network's processes are found by their pid files (``<dir>/run/<name>.pid``, infra/local/process.py)
in every run directory of its data dir: the shared parts in ``<data dir>/run`` (the cloud's
PostgreSQL, the broker, the link proxy) and each home link's two-party stack in
``<data dir>/links/<hospital>/run``, plus whatever else a later version runs there (a regional
server), so the benchmark needs no list of process kinds.

A link's stack names its processes by side and direction (``capture-local``,
``worker-remote_to_local``); they are renamed to the plan's names
(:mod:`streams.topology.plan`: ``capture-hosp-a``, ``worker-remote.hosp-a_to_hosp-a``) so that names
are unique across links and :meth:`NetworkPlan.node_of_process` places them. What the plan does not
name is placed by the endpoint, route or node its name ends with (``keycloak-remote.hosp-a``: the
cloud); the broker and the link proxy run in the cloud (in production: the cloud's Kafka cluster).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from infra.local.process import read_pid
from streams.core.model import SIDES
from streams.topology.plan import NetworkPlan

#: Shared processes without a node in their name: they run in the cloud (the root). The sharing service
#: stand-in is the embedded stack's stand-in for an outside service the cloud submits to (docs/fhir.md).
CLOUD_INFRASTRUCTURE = ("broker", "link", "fhir-standin")
#: The node kinds figures are summed by.
NODE_KINDS = ("hospital", "cloud", "regional")
UNATTRIBUTED = "unattributed"
ROUTE_SEPARATOR = "_to_"


def find_run_dirs(data_dir: Path, max_depth: int = 3) -> list[Path]:
    """Every ``run`` directory (of pid files) at most ``max_depth`` levels below ``data_dir``.

    Walked once after start-up: PostgreSQL's data directories are not entered (they hold thousands
    of files and never a ``run`` directory of ours)."""
    found: list[Path] = []
    base_depth = len(data_dir.parts)
    for root, dirs, _files in os.walk(data_dir):
        here = Path(root)
        if here.name == "run":
            found.append(here)
            dirs[:] = []
            continue
        if len(here.parts) - base_depth >= max_depth or (here / "PG_VERSION").exists():
            dirs[:] = []
    return sorted(found)


def plan_name(plan: NetworkPlan, hospital: str | None, name: str) -> str:
    """The plan's name of process ``name`` of hospital ``hospital``'s link stack (``None``: a shared process,
    already named by the plan, or not a plan process at all)."""
    if hospital is None:
        return name
    kind, sep, rest = name.partition("-")
    if not sep:  # no side or route in the name: the hospital's own (its subscriber), or not a plan process
        return f"{name}-{hospital}" if f"{name}-{hospital}" in plan.subscription_processes() else name
    sides = dict(zip(SIDES, plan.home_endpoints(hospital), strict=True))
    if rest in sides:
        return f"{kind}-{sides[rest]}"
    if ROUTE_SEPARATOR in rest:
        source, _, target = rest.partition(ROUTE_SEPARATOR)
        return f"{kind}-{sides.get(source, source)}{ROUTE_SEPARATOR}{sides.get(target, target)}"
    return f"{kind}-{rest}.{hospital}"


def node_of(plan: NetworkPlan, process: str) -> str:
    """The node ``process`` (a plan name, see :func:`plan_name`) runs on, or ``unattributed``."""
    try:
        return plan.node_of_process(process)
    except KeyError:
        pass
    topology = plan.topology
    if process in CLOUD_INFRASTRUCTURE:
        return topology.root.id
    _kind, _, rest = process.partition("-")
    # A worker runs beside the stores it writes: its route's target.
    for candidate in (rest, rest.rpartition(ROUTE_SEPARATOR)[2]):
        try:
            return plan.endpoint(candidate).node
        except KeyError:
            pass
        try:
            return topology.node(candidate).id
        except KeyError:
            pass
    if rest == "remote":  # a shared process named by the two-party side the cloud plays (pg-remote)
        return topology.root.id
    return UNATTRIBUTED


def node_kind(plan: NetworkPlan, node: str) -> str:
    """``hospital``, ``cloud`` (the root), ``regional`` (another common node) or ``unattributed``."""
    topology = plan.topology
    if node == topology.root.id:
        return "cloud"
    try:
        return "hospital" if topology.node(node).kind == "hospital" else "regional"
    except KeyError:
        return UNATTRIBUTED


def hospital_of_run_dir(run_dir: Path, links: Mapping[str, Path]) -> str | None:
    """The hospital whose link stack keeps its pid files in ``run_dir`` (``links``: hospital -> data dir)."""
    for hospital, data_dir in links.items():
        if run_dir.parent == data_dir:
            return hospital
    return None


class NetworkProcesses:
    """The running processes of a network by plan name (a callable for :mod:`bench.cpu` and :mod:`bench.memory`)."""

    def __init__(self, plan: NetworkPlan, data_dir: Path, links: Mapping[str, Path]) -> None:
        self.plan = plan
        self.data_dir = data_dir
        self.links = dict(links)
        self.run_dirs: list[Path] = []
        self.nodes: dict[str, str] = {}  # every process seen -> its node

    def refresh(self) -> None:
        """Find the run directories again (after start-up: processes started since are seen)."""
        self.run_dirs = find_run_dirs(self.data_dir)

    def __call__(self) -> dict[str, int | None]:
        """``{plan name: pid or None}`` of every pid file."""
        found: dict[str, int | None] = {}
        for run_dir in self.run_dirs:
            hospital = hospital_of_run_dir(run_dir, self.links)
            for pid_file in sorted(run_dir.glob("*.pid")):
                name = plan_name(self.plan, hospital, pid_file.stem)
                found[name] = read_pid(run_dir.parent, pid_file.stem)
                if name not in self.nodes:
                    self.nodes[name] = node_of(self.plan, name)
        return found


def sum_by_node(values: Mapping[str, float], nodes: Mapping[str, str]) -> dict[str, float]:
    """``values`` per process summed per node (a process of no known node: ``unattributed``), largest first."""
    totals: dict[str, float] = {}
    for process, value in values.items():
        if process == "total":
            continue
        node = nodes.get(process, UNATTRIBUTED)
        totals[node] = totals.get(node, 0.0) + value
    return {node: round(v, 2) for node, v in sorted(totals.items(), key=lambda item: -item[1])}


def sum_by_kind(per_node: Mapping[str, float], plan: NetworkPlan) -> dict[str, float]:
    """Per-node values summed per node kind (:data:`NODE_KINDS`, and ``unattributed`` if any)."""
    totals = dict.fromkeys(NODE_KINDS, 0.0)
    for node, value in per_node.items():
        kind = node_kind(plan, node)
        totals[kind] = round(totals.get(kind, 0.0) + value, 2)
    return totals


def processes_by_node(nodes: Mapping[str, str], names: Iterable[str]) -> dict[str, list[str]]:
    """The processes of ``names`` grouped by their node."""
    grouped: dict[str, list[str]] = {}
    for name in sorted(names):
        grouped.setdefault(nodes.get(name, UNATTRIBUTED), []).append(name)
    return grouped
