"""``platsync subscriptions add|remove|list``: a hospital's patient subscriptions (docs/sharing.md).

Writes what is asked into the cloud's ``sharing`` database (audited: who, when, what); the fan-out
opens or closes the subscription on the hospital's feed at its next batch, and the hospital's
subscriber applies it. Needs a network (``platsync up --topology FILE``): subscriptions are between
institutions.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from streams.cli.network_rows import network_hospitals, print_json_rows
from streams.runtime.connections import dsn
from streams.runtime.settings import load_settings

CLOUD_SIDE = "remote"
SHARING_DATABASE = "sharing"  # connectors.stores.fanout_state.SHARING_DATABASE, imported when run


def cmd_subscriptions(args: argparse.Namespace) -> int:
    """Add, remove or list subscriptions; exit 2 on a usage error, 3 if the cloud's database is unreachable."""
    # deferred: SQLAlchemy and the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    # deferred: SQLAlchemy (the store's tables), as above
    from connectors.stores.fanout_state import add_subscription, list_subscriptions, remove_subscription

    settings = load_settings(args.config, data_dir=args.data_dir)
    if network_hospitals(settings, args.node, "subscriptions are between the hospitals of a network") is None:
        return 2
    if args.action != "list" and (args.node is None or not args.patient):
        print(f"platsync subscriptions {args.action}: --node and --patient are required", file=sys.stderr)
        return 2
    engine = create_engine(dsn(settings, CLOUD_SIDE, SHARING_DATABASE))
    actor = args.by or f"operator:{getpass.getuser()}"
    try:
        with engine.begin() as conn:
            if args.action == "add":
                done = add_subscription(conn, args.node, args.patient, actor)
                print(f"{args.node} subscribed to patient {args.patient}: its shared documents from other "
                      "institutions are copied at the fan-out's next batch" if done else
                      f"{args.node} already subscribes to patient {args.patient}")
                return 0
            if args.action == "remove":
                done = remove_subscription(conn, args.node, args.patient, actor)
                print(f"{args.node} unsubscribed from patient {args.patient}: its copies are removed at the "
                      "fan-out's next batch" if done else f"{args.node} does not subscribe to patient {args.patient}")
                return 0
            rows = list_subscriptions(conn, args.node)
    except OperationalError as exc:
        print(f"the cloud's {SHARING_DATABASE} database is unreachable: {str(exc).splitlines()[0]} "
              "(is the network up? 'platsync status')", file=sys.stderr)
        return 3
    finally:
        engine.dispose()
    if args.format == "json":
        print_json_rows(rows)
        return 0
    if not rows:
        print("no subscriptions" + (f" of {args.node}" if args.node else ""))
    for r in rows:
        state = f"open since {r['opened_at']:%Y-%m-%d %H:%M:%S}" if r["opened_at"] else "not opened yet (fan-out)"
        print(f"{r['node']}  patient {r['patient_id']}  {state}  {r['documents']} shared document(s) of other "
              f"institutions  (asked {r['subscribed_at']:%Y-%m-%d %H:%M:%S} by {r['subscribed_by']})")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``subscriptions`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("subscriptions", parents=[common],
                       help="subscribe a hospital to a patient's shared documents from other institutions, or not")
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("--node", metavar="HOSPITAL", help="the subscribing hospital (list: only its subscriptions)")
    p.add_argument("--patient", metavar="ID", help="add, remove: the PLAT patient id")
    p.add_argument("--by", help="who asks, for the audit (default: operator:<login name>)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_subscriptions)
