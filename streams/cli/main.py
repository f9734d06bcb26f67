"""The ``platsync`` command line.

Exit codes: 0 success, 1 failure (message on stderr), 2 usage or configuration error,
3 record absent (``inspect``), 4 timed out (``wait-synced``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from streams.cli import access as access_cli
from streams.cli import backup as backup_cli
from streams.cli import bench as bench_cli
from streams.cli import conflicts as conflicts_cli
from streams.cli import console as console_cli
from streams.cli import dlq as dlq_cli
from streams.cli import fhir as fhir_cli
from streams.cli import index as index_cli
from streams.cli import k8s as k8s_cli
from streams.cli import link as link_cli
from streams.cli import master as master_cli
from streams.cli import mode as mode_cli
from streams.cli import network as network_cli
from streams.cli import notifications as notifications_cli
from streams.cli import recovery as recovery_cli
from streams.cli import sharing as sharing_cli
from streams.cli import stamp as stamp_cli
from streams.cli import subscriptions as subscriptions_cli
from streams.cli import topology as topology_cli
from streams.cli.options import add_node_option
from streams.core.model import DATABASE_STORES, ROUTES
from streams.routing.matrix_model import MatrixError, load_matrix
from streams.routing.render import matrix_to_json, matrix_to_markdown
from streams.runtime.settings import Settings, SettingsError, load_settings
from streams.sharing.rules import ShareRulesError, load_share_rules
from streams.topology.load import TopologyError, load_topology
from streams.topology.model import Topology


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir)


def cmd_routes(args: argparse.Namespace) -> int:
    """Print the routing matrix as JSON or as the seed's markdown tables."""

    try:
        matrix = load_matrix(args.matrix)
    except MatrixError as exc:
        print(f"invalid routing matrix ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(matrix_to_json(matrix), ensure_ascii=False, indent=2))
    else:
        print(matrix_to_markdown(matrix))
    return 0


class _Runnable(Protocol):
    """What ``up`` starts and stops: a two-site stack (infra/local/stack.py) or a network (network.py)."""

    def up(self, say: Callable[[str], None] = ...) -> None: ...

    def down(self, say: Callable[[str], None] = ..., drain_timeout_s: float = ...) -> None: ...


def _start_and_watch(args: argparse.Namespace, target: _Runnable, ready: Callable[[float], str], background: str,
                     watch: Callable[[dict[str, bool]], None]) -> int:
    """Start ``target`` (stopping what started if that fails, unless --detach); with --detach return once
    it is ready, else run ``watch`` until Ctrl-C or SIGTERM sets ``stop["now"]``, then drain and stop it."""
    started = time.monotonic()
    try:
        target.up(say=lambda m: print(f"[{time.monotonic() - started:6.1f}s] {m}", flush=True))
    except BaseException:
        if not args.detach:
            print("start-up failed; stopping what was started", file=sys.stderr)
            target.down(say=lambda m: print(m, file=sys.stderr), drain_timeout_s=0)
        raise
    print(ready(time.monotonic() - started), flush=True)
    if args.detach:
        print(background)
        return 0
    stop = {"now": False}

    def on_signal(_sig: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    watch(stop)
    print("\nstopping ...", flush=True)
    target.down(say=lambda m: print(m, flush=True))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Start the embedded two-site stack (or a network, with --topology); show live status until Ctrl-C
    unless --detach."""
    # deferred: the embedded stack (Kafka, psycopg, capture): ~0.7 s
    from infra.local.stack import Stack

    # deferred: imports the embedded stack: ~0.7 s
    from streams.cli.status import collect_status, render_status

    settings = _settings(args)
    try:  # every document registration needs them: refuse to start with a broken file, not fail each call
        load_share_rules(Path(settings.share_rules) if settings.share_rules else None)
    except ShareRulesError as exc:
        print(f"invalid share rules ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    if args.topology is not None:
        try:
            topology = load_topology(args.topology)
        except TopologyError as exc:
            print(f"invalid topology ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
            return 2
        if not topology.is_default:
            return _up_network(args, settings, topology)

    def watch(stop: dict[str, bool]) -> None:
        tty = sys.stdout.isatty()
        last_plain = 0.0
        while not stop["now"]:
            status = collect_status(settings)
            if tty:
                sys.stdout.write("\x1b[2J\x1b[H" + render_status(status) + "\nCtrl-C stops every process.\n")
                sys.stdout.flush()
            elif time.monotonic() - last_plain >= 10:
                print(render_status(status), flush=True)
                last_plain = time.monotonic()
            for _ in range(int(settings.status_interval_s * 10)):
                if stop["now"]:
                    break
                time.sleep(0.1)

    return _start_and_watch(args, Stack(settings), lambda s: f"ready in {s:.1f}s; data dir {settings.data_dir}",
                            "stack running in the background: 'platsync status', 'platsync down'", watch)


def _up_network(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """Start a network: the shared cloud server, broker and link proxy, then one stack per home link."""
    # deferred: the embedded stack (Kafka, psycopg, capture): ~0.7 s
    from infra.local.network import Network

    network = Network(settings, topology)

    def watch(stop: dict[str, bool]) -> None:
        print("Ctrl-C stops every process; 'platsync status' shows each link.", flush=True)
        while not stop["now"]:
            time.sleep(0.2)

    return _start_and_watch(
        args, network, lambda s: f"network ready in {s:.1f}s: {len(network.links)} home links; data dir "
                                 f"{settings.data_dir}",
        "network running in the background: 'platsync status', 'platsync down'", watch)


def cmd_down(args: argparse.Namespace) -> int:
    """Drain and stop the stack (every link's, then the shared parts, for a network)."""
    # deferred: the embedded stack (Kafka, psycopg, capture): ~0.7 s
    from infra.local.network import Network, is_network

    # deferred: the embedded stack (Kafka, psycopg, capture): ~0.7 s
    from infra.local.stack import Stack

    settings = _settings(args)
    if is_network(settings.data_dir):
        Network.load(settings).down(drain_timeout_s=args.drain_timeout)
    else:
        Stack(settings).down(drain_timeout_s=args.drain_timeout)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print processes, captured/applied counts, lag and errors per side and route (per link for a network)."""
    # deferred: imports the embedded stack: ~0.7 s
    from streams.cli.network import link_settings_of

    # deferred: imports the embedded stack: ~0.7 s
    from streams.cli.status import collect_status, render_status

    settings = _settings(args)
    links = link_settings_of(settings)
    statuses = {link: collect_status(s) for link, s in links.items()}
    if "" in statuses:  # one two-party stack
        print(json.dumps(statuses[""], indent=2) if args.json else render_status(statuses[""]))
        return 0 if statuses[""]["healthy"] else 1
    # deferred: a network's overview (the embedded stack): ~0.7 s
    from infra.local.network import Network
    from streams.cli.network_status import network_overview, render_overview  # deferred: with it
    from streams.cli.subscription_status import collect_subscriptions, render_subscriptions  # deferred: with it

    network = Network.load(settings)
    overview = network_overview(network, statuses)
    if network.plan.subscription_processes():
        overview["subscriptions"] = collect_subscriptions(network.settings, network.links)
    if args.json:
        print(json.dumps({**overview, "home_links": statuses}, indent=2))
    else:
        print("\n".join([render_overview(network, overview),
                         *render_subscriptions(overview.get("subscriptions", {}))]) + "\n")
        for link, status in statuses.items():
            print(f"=== home link {link} ({links[link].data_dir})")
            print(render_status(status))
    nodes_up = all(not node["down"] for node in overview["nodes"].values())
    return 0 if nodes_up and all(status["healthy"] for status in statuses.values()) else 1


def cmd_call(args: argparse.Namespace) -> int:
    """Run one reference API on one side with a JSON payload file.

    Any failure prints exactly one line without payload values and exits 1; the value-free
    detail goes to ``<data dir>/logs/call-errors.log`` (connectors/reference_api/call_errors.py).
    """
    # deferred: with the reference API, only for 'call'
    from connectors.reference_api.call_errors import one_line, write_detail

    # deferred: the reference API (SQLAlchemy stores, Keycloak client): ~0.6 s
    from connectors.reference_api.service import ReferenceApi

    # deferred: a network's links (the embedded stack): ~0.7 s
    from streams.cli.network import UnknownNodeError, resolve_node

    settings = _settings(args)
    try:
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_bytes().decode("utf-8")
    except OSError as exc:
        print(f"platsync call: cannot read the payload file {args.file}: {exc.strerror or type(exc).__name__}",
              file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"platsync call: {one_line(exc, args.api_id, args.side, None)}", file=sys.stderr)
        return 1
    try:
        settings, side = resolve_node(settings, args.side)
    except UnknownNodeError as exc:
        print(f"platsync call: {exc}", file=sys.stderr)
        return 2
    try:
        payload = json.loads(raw)
        api = ReferenceApi(settings, side)
        try:
            result = api.call(args.api_id, payload)
        finally:
            api.close()
    except Exception as exc:  # noqa: BLE001 - one redacted line, whatever failed
        detail = write_detail(settings.data_dir / "logs" / "call-errors.log", exc, args.api_id, args.side)
        print(f"platsync call: {one_line(exc, args.api_id, args.side, detail)}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print one record of a store as JSON; exit 3 if it is absent."""
    # deferred: a network's links (the embedded stack, ~0.7 s) and the store tables (~0.65 s)
    from streams.cli.network import UnknownNodeError, resolve_node
    from streams.ops.inspect import fetch_record  # deferred: SQLAlchemy store tables

    try:
        settings, side = resolve_node(_settings(args), args.side)
    except UnknownNodeError as exc:
        print(f"platsync inspect: {exc}", file=sys.stderr)
        return 2
    record = fetch_record(settings, side, args.store, args.entity, args.id)
    if record is None:
        print(f"no {args.entity} {args.id!r} in {args.side}/{args.store}", file=sys.stderr)
        return 3
    print(json.dumps(record, ensure_ascii=False, indent=2))
    return 0


def cmd_wait_synced(args: argparse.Namespace) -> int:
    """Wait until everything captured so far on both sides has been applied."""
    # deferred: psycopg and the positions: ~0.2 s, only for 'wait-synced'
    from streams.apply.barrier import wait_synced

    # deferred: a network's links (the embedded stack): ~0.7 s
    from streams.cli.network import link_settings_of

    def report(pending: list[Any]) -> None:
        print("waiting for: " + ", ".join(f"{p.route}/{p.source_store}" for p in pending), file=sys.stderr)

    started = time.monotonic()
    pending = []
    for link in link_settings_of(_settings(args)).values():  # every home link of a network, in turn
        pending += wait_synced(link, max(0.0, args.timeout - (time.monotonic() - started)), on_wait=report)
    if pending:
        print(f"NOT synced after {args.timeout:.0f}s:", file=sys.stderr)
        for p in pending:
            print(f"  {p.route} from {p.source_store}: probe {p.probe_id} not applied "
                  f"(last applied probe: {p.applied_probe_id or 'none'})", file=sys.stderr)
        print("see 'platsync status' and the logs under <data dir>/logs", file=sys.stderr)
        return 4
    print(f"synced in {time.monotonic() - started:.2f}s")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Reset a route's consumer-group offsets and re-apply from there."""
    # deferred: Faust: ~1 s, only for 'replay'
    from streams.cli.replay import replay_route

    replay_route(_settings(args), args.route, to_beginning=args.to_beginning, to_time=args.to_time,
                 say=lambda m: print(m, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``platsync`` subcommand."""
    parser = argparse.ArgumentParser(prog="platsync", description="PLAT Sync: local<->cloud sync engine")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="state directory (env PLATSYNC_DATA_DIR; default ./.platsync)")
    common.add_argument("--config", type=Path,
                        help="settings TOML (env PLATSYNC_CONFIG; default <data dir>/platsync.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", parents=[common], help="start the embedded two-site stack")
    p.add_argument("--detach", action="store_true", help="return once ready, leaving the stack running")
    p.add_argument("--topology", type=Path, metavar="FILE",
                   help="run a network: one cloud, several hospitals (infra/topologies/; default: the two-site "
                        "stack, infra/topologies/default.toml)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", parents=[common], help="drain and stop the stack")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for draining (default 60)")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", parents=[common], help="processes, captured/applied, lag, errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("routes", parents=[common], help="print the API routing matrix")
    p.add_argument("--format", choices=["json", "markdown"], default="markdown")
    p.add_argument("--matrix", type=Path, help="matrix file to validate and print (default: the packaged one)")
    p.set_defaults(func=cmd_routes)
    p = sub.add_parser("call", parents=[common], help="run a reference API with a JSON payload")
    p.add_argument("api_id")
    add_node_option(p, None, required=True, help="node whose API runs (a network: a hospital id, or "
                    "remote.<hospital> for its stores in the cloud)")
    p.add_argument("--file", required=True, help="payload JSON file ('-' for stdin)")
    p.set_defaults(func=cmd_call)
    p = sub.add_parser("inspect", parents=[common], help="print a record as JSON (exit 3 if absent)")
    add_node_option(p, None, required=True, help="node whose store to read (a network: a hospital id, or "
                    "remote.<hospital>)")
    p.add_argument("--store", choices=sorted({s for v in DATABASE_STORES.values() for s in v}), required=True)
    p.add_argument("--entity", required=True, help="table: plat_users, patients, staff, documents, signed_records")
    p.add_argument("--id", required=True)
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("wait-synced", parents=[common], help="wait until both sides applied all captured changes")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_wait_synced)
    p = sub.add_parser("replay", parents=[common], help="re-apply a route from the beginning or a time")
    p.add_argument("route", choices=sorted(ROUTES))
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--to-beginning", action="store_true")
    group.add_argument("--to-time", help="ISO 8601 time, e.g. 2026-11-22T09:00:00+09:00")
    p.set_defaults(func=cmd_replay)

    link_cli.register(sub, common)
    k8s_cli.register(sub, common)
    stamp_cli.register(sub, common)
    access_cli.register(sub, common)
    mode_cli.register(sub, common)
    recovery_cli.register(sub, common)

    conflicts_cli.register(sub, common)
    dlq_cli.register(sub, common)
    topology_cli.register(sub, common)
    sharing_cli.register(sub, common)
    subscriptions_cli.register(sub, common)
    master_cli.register(sub, common)
    notifications_cli.register(sub, common)
    index_cli.register(sub, common)
    network_cli.register(sub, common)
    fhir_cli.register(sub, common)
    backup_cli.register(sub, common)
    console_cli.register(sub, common)
    bench_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``platsync`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"platsync: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - one clear line for operators; details in logs
        name = type(exc).__name__
        print(f"platsync {args.command}: {name}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
