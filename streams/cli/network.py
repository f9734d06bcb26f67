"""The command line over a network (``platsync up --topology FILE``): nodes, links and their stacks.

A network's data dir holds one two-party stack per home link (infra/local/network.py). Commands that
act on one node resolve it here to that link's settings and side: a hospital id is the ``local`` side
of its home link; ``<cloud>.<hospital>`` (``remote.hosp-a``) is that institution's stores in the cloud,
the ``remote`` side of the same link. Without a network, the nodes are ``local`` and ``remote``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from streams.core.errors import PlatSyncError
from streams.core.model import SIDES
from streams.runtime.settings import Settings, load_settings
from streams.topology.load import TopologyError, load_topology


class UnknownNodeError(PlatSyncError, ValueError):
    """A ``--node`` names no node of the running topology."""


def _nodes(settings: Settings) -> dict[str, tuple[Settings, str]]:
    """Every node name ``--node`` accepts here -> (its two-party settings, its side)."""
    # deferred: the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from infra.local.network import Network, is_network

    if not is_network(settings.data_dir):
        return {side: (settings, side) for side in SIDES}
    network = Network.load(settings)
    root = network.topology.root.id
    nodes: dict[str, tuple[Settings, str]] = {}
    for hospital, link in network.all_links.items():  # one that left too: the cloud keeps its stores
        nodes[hospital] = (link, "local")
        nodes[f"{root}.{hospital}"] = (link, "remote")
    return nodes


def resolve_node(settings: Settings, node: str) -> tuple[Settings, str]:
    """(the two-party settings, the side) that ``node`` names; :class:`UnknownNodeError` listing the known ones."""
    nodes = _nodes(settings)
    if node not in nodes:
        raise UnknownNodeError(f"unknown node {node!r}; known: {', '.join(nodes)}")
    return nodes[node]


def cloud_reader(settings: Settings) -> Settings:
    """Settings whose ``remote`` node reads the cloud's shared store as an operator: ``settings`` outside a network,
    a home link's in one (each link's operator role may read the cloud's FHIR summary; docs/fhir.md)."""
    return next(link for link, side in _nodes(settings).values() if side == "remote")


def region_gates_of(settings: Settings) -> dict[str, Settings]:
    """A network's regional servers -> the settings of their gates in the link proxy (none without a network)."""
    # deferred: the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from infra.local.network import Network, is_network

    if not is_network(settings.data_dir):
        return {}
    network = Network.load(settings)
    return {region: network.region_gate(region) for region in network.regions}


def link_settings_of(settings: Settings) -> dict[str, Settings]:
    """Every two-party stack of the data dir: the home links of a network, or the one standalone stack."""
    # deferred: the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from infra.local.network import Network, is_network

    if not is_network(settings.data_dir):
        return {"": settings}
    return dict(Network.load(settings).links)


def cmd_network(args: argparse.Namespace) -> int:
    """``platsync network join|leave --node HOSPITAL``: add a hospital to a running network, or remove one."""
    # deferred: the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from infra.local.network import Network
    from infra.local.process import ProcessError  # deferred: with the stack

    settings = load_settings(args.config, data_dir=args.data_dir)
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    try:
        network = Network.load(settings)  # a clear error if none runs here
        if args.topology is not None:  # the edited topology, if it is not the file the network was started from
            network = Network(settings, load_topology(args.topology))
        if args.action == "join":
            pending = network.join(args.node, say, timeout_s=args.timeout)
            return 0 if not pending else 4
        network.leave(args.node, say, drain_timeout_s=args.drain_timeout)
        return 0
    except TopologyError as exc:
        print(f"invalid topology ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    except ProcessError as exc:
        print(f"platsync network {args.action}: {exc}", file=sys.stderr)
        return 2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``network`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("network", parents=[common],
                       help="add a hospital to a running network (join) or remove one (leave)")
    p.add_argument("action", choices=["join", "leave"])
    p.add_argument("--node", required=True, metavar="HOSPITAL", help="the hospital's id in the topology")
    p.add_argument("--topology", type=Path, metavar="FILE",
                   help="join: the topology listing the hospital (default: the file the network was started from)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="join: seconds to wait until its records are in the cloud (exit 4 if not)")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="leave: seconds to wait until what it captured is applied")
    p.set_defaults(func=cmd_network)
