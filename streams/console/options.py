"""The console's command-line options, shared by ``python -m streams.console.server`` and ``platsync console``
(argparse only: ``platsync`` imports this for every command)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_options(parser: argparse.ArgumentParser, common: bool = True) -> None:
    """The console's options (``common``: also --config and --data-dir, which ``platsync`` adds itself)."""
    if common:
        parser.add_argument("--config", type=Path, help="settings TOML file")
        parser.add_argument("--data-dir", type=Path, help="data dir (default from settings)")
    parser.add_argument("--port", type=int, help="HTTP port on the settings' host (default: console_port, 8765)")
    parser.add_argument("--operator", action="append", default=[], metavar="USERNAME",
                        help="a realm user allowed in (repeatable; adds to console_operators)")
