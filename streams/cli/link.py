"""``platsync link down|up|status``: cut and restore the hospital<->cloud link of the embedded stack."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from streams.runtime.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir)


def _describe(state: dict[str, Any]) -> str:
    if not state:
        return "link proxy has not run in this data dir (start the stack with 'platsync up')"
    word = "up" if state.get("up") else f"DOWN ({state.get('cut_side', 'local')}-side processes cut off the broker)"
    opened = state.get("open_connections", {})
    return (f"link {word}; open connections: {', '.join(f'{k}={v}' for k, v in sorted(opened.items()))}; "
            f"reset by cuts: {state.get('cut', 0)}, refused: {state.get('refused', 0)}")


def _diagnose_proxy(root: Settings) -> str:
    """Why a proxy may not confirm: is its process alive, does its port accept connections; its log's end."""
    # deferred: the embedded stack: ~0.7 s, only when the proxy did not confirm
    from infra.local.process import log_tail, port_open, read_pid

    pid = read_pid(root.data_dir, "link")
    listening = port_open(root.host, root.broker_port)
    what = (f"its process {pid} is alive" if pid else "its process is not running") + (
        f", its port {root.broker_port} accepts connections" if listening
        else f", nothing listens on its port {root.broker_port}")
    advice = ("; restart it with 'platsync down' then 'platsync up'" if pid and not listening
              else "; start the stack with 'platsync up'" if not pid else "")
    return what + advice + log_tail(root.data_dir / "logs" / "link.log")


def cmd_link(args: argparse.Namespace) -> int:
    """Cut, restore or show the link; ``up``/``down`` wait until the proxy enforces it."""
    # deferred: the embedded stack: ~0.7 s, only for 'link'
    from infra.local.link import enforced_state

    # deferred: a network's links (the embedded stack): ~0.7 s
    from streams.cli.network import UnknownNodeError, link_settings_of, region_gates_of, resolve_node

    root = _settings(args)
    regions = region_gates_of(root)
    links = {**link_settings_of(root), **regions}
    if args.node is None and len(links) > 1:
        if args.action != "status":
            print(f"platsync link {args.action}: this network has {len(links)} home links; name one with --node "
                  f"({', '.join(links)})", file=sys.stderr)
            return 2
        for name, link in links.items():
            state = enforced_state(link)
            print(json.dumps({name: state}, sort_keys=True) if args.json else f"{name}: {_describe(state)}")
        return 0
    try:
        if args.node in regions:
            settings = regions[args.node]
        else:
            settings = resolve_node(root, args.node)[0] if args.node else next(iter(links.values()))
    except UnknownNodeError as exc:
        print(f"platsync link: {exc}", file=sys.stderr)
        return 2
    if settings.broker_bootstrap_servers and not settings.network_link:
        print(f"platsync link: the stack uses the Kafka cluster {settings.broker_bootstrap_servers}; the cuttable "
              "link exists only in front of the embedded broker (cut the network itself to test an outage)",
              file=sys.stderr)
        return 2
    if args.action == "status":
        state = enforced_state(settings)
        if args.json:
            print(json.dumps(state, indent=2, sort_keys=True))
        else:
            print(_describe(state))
        return 0
    up = args.action == "up"
    confirmed = switch_link(root, settings, up, args.note or "", lambda m: print(m, flush=True),
                            resume=args.node not in regions)  # a regional server's replica workers resume alone
    return 1 if confirmed is False else 0


def switch_link(root: Settings, settings: Settings, up: bool, note: str, say: Callable[[str], None],
                resume: bool = True) -> bool | None:
    """Cut (``up`` False) or restore the link of ``settings`` (``root``: the data dir's own settings, whose
    proxy runs it) and wait until the proxy enforces it, telling progress with ``say``; after a restore (with
    ``resume``) start what is not running and re-capture what the broker lost while the link was down.

    Returns True once the proxy enforces it, None if the proxy is not running (it applies the state when the
    stack starts), False if it did not confirm within 10 s (``say`` was told why)."""
    # deferred: the embedded stack: ~0.7 s, only for 'link'
    from infra.local.link import set_link, wait_enforced

    # deferred: the embedded stack: ~0.7 s, only for 'link'
    from infra.local.process import read_pid

    action = "up" if up else "down"
    set_link(settings, up, note=note)
    if read_pid(root.data_dir, "link") is None:  # a network's proxy runs in the network's data dir
        say(f"link set {action}; the link proxy is not running: it applies this when the stack starts")
        return None
    state = wait_enforced(settings, up, timeout_s=10.0)
    if state is None:
        say(f"platsync link {action}: the link proxy did not confirm within 10 s: {_diagnose_proxy(root)}")
        return False
    say(_describe(state))
    if up and resume:
        # deferred: Kafka clients and the capture: ~0.65 s, only for this command
        from infra.local.recovery import pending_sides, recapture_pending

        # deferred: the embedded stack (Kafka, psycopg, capture): ~0.7 s
        from infra.local.stack import Stack

        stack = Stack(settings)
        down = [name for name, pid in stack.running().items() if pid is None]
        if down:  # e.g. a worker started during the cut that gave up on the broker
            say(f"restarting what is not running: {', '.join(down)}")
            stack.up(say=say)

        if pending_sides(settings):
            say("re-capturing what the broker lost while the link was down ...")
            recapture_pending(settings, say)
    return True


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``link`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("link", parents=[common],
                       help="cut (down) or restore (up) the hospital<->cloud link of the embedded stack")
    p.add_argument("action", choices=["down", "up", "status"])
    p.add_argument("--note", help="why (kept in the link state file)")
    p.add_argument("--node", metavar="NODE", help="a network's hospital whose home link to cut or restore, or a "
                   "regional server to cut off the broker (default: the only link)")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(func=cmd_link)
