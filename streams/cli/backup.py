"""``platsync backup create|list|verify|restore``: a node's backups, shipped to its parent (docs/backups.md).

Exit codes: 0 done (verify: every backup checked is sound); 1 a backup failed or a check found a problem;
2 usage (an unknown node or backup); 3 the node's database is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.cli.network import UnknownNodeError, resolve_node
from streams.cli.options import add_node_option
from streams.ops.backup_format import (
    BackupError,
    age_s,
    backup_root,
    check_node_name,
    describe_age,
    manifest_summary,
    parent_root,
)
from streams.runtime.settings import Settings, load_settings

DEFAULT_NODE = "local"


class BackupNameError(BackupError):
    """``--name`` cannot name a backup (a usage error: exit 2)."""


def cmd_backup(args: argparse.Namespace) -> int:
    """Run a ``platsync backup`` action."""
    # deferred: psycopg and the backup modules (~0.3 s); this module is imported by every run
    import psycopg

    settings = load_settings(args.config, data_dir=args.data_dir)
    try:
        if args.backup_action == "create":
            return _create(settings, args)
        if args.backup_action == "list":
            return _list(settings, args)
        if args.backup_action == "restore":
            from streams.cli.backup_restore import cmd_restore  # deferred: the embedded stack (~0.7 s)

            return cmd_restore(args)
        return _verify(settings, args)
    except (UnknownNodeError, BackupNameError) as exc:
        print(f"platsync backup: {exc}", file=sys.stderr)
        return 2
    except BackupError as exc:
        print(f"platsync backup {args.backup_action}: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"platsync backup {args.backup_action}: {str(exc).strip().splitlines()[0]} (is the stack up?)",
              file=sys.stderr)
        return 3


def backup_node(settings: Settings, node: str, name: str | None) -> str:
    """The name ``node``'s backups carry: ``node`` itself, or ``--name`` (a pod's node id: in a pod ``--node`` is the
    endpoint's side, ``local`` or ``remote``; docs/backups.md). :class:`BackupNameError` if it is not a backup's
    node name, or if ``name`` is another node of this stack (its backups would be taken for that node's)."""
    try:
        check_node_name(name or node)
    except BackupError as exc:
        raise BackupNameError(str(exc)) from None
    if name is None or name == node:
        return node
    try:
        resolve_node(settings, name)
    except UnknownNodeError:
        return name
    raise BackupNameError(f"--name {name}: {name} is another node of this stack; back it up with --node {name}")


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from streams.ops.backup import create_backup, prune, ship  # deferred: psycopg, with cmd_backup

    node = args.side or DEFAULT_NODE
    link, side = resolve_node(settings, node)
    name = backup_node(settings, node, args.name)
    called = "" if name == node else f" as {name}"
    print(f"backing up {node} ({side} side){called} into {backup_root(settings) / name} ...")
    path = create_backup(link, side, name, backup_root(settings))
    print(f"backup {path.name} complete: {path}")
    if not args.no_ship:
        copy = ship(path, parent_root(settings))
        print(f"shipped to the parent: {copy} (checked: every file's size and sha256 match)")
    for root, where in ((backup_root(settings), "here"), (parent_root(settings), "at the parent")):
        for gone in prune(root, name, settings.backup_keep):
            print(f"retention ({settings.backup_keep}): deleted {gone} {where}")
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from streams.ops.backup import list_backups, read_backup  # deferred: psycopg, with cmd_backup

    roots = {"node": backup_root(settings), "parent": parent_root(settings)}
    nodes = [args.side] if args.side else sorted({p.name for r in roots.values() if r.is_dir()
                                                  for p in r.iterdir() if p.is_dir()})
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for node in nodes:
        for held_by, root in roots.items():
            for path in list_backups(root, node):
                try:
                    manifest = read_backup(path)
                except BackupError as exc:
                    rows.append({"node": node, "held_by": held_by, "name": path.name, "error": str(exc)})
                    continue
                rows.append({**manifest_summary(manifest), "held_by": held_by, "name": path.name,
                             "path": str(path), "age_s": round(age_s(manifest, now), 1)})
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no backups" + (f" of {args.side}" if args.side else "") + f" in {roots['node']} or {roots['parent']}")
        return 0
    for r in rows:
        if "error" in r:
            print(f"{r['node']:14} {r['held_by']:6} {r['name']}: UNREADABLE: {r['error']}")
            continue
        print(f"{r['node']:14} {r['held_by']:6} {r['name']}  {describe_age(r['age_s']):>8} old  "
              f"{r['bytes']:>12,} bytes  {r['rows']:>9,} rows  {', '.join(r['databases'])}")
    return 0


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from streams.ops.backup import list_backups  # deferred: psycopg, with cmd_backup
    from streams.ops.backup_verify import verify_backup  # deferred: with it

    node = args.side or DEFAULT_NODE
    name = args.name or node  # --name: the backups of a pod's node id, restore-tested on --node's side
    root = parent_root(settings) if args.parent else backup_root(settings)
    held = list_backups(root, name)
    if args.backups:
        paths = [Path(b) if Path(b).is_dir() else root / name / b for b in args.backups]
        unknown = [str(p) for p in paths if not p.is_dir()]
        if unknown:
            print(f"platsync backup verify: no such backup: {', '.join(unknown)}", file=sys.stderr)
            return 2
    elif held:
        paths = [held[-1]]
    else:
        print(f"platsync backup verify: {name} has no backup in {root / name}", file=sys.stderr)
        return 2
    link, side = resolve_node(settings, node) if args.restore_test else (None, "")
    failed = 0
    for path in paths:
        result = verify_backup(path, link, side)
        if result.ok:
            restored = (f"; test restore: {result.restored_tables} tables, {result.restored_rows:,} rows match"
                        if args.restore_test else "")
            print(f"{path.name}: verified (every file's size and sha256 match the manifest{restored})")
        else:
            failed += 1
            for problem in result.problems:
                print(f"{path.name}: {problem}")
    return 1 if failed else 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``backup`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("backup", parents=[common], help="a node's backups: create (and ship to the parent), list, "
                                                          "verify")
    actions = p.add_subparsers(dest="backup_action", required=True)
    c = actions.add_parser("create", parents=[common], help="back up a node's stores with their positions")
    add_node_option(c, None, default=None, help="the node backed up (default: local)")
    c.add_argument("--no-ship", action="store_true", help="keep it here only (do not copy it to the parent)")
    c.add_argument("--name", metavar="NODE_ID", help="name the backup after this node instead of --node (a pod, "
                   "where --node is the side: local or remote)")
    c.set_defaults(func=cmd_backup)
    ls = actions.add_parser("list", parents=[common], help="the backups held here and at the parent")
    add_node_option(ls, None, default=None, help="only this node's")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(func=cmd_backup)
    v = actions.add_parser("verify", parents=[common], help="check backups against their manifests")
    v.add_argument("backups", nargs="*", metavar="BACKUP", help="backup names or directories (default: the latest)")
    add_node_option(v, None, default=None, help="the node whose backups are checked (default: local)")
    v.add_argument("--name", metavar="NODE_ID", help="the backups named after this node (a pod's; --node: the side "
                   "a --restore-test restores on)")
    v.add_argument("--parent", action="store_true", help="check the copies held by the parent")
    v.add_argument("--restore-test", action="store_true",
                   help="also restore each dump into a scratch database on the node's server and compare row counts")
    v.set_defaults(func=cmd_backup)
    r = actions.add_parser("restore", parents=[common],
                           help="rebuild a node of the embedded stack from the newest sound backup its parent holds")
    add_node_option(r, None, default=None, help="the node rebuilt (default: local)")
    r.add_argument("--from", dest="from_backup", metavar="BACKUP", help="a backup name or directory (default: the "
                   "newest sound one at the parent)")
    r.add_argument("--yes", action="store_true", help="replace the node's databases (its old cluster is kept aside)")
    r.set_defaults(func=cmd_backup)
