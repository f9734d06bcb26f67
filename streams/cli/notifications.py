"""``platsync notifications list|webhook``: a subscriber's notifications and its webhook (docs/sharing.md).

Reads and writes the hospital's ``fructos_subscribed`` (its own store: the notifications never leave
the node but through its topic and its webhook).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from streams.cli.network_rows import BadSince, network_hospitals, parse_since, print_json_rows
from streams.runtime.connections import dsn
from streams.runtime.settings import load_settings

HOSPITAL_SIDE = "local"
SUBSCRIBED_STORE = "fructos_subscribed"  # connectors.stores.subscribed.SUBSCRIBED_STORE, imported when run


def _state(n: dict[str, Any]) -> str:
    if n["delivered_at"] is not None:
        return f"delivered {n['delivered_at']:%Y-%m-%d %H:%M:%S}"
    if n["attempts"]:
        return f"FAILING after {n['attempts']} attempt(s): {n['last_error']} (next {n['next_attempt_at']:%H:%M:%S})"
    return "published" if n["published_at"] is not None else "pending"


def cmd_notifications(args: argparse.Namespace) -> int:
    """List a hospital's notifications or set its webhook; exit 2 on a usage error, 3 if its store is
    unreachable."""
    # deferred: SQLAlchemy and the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    # deferred: SQLAlchemy (the store's tables), as above
    from connectors.stores.notifications import list_notifications, set_webhook

    settings = load_settings(args.config, data_dir=args.data_dir)
    links = network_hospitals(settings, args.node, "notifications are a subscriber's, on a network")
    if links is None:
        return 2
    try:
        since = parse_since(args.since)
    except BadSince as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.action == "webhook" and args.url is None:
        print("platsync notifications webhook: --url is required ('' removes the webhook)", file=sys.stderr)
        return 2
    engine = create_engine(dsn(links[args.node], HOSPITAL_SIDE, SUBSCRIBED_STORE))
    try:
        with engine.begin() as conn:
            if args.action == "webhook":
                set_webhook(conn, args.url, args.by or f"operator:{getpass.getuser()}")
                print(f"{args.node}: webhook set to {args.url}; notifications recorded from now on are delivered "
                      "to it" if args.url else f"{args.node}: webhook removed")
                return 0
            rows = list_notifications(conn, since)
    except OperationalError as exc:
        print(f"{args.node}'s {SUBSCRIBED_STORE} is unreachable: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 3
    finally:
        engine.dispose()
    if args.format == "json":
        print_json_rows(rows)
        return 0
    if not rows:
        print(f"no notifications for {args.node}" + (f" since {since.isoformat()}" if since else ""))
    for n in rows:
        print(f"{n['created_at']:%Y-%m-%d %H:%M:%S}  {n['kind']:<9}  patient {n['patient_id']}  record "
              f"{n['record_id']} v{n['version']} from {n['source_node']}  {_state(n)}  key {n['message_id']}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``notifications`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("notifications", parents=[common],
                       help="a subscriber's notifications (new, changed, withdrawn shared documents) and its webhook")
    p.add_argument("action", choices=["list", "webhook"])
    p.add_argument("--node", required=True, metavar="HOSPITAL", help="the subscribing hospital")
    p.add_argument("--since", help="list: only those recorded at or after this ISO date/time")
    p.add_argument("--url", help="webhook: the URL notifications are POSTed to ('' removes it)")
    p.add_argument("--by", help="webhook: who sets it (default: operator:<login name>)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_notifications)
