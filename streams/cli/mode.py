"""``platsync mode set|show``: the operating mode of each side (normal / emergency / recovery).

``platsync mode set emergency --side local --note "cloud unreachable by phone"`` fixes a side's
mode by hand (the WebORCA switch button); ``platsync mode set --clear --side local`` returns it
to automatic switching. ``platsync mode show`` prints both sides' modes and reasons.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from streams.apply.mode_state import describe, read_mode, set_override
from streams.cli.options import add_node_option
from streams.core.model import SIDES
from streams.core.modes import MODES
from streams.runtime.settings import Settings, load_settings

CONFIRM_TIMEOUT_S = 5.0


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir)


def _sides(choice: str | None) -> tuple[str, ...]:
    return SIDES if choice in (None, "both") else (str(choice),)


def _applied(doc: dict[str, Any], override: dict[str, Any] | None) -> bool:
    current = doc.get("override")
    if override is None:
        return current is None
    return isinstance(current, dict) and current.get("set_ts_ms") == override["set_ts_ms"]


def confirm_override(settings: Settings, side: str, override: dict[str, Any] | None, mode: str | None,
                     timeout_s: float = CONFIRM_TIMEOUT_S) -> tuple[bool | None, str]:
    """Wait until ``side``'s mode server applies ``override`` (written by ``set_override``; None: cleared to
    ``mode`` None). Returns (applied, message): applied None when the mode server is not running (it applies the
    override when it starts), False when it did not confirm within ``timeout_s``."""
    doc = read_mode(settings, side)
    if not doc.get("running"):
        return None, (f"{side}: override {'cleared' if override is None else 'set to ' + str(mode)}; "
                      "its mode server is not running: it applies this when it starts")
    deadline = time.monotonic() + timeout_s
    while not _applied(doc, override) and time.monotonic() < deadline:
        time.sleep(0.1)
        doc = read_mode(settings, side)
    if _applied(doc, override):
        return True, describe(doc)
    return False, (f"{side}: the mode server did not confirm within {timeout_s:g} s "
                   f"(see {settings.data_dir}/logs/mode-{side}.log)")


def cmd_mode_set(args: argparse.Namespace) -> int:
    """Write (or clear) the override of the chosen side(s); wait until their mode servers apply it."""

    if bool(args.mode) == bool(args.clear):
        print("platsync mode set: give a mode (normal, emergency, recovery) or --clear", file=sys.stderr)
        return 2
    settings = _settings(args)
    written = {side: set_override(settings, side, None if args.clear else args.mode, args.note or "")
               for side in _sides(args.side)}
    failed = 0
    for side, override in written.items():
        applied, message = confirm_override(settings, side, override, args.mode)
        if applied is False:
            failed += 1
            print(message, file=sys.stderr)
        else:
            print(message)
    return 1 if failed else 0


def cmd_mode_show(args: argparse.Namespace) -> int:
    """Print the mode of the chosen side(s), as lines or JSON."""

    settings = _settings(args)
    docs = {side: read_mode(settings, side) for side in _sides(args.side)}
    if args.json:
        print(json.dumps(docs, ensure_ascii=False, indent=2, sort_keys=True))
    else:
        for doc in docs.values():
            print(describe(doc))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``mode`` subcommand (``set``, ``show``) to the ``platsync`` parser."""
    p = sub.add_parser("mode", help="show or set each side's operating mode (normal/emergency/recovery)")
    actions = p.add_subparsers(dest="mode_action", required=True)
    s = actions.add_parser("set", parents=[common], help="fix a side's mode by hand, or --clear to go automatic")
    s.add_argument("mode", nargs="?", choices=MODES)
    s.add_argument("--clear", action="store_true", help="return to automatic switching")
    add_node_option(s, [*SIDES, "both"], required=True, help="node whose mode to set")
    s.add_argument("--note", help="why (shown in the mode's reason)")
    s.set_defaults(func=cmd_mode_set)
    s = actions.add_parser("show", parents=[common], help="each side's mode and why")
    add_node_option(s, [*SIDES, "both"], help="node to show (default: both)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_mode_show)
