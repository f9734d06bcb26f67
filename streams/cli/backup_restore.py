"""``platsync backup restore``: rebuild a node of the embedded stack from a backup its parent holds
(docs/backups.md, "Restore").

The steps, each reported: stop the node's processes; read back from its topics what it changed after the backup;
replace its PostgreSQL cluster by a new one continuing past the old positions and transaction ids; load the
dumps; provision; start the stack (new capture slots, no snapshot); apply the node's own later changes again;
replay the route into the node from the backup's time (the other side's later changes, deletes included); bump
its management serials; wait until both sides are in step.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import datetime, timedelta

from sqlalchemy import create_engine

from connectors.stores.serials import bump_past_held
from infra.local.databases import postgres_instance, provision_side
from infra.local.process import read_pid, stop_pid
from infra.local.stack import Stack, components
from streams.apply.barrier import wait_synced
from streams.apply.restore_catchup import apply_own_changes, read_own_changes
from streams.cli.network import resolve_node
from streams.cli.replay import replay_route
from streams.core.model import SIDES, route_for_target
from streams.ops.backup import Say, read_backup
from streams.ops.backup_format import BackupError, epoch_after, parent_root, parse_lsn, wal_file_after
from streams.ops.backup_restore import choose_backup, restore_databases
from streams.runtime.connections import dsn
from streams.runtime.settings import Settings, load_settings

#: How far before the backup the topics are read and the route into the node replayed: a change committed
#: before the backup's positions can have been published (and applied on the other side) later than that.
MARGIN = timedelta(minutes=5)


def _node_processes(settings: Settings, side: str) -> list[str]:
    """The processes of the stack that belong to ``side``: its PostgreSQL, Keycloak, capture, mode server, the
    worker writing into it, and the cloud's FHIR processes if it is the cloud."""
    route = route_for_target(side)
    return [c.name for c in components(settings)
            if c.side_or_route == side or (c.kind == "worker" and c.side_or_route == route)]


def _forget_capture(settings: Settings, side: str) -> None:
    """The capture's offsets and saved state of ``side``'s databases: the new cluster has no slot to resume."""
    for pattern in (f"capture/{side}.*", f"state/capture/{side}.*"):
        for path in settings.data_dir.glob(pattern):
            path.unlink()


def rebuild(settings: Settings, node: str, side: str, named: str | None, say: Say = print) -> int:
    """Rebuild ``side`` of ``settings``' stack as node ``node`` from its parent's backup; exit code."""
    path = choose_backup(parent_root(settings), node, named)
    manifest = read_backup(path)
    if manifest.side != side:
        raise BackupError(f"{path.name} is a backup of a {manifest.side} side, not of {side}")
    say(f"restoring {node} ({side} side) from {path} (taken {manifest.created_at})")
    started = time.monotonic()
    for name in reversed(_node_processes(settings, side)):
        if name.startswith("pg-"):
            continue
        pid = read_pid(settings.data_dir, name)
        if pid is not None:
            stop_pid(pid, timeout_s=60)
            (settings.data_dir / "run" / f"{name}.pid").unlink(missing_ok=True)
            say(f"stopped {name} (pid {pid})")
    positions = {db.store: parse_lsn(db.lsn) for db in manifest.databases}
    since = datetime.fromisoformat(manifest.created_at) - MARGIN
    events, report = read_own_changes(settings, side, positions, int(since.timestamp() * 1000), say)

    pg = postgres_instance(settings, side)
    pid = read_pid(settings.data_dir, pg.name)
    if pid is not None:
        stop_pid(pid, timeout_s=60, sig=pg.stop_signal())
        (settings.data_dir / "run" / f"{pg.name}.pid").unlink(missing_ok=True)
    if pg.pgdata.exists():
        kept = pg.pgdata.with_name(f"{pg.pgdata.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.move(pg.pgdata, kept)
        say(f"the old cluster is kept in {kept} (delete it once the node is checked)")
    wal_file = wal_file_after(max(report.max_lsn, *positions.values()))
    pg.init()
    pg.continue_past(wal_file, epoch_after(manifest.xact_horizon))
    pg.start(settings.ready_timeout_s, say=say)
    say(f"new cluster for {side}: WAL from segment {wal_file}, transaction epoch {epoch_after(manifest.xact_horizon)}")
    restore_databases(settings, side, path, say)
    provision_side(settings, side)
    _forget_capture(settings, side)
    Stack(settings).up(say=lambda m: say(f"  {m}"))
    apply_own_changes(settings, side, events, report, say)
    for problem in report.rejected:
        say(f"REFUSED: {problem}")
    replay_route(settings, route_for_target(side), False, since.isoformat(), say=say)
    engine = create_engine(dsn(settings, side, "meta"))
    try:
        with engine.begin() as conn:
            for label, following in bump_past_held(conn, settings, side).items():
                say(f"management serial bump: the next {label} is {following}")
    finally:
        engine.dispose()
    pending = wait_synced(settings, settings.ready_timeout_s)
    if pending:
        say(f"WARNING: not in step yet after {settings.ready_timeout_s:.0f} s: {', '.join(pending)}")
    say(f"{node} restored from {path.name} in {time.monotonic() - started:.0f} s: "
        f"{sum(report.applied.values())} later change(s) of its own applied again, the other side's replayed "
        f"from {since.isoformat()}" + ("" if not report.rejected else f"; {len(report.rejected)} REFUSED"))
    return 1 if report.rejected or pending else 0


def cmd_restore(args: argparse.Namespace) -> int:
    """``platsync backup restore --node N [--from BACKUP] --yes``: exit 0 restored and in step; 1 a step failed or
    a change was refused; 2 usage (no --yes, a node this stack does not run)."""
    settings = load_settings(args.config, data_dir=args.data_dir)
    node = args.side or "local"
    try:
        link, side = resolve_node(settings, node)
        if side not in SIDES or not link.node(side).pg_managed:
            print(f"platsync backup restore: {node}'s PostgreSQL is not run by this stack; restore its databases "
                  "with the procedure of docs/backups.md", file=sys.stderr)
            return 2
        if not args.yes:
            print(f"platsync backup restore: this replaces every database of {node} (its current cluster is kept "
                  "aside); pass --yes to go on", file=sys.stderr)
            return 2
        return rebuild(link, node, side, args.from_backup)
    except BackupError as exc:
        print(f"platsync backup restore: {exc}", file=sys.stderr)
        return 1
