"""``platsync access``: the least-privilege policy (database roles, grants, Kafka principals and ACLs).

This module only registers the command: the policy pulls in the store schemas and the capture's
Debezium properties (~0.5 s), so streams/cli/access_report.py is imported when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_access(args: argparse.Namespace) -> int:
    """Print the policy, or rewrite the generated section of ``--update FILE``."""
    # deferred: the policy imports the store schemas and the capture (~0.5 s); only for 'access'
    from streams.cli.access_report import cmd_access as run

    return run(args)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``access`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("access", parents=[common],
                       help="least-privilege database roles and Kafka ACLs (docs/security.md)")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")
    p.add_argument("--topology", type=Path, metavar="FILE",
                   help="Kafka principals and ACLs of every node of this topology (default: local and remote); "
                        "exit 1 if they would let a hospital read another institution's topics")
    p.add_argument("--update", type=Path, metavar="FILE",
                   help="rewrite the generated section of a Markdown file (docs/security.md)")
    p.set_defaults(func=cmd_access)
