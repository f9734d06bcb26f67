"""Options shared by several ``platsync`` commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def add_node_option(parser: argparse.ArgumentParser, choices: Sequence[str] | None, **kwargs: Any) -> None:
    """``--node NODE`` (``--side`` kept as an alias): the node a command acts on, stored as ``args.side``.

    In the default topology the nodes are ``local`` (the hospital) and ``remote`` (the cloud), the
    names ``--side`` always took (docs/topology.md). ``choices`` None: the command checks the name
    against the running topology (streams/cli/network.py)."""
    help_text = kwargs.pop("help", "the node")
    listed = f": {', '.join(choices)}" if choices else ""
    parser.add_argument("--node", "--side", dest="side", metavar="NODE", choices=list(choices) if choices else None,
                        help=f"{help_text}{listed} (--side is an alias)", **kwargs)
