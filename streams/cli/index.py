"""``platsync index find|declare|queries``: the patient index (docs/sharing.md, "The patient index").

The index is in the cloud (its ``patient_index`` database): every common server declares the shared
documents its store holds, automatically (its declarer) or again by command (``declare``). ``find``
answers where information about a patient is, from a node of the network: a node whose link (or, for a
regional server, whose gate) is cut cannot reach the index, and is told so. Every query is audited in
the index (who, when, from where, which patient, how many locations); the log never names the patient.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from streams.cli.network_rows import BadSince, parse_since, print_json_rows
from streams.runtime.connections import dsn
from streams.runtime.settings import Settings, load_settings

CLOUD_SIDE = "remote"
INDEX_DATABASE = "patient_index"  # connectors.stores.patient_index.INDEX_DATABASE, imported when run
REPLICA_STORE = "fructos_patient"


def _network(settings: Settings) -> Any:
    # deferred: the embedded stack (~0.7 s); this module is imported by every 'platsync' run
    from infra.local.network import Network, is_network

    if not is_network(settings.data_dir):
        print(f"no network in {settings.data_dir}: the patient index is a network's "
              "('platsync up --topology FILE')", file=sys.stderr)
        return None
    return Network.load(settings)


def _unreachable_from(network: Any, node: str) -> str | None:
    """Why ``node`` cannot reach the index in the cloud (None: it can): an unknown node, or its link cut."""
    # deferred: with the embedded stack, as above
    from infra.local.link import link_is_up

    if node == network.topology.root.id:
        return None
    if node in network.regions:
        gate = network.region_gate(node)
    elif node in network.all_links:
        gate = network.link(node)
    else:
        known = [network.topology.root.id, *network.regions, *network.all_links]
        return f"unknown node {node!r}; known: {', '.join(known)}"
    if not link_is_up(gate):
        return (f"{node} cannot reach the patient index in the cloud: its link is down "
                f"('platsync link up --node {node}')")
    return None


def cmd_index(args: argparse.Namespace) -> int:
    """Find, declare or list queries; exit 2 on a usage error, 3 if a database is unreachable, 4 if the asking
    node cannot reach the index."""
    # deferred: SQLAlchemy (~0.4 s), as above
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from connectors.stores.index_outbox import redeclare_all  # deferred: SQLAlchemy, as above
    from connectors.stores.patient_index import find, queries  # deferred: SQLAlchemy, as above

    settings = load_settings(args.config, data_dir=args.data_dir)
    network = _network(settings)
    if network is None:
        return 2
    root = network.topology.root.id
    try:
        since = parse_since(args.since)
    except BadSince as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.action == "declare":
        servers = network.index_servers()
        if args.node not in servers:
            print(f"platsync index declare: --node must be a common server: {', '.join(servers)}", file=sys.stderr)
            return 2
        where = dsn(network.settings, servers[args.node], REPLICA_STORE)
    else:
        where = dsn(network.settings, CLOUD_SIDE, INDEX_DATABASE)
    if args.action == "find":
        if not args.patient:
            print("platsync index find: --patient is required", file=sys.stderr)
            return 2
        asked_from = args.from_node or root
        if (why := _unreachable_from(network, asked_from)) is not None:
            print(why, file=sys.stderr)
            return 2 if why.startswith("unknown node") else 4
    engine = create_engine(where)
    try:
        with engine.begin() as conn:
            if args.action == "declare":
                count = redeclare_all(conn)
                print(f"{args.node}: {count} document(s) queued for declaration; its declarer publishes them "
                      "to the index within a second")
                return 0
            if args.action == "queries":
                rows = queries(conn, since)
            else:
                found = find(conn, args.patient, args.by or f"operator:{getpass.getuser()}", asked_from)
    except OperationalError as exc:
        print(f"the database is unreachable: {str(exc).splitlines()[0]} (is the network up? 'platsync status')",
              file=sys.stderr)
        return 3
    finally:
        engine.dispose()
    if args.action == "queries":
        if args.format == "json":
            print_json_rows(rows)
        for r in rows if args.format != "json" else ():
            print(f"{r['asked_at']:%Y-%m-%d %H:%M:%S}  {r['asked_by']} from {r['asked_from']}  patient "
                  f"{r['patient_id']}  {r['locations']} location(s)")
        return 0
    return _print_locations(args, found)


def _print_locations(args: argparse.Namespace, found: list[Any]) -> int:
    if args.format == "json":
        print_json_rows([{"server": loc.server, "institution": loc.institution, "documents": loc.documents,
                          "doc_types": list(loc.doc_types), "latest": loc.latest} for loc in found])
        return 0
    if not found:
        print(f"no common server declares shared documents of patient {args.patient}")
    for loc in found:
        latest = f"{loc.latest:%Y-%m-%d %H:%M:%S%z}" if loc.latest else "unknown"
        print(f"{loc.server}  holds {loc.documents} shared document(s) of {loc.institution}  "
              f"types: {', '.join(loc.doc_types)}  latest: {latest}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``index`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("index", parents=[common],
                       help="the patient index: where information about a patient is (find), declare a common "
                            "server's documents again (declare), the audit of queries (queries)")
    p.add_argument("action", choices=["find", "declare", "queries"])
    p.add_argument("--patient", metavar="ID", help="find: the PLAT patient id")
    p.add_argument("--from", dest="from_node", metavar="NODE",
                   help="find: the node asking (audited; refused if its link is down; default: the cloud)")
    p.add_argument("--by", help="find: who asks, for the audit (default: operator:<login name>)")
    p.add_argument("--node", metavar="SERVER", help="declare: the common server whose documents are declared")
    p.add_argument("--since", metavar="ISO", help="queries: only those after this time")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_index)
