"""``platsync status`` on a network: one row per node and one row per link, above each link's own status.

A node's row says which of its processes run (a hospital: its side of its home link; the cloud: its
PostgreSQL, its FHIR worker and the cloud side of every home link; a regional server: its PostgreSQL and the
replica workers feeding it) and, for a node with stores, the age and name of the latest backup held of it (a
hospital: its own; the cloud: each hospital's stores there, ``<cloud>.<hospital>``), from
:func:`streams.cli.status.latest_backups` over the network's ``backup_dir``, where ``platsync backup create --node
N`` keeps them. A link's row says whether it is cut and its lag: the largest lag of its routes' source stores, from
:func:`streams.cli.status.collect_status` (source positions, never the broker's watermark).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from infra.local.fhir_runtime import fhir_process_names
from infra.local.link import link_is_up
from infra.local.network import Network
from infra.local.process import read_pid
from infra.local.sharing_runtime import declarer_name
from streams.cli.status import latest_backups
from streams.core.model import ROUTES, replica_route
from streams.ops.backup_format import describe_age


def _side_of(process: str) -> str:
    """Which side of a home link a link-stack process belongs to (a worker runs beside what it writes)."""
    kind, _, name = process.partition("-")
    if kind == "worker":
        return ROUTES[name][1] if name in ROUTES else "replica"
    return name


def _lag(status: dict[str, Any], routes: list[str]) -> tuple[int, int]:
    """(largest lag in ms, stores with a lag) over ``routes`` of one link's status."""
    stores = [s for r in routes for s in status["routes"].get(r, {}).get("stores", {}).values()]
    return max((s["lag_ms"] for s in stores), default=0), sum(1 for s in stores if s["lag_bytes"] > 0)


def backup_nodes(network: Network, hospitals: list[str]) -> dict[str, list[str]]:
    """The backups' node names on each network node: a hospital's own, and on the cloud each hospital's stores
    there (``<cloud>.<hospital>``, as ``platsync backup create --node`` names them; streams/cli/network.py)."""
    root = network.topology.root.id
    return {root: [f"{root}.{h}" for h in hospitals], **{h: [h] for h in hospitals}}


def network_overview(network: Network, statuses: dict[str, dict[str, Any]],
                     now: datetime | None = None) -> dict[str, Any]:
    """Nodes and links of a running network with their state (JSON-able); ``statuses``: each link's status.

    Each node with stores gets ``backups`` (:func:`backup_nodes`: name and age at ``now`` of the latest of each, or
    None); each link's status gets its two nodes' in place of its own (a link's data dir holds no backups: they are
    in the network's ``backup_dir``), so that its section of ``platsync status`` says the same."""
    root = network.topology.root.id
    nodes: dict[str, dict[str, Any]] = {}

    def add(node: str, process: str, running: bool) -> None:
        entry = nodes.setdefault(node, {"running": [], "down": []})
        entry["running" if running else "down"].append(process)

    add(root, "pg-remote", read_pid(network.settings.data_dir, "pg-remote") is not None)
    for region in network.regions:
        add(region, f"pg-{region}", read_pid(network.settings.data_dir, f"pg-{region}") is not None)
    for hospital, status in statuses.items():
        for process, state in status["processes"].items():
            side = _side_of(process)
            if process == "pg-remote":
                continue  # the cloud's server, shared: counted once above
            node = {"local": hospital, "remote": root}.get(side)
            if side == "replica":
                node = process.removeprefix(f"worker-{replica_route('')}")
            if node is not None:
                add(node, f"{process}@{hospital}" if node != hospital else process, state["running"])
    if network.plan.subscription_processes():  # subscriptions (docs/sharing.md): run beside the links' stacks
        add(root, "fanout", read_pid(network.settings.data_dir, "fanout") is not None)
        add(root, "indexer", read_pid(network.settings.data_dir, "indexer") is not None)
        for server in network.index_servers():
            add(server, declarer_name(server), read_pid(network.settings.data_dir, declarer_name(server)) is not None)
        for hospital in statuses:
            add(hospital, "subscriber", read_pid(network.link(hospital).data_dir, "subscriber") is not None)
    for name in fhir_process_names(network.settings):  # the cloud's FHIR worker and stand-in (docs/fhir.md)
        add(root, name, read_pid(network.settings.data_dir, name) is not None)
    for node, names in backup_nodes(network, list(statuses)).items():
        nodes.setdefault(node, {"running": [], "down": []})["backups"] = latest_backups(network.settings, names, now)
    for hospital, status in statuses.items():
        status["backups"] = {"local": nodes[hospital]["backups"][hospital],
                             "remote": nodes[root]["backups"][f"{root}.{hospital}"]}
    links: dict[str, dict[str, Any]] = {}
    for hospital, status in statuses.items():
        lag_ms, lagging = _lag(status, list(ROUTES))
        links[f"home.{hospital}"] = {"up": link_is_up(network.link(hospital)), "lag_ms": lag_ms,
                                     "stores_behind": lagging}
        for region in network.regions_above(hospital):
            lag_ms, lagging = _lag(status, [replica_route(region)])
            links[f"replica.{hospital}.{region}"] = {"up": link_is_up(network.region_gate(region)),
                                                     "lag_ms": lag_ms, "stores_behind": lagging}
    return {"nodes": nodes, "links": links}


def render_overview(network: Network, overview: dict[str, Any]) -> str:
    """The overview as text: a row per node (in tree order), then a row per link."""
    lines = [f"network {network.topology.path or 'topology'}: {len(overview['nodes'])} nodes, "
             f"{len(overview['links'])} links"]
    for _depth, node in network.topology.walk():
        entry = overview["nodes"].get(node.id)
        if entry is None:
            continue
        total = len(entry["running"]) + len(entry["down"])
        state = "up" if not entry["down"] else f"DEGRADED, down: {', '.join(entry['down'])}"
        lines.append(f"node {node.id:24} {node.kind:8} {len(entry['running'])}/{total} processes {state}")
        if entry.get("backups"):
            lines.append("     backups " + "  ".join(
                f"{name}: " + (f"{describe_age(b['age_s'])} ago ({b['name']})" if b
                               else f"none ('platsync backup create --node {name}')")
                for name, b in entry["backups"].items()))
    for name, link in overview["links"].items():
        state = "up" if link["up"] else "CUT"
        behind = f"{link['stores_behind']} store(s) behind" if link["stores_behind"] else "synced"
        lines.append(f"link {name:24} {state:4} lag {link['lag_ms']:>7} ms  {behind}")
    return "\n".join(lines)
