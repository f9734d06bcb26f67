"""``platsync master import|targets|generate``: the hospital's MHLW master and its sync targets (docs/master.md).

An import writes only the real difference between the file and ``master_medical_orgs``; target edits change
``sync_target_orgs``. The database's triggers and the capture's row filter do the rest: only target rows cross,
an added target's row is sent, a removed one's cloud copy is deleted. Both work with the link down: the changes
cross when it returns. Exit codes: 0 done; 1 the file was refused (or, with ``--strict``, had an invalid row);
2 usage; 3 the hospital's database is unreachable or busy with another import.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from streams.cli.network import UnknownNodeError, resolve_node
from streams.cli.options import add_node_option
from streams.core.errors import PlatSyncError
from streams.master.codes import InvalidCode, parse_code
from streams.master.csv_input import read_master
from streams.master.diff import diff_master
from streams.master.synthetic import changed, generate_rows, to_csv
from streams.master.targets_file import diff_targets, read_targets
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import load_settings

HOSPITAL_SIDE = "local"
MAX_ERRORS_SHOWN = 50


def _connect(args: argparse.Namespace) -> Any:
    """A connection to the node's META as the hospital application (``platsync_app``)."""
    # deferred: psycopg (~0.2 s); this module is imported by every 'platsync' run
    import psycopg

    # deferred: psycopg, as above
    from connectors.stores.master_store import LOCK_KEY, MasterBusyError

    settings = load_settings(args.config, data_dir=args.data_dir)
    link, side = resolve_node(settings, args.side or HOSPITAL_SIDE)
    if side != HOSPITAL_SIDE:
        raise UnknownNodeError(f"{args.side} is a cloud node: the master is imported and its targets chosen on the "
                               "hospital (its cloud copy is written by the sync only)")
    conn = psycopg.connect(libpq_dsn(link, side, "meta", "app") + " connect_timeout=5")
    # One import or target edit at a time, from its read to its write: held until the connection closes.
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
        conn.close()
        raise MasterBusyError("another master import or target edit is running on this hospital; retry after it")
    conn.commit()
    return conn


def _say(message: str) -> None:
    print(f"[master] {message}", flush=True)


