"""``platsync conflicts list|show|resolve``: review the concurrent edits the sinks resolved.

Exit codes (as in :mod:`streams.cli.main`): 0 success, 1 failure (for example a store that cannot be
read: what could be read is still printed), 2 usage error (an ambiguous id prefix), 3 unknown
conflict id.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from streams.cli.options import add_node_option
from streams.core.model import SIDES
from streams.runtime.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir)


def _warn_unreachable(unreachable: list[str]) -> int:
    for line in unreachable:
        print(f"platsync conflicts: store not readable, its conflicts are missing: {line}", file=sys.stderr)
    return 1 if unreachable else 0


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_list(args: argparse.Namespace) -> int:
    """List conflicts (open ones by default), one line each, or as JSON."""
    # deferred: psycopg and the conflict rule: ~0.3 s, only for this command
    from streams.apply.conflicts import collect

    conflicts, unreachable = collect(_settings(args), args.status)
    if args.json:
        print(json.dumps([c.as_json() for c in conflicts], ensure_ascii=False, indent=2))
    elif not conflicts:
        print(f"no {'' if args.status == 'all' else args.status + ' '}conflicts")
    else:
        rows = [["ID", "STORE/TABLE/ROW", "WINNER", "RULE", "DETECTED ON", "STATUS"]]
        for c in conflicts:
            p = c.primary
            rows.append([c.conflict_id, f"{p.store}/{p.table}/{p.row_id}", p.winner, p.rule,
                         ",".join(c.detected_on), c.status])
        print(_table(rows))
        print(f"\n{len(conflicts)} conflict(s); 'platsync conflicts show ID' prints both versions")
    return _warn_unreachable(unreachable)


def _lookup(args: argparse.Namespace) -> Any:
    # deferred: psycopg and the conflict rule: ~0.3 s, only for this command
    from streams.apply.conflicts import ConflictLookupError, find

    try:
        return find(_settings(args), args.id)
    except ConflictLookupError as exc:
        print(f"platsync conflicts {args.action}: {exc}", file=sys.stderr)
        return 2 if "ambiguous" in str(exc) else 3


def cmd_show(args: argparse.Namespace) -> int:
    """Print both versions of one conflict and which fields differ; exit 3 if the id is unknown."""
    conflict = _lookup(args)
    if isinstance(conflict, int):
        return conflict
    data = conflict.as_json()
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    kept = data["winner"]
    print(f"conflict {data['conflict_id']} ({data['status']})\n"
          f"  record:      {data['store']}/{data['table']}/{data['row_id']}\n"
          f"  kept:        the {kept} version, by rule '{data['rule']}'\n"
          f"  APIs:        local {data['local_api_id'] or '?'}, remote {data['remote_api_id'] or '?'}\n"
          f"  detected on: {', '.join(data['detected_on'])}\n"
          f"  differ:      {', '.join(data['differing_fields'])}")
    for d in data["detections"]:
        line = f"  - {d['side']}: detected {d['detected_at']}, kept {d['winner']} ({d['rule']}), {d['status']}"
        if d["resolution"]:
            line += f": {d['resolution']}"
        print(line)
    for side in SIDES:
        label = "kept" if side == kept else "lost"
        print(f"\n{side} version ({label}):")
        print(json.dumps(data[f"{side}_row"], ensure_ascii=False, indent=2, sort_keys=True))
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    """Mark a conflict resolved on every side and store where it is recorded (optionally after
    re-applying the lost document version with PRV_DOC_007)."""
    # deferred: psycopg and the conflict rule: ~0.3 s, only for this command
    from streams.apply.conflicts import resolve, restore_document_loser

    conflict = _lookup(args)
    if isinstance(conflict, int):
        return conflict
    settings = _settings(args)
    note = args.note or "reviewed"
    companion = None
    kept_deleted = (conflict.primary.local_row if conflict.primary.winner == "local"
                    else conflict.primary.remote_row).get("deleted") is True
    if args.restore_loser:
        if kept_deleted:
            print(f"platsync conflicts resolve: the kept version of {conflict.conflict_id} is a deletion, which "
                  "PRV_DOC_007 cannot undo: register the lost version again with PRV_DOC_006 (its values: "
                  f"'platsync conflicts show {conflict.conflict_id}'), then resolve without --restore-loser",
                  file=sys.stderr)
            return 1
        result, companion = restore_document_loser(settings, conflict, args.side, args.signed_by)
        note = (f"{note}; restored the {conflict.loser} version on the {args.side} side with PRV_DOC_007 "
                f"(call {result['call_id']})")
        print(f"re-applied the {conflict.loser} version with PRV_DOC_007 on {args.side} "
              f"(call {result['call_id']}); it syncs to the other side like any update")
    if companion is not None and resolve(settings, companion, f"{note} (with document {conflict.primary.row_id})"):
        print(f"conflict {companion.conflict_id} of its signed record resolved with it")
    changed = resolve(settings, conflict, note)
    if not changed:
        print(f"conflict {conflict.conflict_id} was already resolved")
        return 0
    print(f"conflict {conflict.conflict_id} resolved in {', '.join(changed)}: {note}")
    p = conflict.primary
    if not args.restore_loser and p.table in ("documents", "signed_records"):
        how = ("register it again with PRV_DOC_006 (the kept version is a deletion)" if kept_deleted else
               "re-apply it with PRV_DOC_007, or resolve with --restore-loser")
        print(f"the {conflict.loser} version was not kept; to restore it, {how} "
              f"(its values: 'platsync conflicts show {conflict.conflict_id}')")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``conflicts`` subcommand (``list``, ``show``, ``resolve``) to the ``platsync`` parser."""
    p = sub.add_parser("conflicts", help="review concurrent edits resolved by the conflict rule")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("list", parents=[common], help="conflicts of both sides, merged by id")
    q.add_argument("--status", choices=["open", "resolved", "all"], default="open")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    q = actions.add_parser("show", parents=[common], help="both versions of one conflict (exit 3 if unknown)")
    q.add_argument("id", help="conflict id, or a unique prefix of it")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_show)
    q = actions.add_parser("resolve", parents=[common], help="mark a conflict resolved on every side and store")
    q.add_argument("id", help="conflict id, or a unique prefix of it")
    q.add_argument("--note", help="what was decided (kept with the conflict)")
    q.add_argument("--restore-loser", action="store_true",
                   help="first re-apply the lost version of a META document with PRV_DOC_007")
    add_node_option(q, SIDES, default="local", help="node that runs PRV_DOC_007 (default local)")
    q.add_argument("--signed-by", help="signer for the restored record (default: the lost record's signer)")
    q.set_defaults(func=cmd_resolve)
