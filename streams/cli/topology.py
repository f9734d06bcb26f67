"""``platsync topology show``: validate a topology file and print its nodes and links."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streams.routing.matrix_model import MatrixError, load_matrix
from streams.topology.load import TopologyError, default_topology, load_topology
from streams.topology.render import topology_to_json, topology_to_text


def cmd_topology(args: argparse.Namespace) -> int:
    """Print the topology (default: the built-in default) with the links derived from the matrix."""
    try:
        matrix = load_matrix(args.matrix)
    except MatrixError as exc:
        print(f"invalid routing matrix ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    try:
        topology = default_topology() if args.topology is None else load_topology(args.topology)
    except TopologyError as exc:
        print(f"invalid topology ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(topology_to_json(topology, matrix), ensure_ascii=False, indent=2))
    else:
        print(topology_to_text(topology, matrix), end="")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``topology`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("topology", parents=[common],
                       help="validate and print a network topology: its nodes and links")
    p.add_argument("action", choices=["show"])
    p.add_argument("--topology", type=Path,
                   help="topology TOML to validate and print (default: the built-in default, "
                        "infra/topologies/default.toml)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--matrix", type=Path, help="matrix file the links are derived from (default: the packaged one)")
    p.set_defaults(func=cmd_topology)