def _report_errors(errors: list[Any], what: str) -> None:
    if not errors:
        return
    print(f"{len(errors)} invalid {what} left out:", file=sys.stderr)
    for error in errors[:MAX_ERRORS_SHOWN]:
        print(f"  {error}", file=sys.stderr)
    if len(errors) > MAX_ERRORS_SHOWN:
        print(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    """Import a master CSV: read, compare, write the difference."""
    # deferred: psycopg and the store's SQL, as above
    from connectors.stores.master_store import master_rows, write_import

    path = Path(args.file)
    started = time.perf_counter()
    master = read_master(path.read_bytes(), args.encoding)
    _say(f"read {path}: {len(master.rows):,} valid rows ({master.encoding}) in {time.perf_counter() - started:.1f} s")
    if master.ignored_columns:
        _say(f"columns ignored: {', '.join(master.ignored_columns)}")
    _report_errors(master.errors, "row value(s)")
    if master.errors and args.strict:
        print("refused (--strict): fix the rows above; nothing was written", file=sys.stderr)
        return 1
    with _connect(args) as conn:
        current = master_rows(conn)
        conn.commit()
        diff = diff_master(current, master.rows, remove_missing=not args.keep_missing)
        _say(f"compared with master_medical_orgs ({len(current):,} rows): {diff.summary()}")
        if args.dry_run or diff.empty:
            _say("dry run: nothing written" if args.dry_run else "nothing to write: no change event")
            return 0
        result = write_import(conn, diff, f"master-import:{uuid.uuid4()}")
    _say(f"written in {result.seconds:.1f} s ({result.inserted:,} new, {result.updated:,} changed, "
         f"{result.deleted:,} gone); {result.targets_changed} of them are sync targets and cross to the cloud")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    """List, add, remove or apply the sync targets."""
    # deferred: psycopg and the store's SQL, as above
    from connectors.stores.master_store import change_targets, list_targets, target_notes

    call_id = f"master-targets:{uuid.uuid4()}"
    if args.action in ("add", "remove"):
        codes = []
        for code in args.codes:
            try:
                codes.append(parse_code(code).code)
            except InvalidCode as exc:
                print(f"platsync master targets {args.action}: {code!r}: {exc}", file=sys.stderr)
                return 2
        if not codes:
            print(f"platsync master targets {args.action}: name at least one institution code", file=sys.stderr)
            return 2
    with _connect(args) as conn:
        if args.action == "list":
            return _print_targets(list_targets(conn), args.format)
        if args.action == "add":
            done, _ = change_targets(conn, call_id, upsert={c: args.note for c in codes})
            _say(f"{done} target(s) added or re-noted; their master rows cross to the cloud")
            return 0
        if args.action == "remove":
            _, done = change_targets(conn, call_id, remove=codes)
            _say(f"{done} target(s) removed; their copies in the cloud are deleted")
            return 0
        path = Path(args.file)
        wanted = read_targets(path.read_bytes(), path.name)
        _report_errors(wanted.errors, "entries")
        if wanted.errors:
            print("refused: fix the entries above (apply makes the table equal to the file, so a partly read "
                  "file would remove targets); nothing was written", file=sys.stderr)
            return 1
        diff = diff_targets(target_notes(conn), wanted.targets)
        _say(f"{path} ({wanted.format}): {diff.summary()}")
        for line in diff.lines():
            print(f"  {line}")
        if args.dry_run or diff.empty:
            _say("dry run: nothing written" if args.dry_run else "the table already equals the file")
            return 0
        change_targets(conn, call_id, upsert={**diff.added, **diff.note_changed}, remove=diff.removed)
        _say("applied")
    return 0


def _print_targets(targets: list[Any], fmt: str) -> int:
    if fmt == "json":
        print(json.dumps([t.__dict__ for t in targets], ensure_ascii=False, indent=2))
        return 0
    if not targets:
        print("no sync targets: no institution of the master reaches the cloud")
    for t in targets:
        held = f"{t.name} (version {t.version})" if t.name is not None else "not in the master (sent once imported)"
        print(f"{t.medical_id}  {held}" + (f"  note: {t.note}" if t.note else ""))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Write a synthetic master (invented institutions), or a changed copy of one."""
    rows = list(generate_rows(args.rows, args.seed))
    if args.changed:
        rows = changed(rows, args.changed, seed=args.seed + 1)
    Path(args.file).write_bytes(to_csv(rows, args.encoding))
    _say(f"wrote {args.file}: {len(rows):,} synthetic institutions ({args.encoding}, seed {args.seed}"
         + (f", {args.changed:.1%} changed" if args.changed else "") + ")")
    return 0


def cmd_master(args: argparse.Namespace) -> int:
    """Dispatch ``platsync master``; errors become exit codes with their message (see the module doc)."""
    # deferred: psycopg (~0.2 s); this module is imported by every 'platsync' run
    import psycopg

    # deferred: psycopg, as above
    from connectors.stores.master_store import MasterBusyError

    try:
        return int(args.master_func(args))
    except UnknownNodeError as exc:
        print(f"platsync master: {exc}", file=sys.stderr)
        return 2
    except (MasterBusyError, psycopg.OperationalError) as exc:
        print(f"platsync master: {str(exc).strip().splitlines()[0]}"
              + ("" if isinstance(exc, MasterBusyError) else " (is the stack up? 'platsync status')"), file=sys.stderr)
        return 3
    except (PlatSyncError, OSError, psycopg.Error) as exc:  # a refused file, a row the database refuses
        print(f"platsync master: {exc}", file=sys.stderr)
        return 1


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``master`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("master", help="the MHLW medical institution master: import, sync targets, synthetic data")
    actions = p.add_subparsers(dest="master_command", required=True)

    imp = actions.add_parser("import", parents=[common], help="import a master CSV: write only the difference")
    add_node_option(imp, None, default=None, help="the hospital (default: local)")
    imp.add_argument("file", help="the master CSV (UTF-8 or Shift_JIS/CP932, with a header; docs/master.md)")
    imp.add_argument("--encoding", choices=["utf-8", "cp932"], help="the file's encoding (default: detected)")
    imp.add_argument("--strict", action="store_true", help="write nothing if any row is invalid (exit 1)")
    imp.add_argument("--keep-missing", action="store_true",
                     help="a partial file: keep institutions it does not list (default: they are deleted)")
    imp.add_argument("--dry-run", action="store_true", help="print the difference, write nothing")
    imp.set_defaults(func=cmd_master, master_func=cmd_import)

    tgt = actions.add_parser("targets", parents=[common], help="the institutions whose rows reach the cloud")
    add_node_option(tgt, None, default=None, help="the hospital (default: local)")
    tgt.add_argument("action", choices=["list", "add", "remove", "apply"])
    tgt.add_argument("codes", nargs="*", metavar="CODE|FILE",
                     help="add, remove: institution codes; apply: a YAML (sync_targets:) or CSV file")
    tgt.add_argument("--note", help="add: the note kept with the targets")
    tgt.add_argument("--dry-run", action="store_true", help="apply: print the difference, write nothing")
    tgt.add_argument("--format", choices=["text", "json"], default="text", help="list: the output")
    tgt.set_defaults(func=cmd_master, master_func=_targets_entry)

    gen = actions.add_parser("generate", parents=[common],
                             help="write a synthetic master CSV (invented, realistic institutions)")
    gen.add_argument("file")
    gen.add_argument("--rows", type=int, default=100_000)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--encoding", choices=["utf-8", "cp932"], default="cp932")
    gen.add_argument("--changed", type=float, default=0.0, metavar="FRACTION",
                     help="change this fraction of the rows (a new administrator and phone), e.g. 0.01")
    gen.set_defaults(func=cmd_master, master_func=cmd_generate)


def _targets_entry(args: argparse.Namespace) -> int:
    if args.action == "apply":
        if len(args.codes) != 1:
            print("platsync master targets apply: name one file", file=sys.stderr)
            return 2
        args.file = args.codes[0]
    return cmd_targets(args)
