"""``platsync console``: serve the operator console (web page and JSON API) in the foreground until Ctrl-C.

``platsync console --operator hanako`` serves it on ``http://<host>:<console_port>/`` (loopback, 8765 by default);
operators log in with the login node's Keycloak realm (docs/console.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from streams.console.options import add_options


def cmd_console(args: argparse.Namespace) -> int:
    """Serve the console until SIGTERM/SIGINT; 2 for a configuration error (no operator, port taken)."""
    # deferred: aiohttp, the embedded stack and the stores' clients (~1 s), only for 'console'
    from streams.console.server import serve

    return serve(args)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``console`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("console", parents=[common], help="serve the operator console (web page, login, JSON API)")
    add_options(p, common=False)
    p.set_defaults(func=cmd_console)
