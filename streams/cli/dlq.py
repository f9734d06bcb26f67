"""``platsync dlq list|show|retry``: inspect dead letters and re-drive them after a fix."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from streams.core.model import ROUTES
from streams.runtime.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir)


def _since_ms(text: str | None) -> int | None:
    if text is None:
        return None
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"--since {text!r} needs a UTC offset, e.g. 2026-11-22T09:00:00+09:00")
    return int(when.timestamp() * 1000)


def _summary(letter: Any, marks: dict[str, Any], reveal: bool) -> dict[str, Any]:
    # deferred: Kafka and Avro clients: ~0.3 s, only for this command
    from streams.ops.dlq import summary

    return summary(letter, marks, reveal)


def _load(args: argparse.Namespace) -> tuple[Settings, list[Any], dict[str, Any]]:
    # deferred: Kafka and Avro clients: ~0.3 s, only for this command
    from streams.ops.dlq import read_dead_letters, read_retry_marks, select

    settings = _settings(args)
    routes = [args.route] if getattr(args, "route", None) else list(ROUTES)
    letters = read_dead_letters(settings, routes)
    marks = read_retry_marks(settings)
    chosen = select(letters, marks, kind=getattr(args, "kind", None), since_ms=_since_ms(getattr(args, "since", None)),
                    status=getattr(args, "status", "all"))
    return settings, chosen, marks


def cmd_list(args: argparse.Namespace) -> int:
    """List dead letters (newest last) with their kind, source position, status and a redacted error."""
    _settings_, letters, marks = _load(args)
    rows = [_summary(letter, marks, args.reveal) for letter in letters]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("no dead letters" + (" matching the filter" if args.kind or args.since or args.status != "all" else ""))
        return 0
    print(f"{'ID':<24} {'FAILED (UTC)':<24} {'KIND':<18} {'STATUS':<8} {'SOURCE':<36} ERROR")
    for row in rows:
        error = row["error"].replace("\n", " ")
        print(f"{row['id']:<24} {row['failed']:<24} {row['kind']:<18} {row['status']:<8} {row['source']:<36} "
              f"{error[:100]}{'…' if len(error) > 100 else ''}")
    pending = sum(1 for r in rows if r["status"] == "pending")
    print(f"{len(rows)} dead letter(s), {pending} pending; 'platsync dlq show ID' for one, "
          f"'platsync dlq retry ID' to re-drive")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one dead letter: metadata, error, hint and what its original bytes are."""
    # deferred: Kafka and Avro clients: ~0.3 s, only for this command
    from streams.ops.dlq import describe_original, message_codec

    settings, letters, marks = _load(args)
    letter = next((x for x in letters if x.id == args.id), None)
    if letter is None:
        print(f"no dead letter {args.id!r} (ids look like local_to_remote:0:12; see 'platsync dlq list')",
              file=sys.stderr)
        return 3
    shown = _summary(letter, marks, args.reveal)
    shown["original"] = describe_original(letter.record["original_value"], args.reveal, message_codec(settings))
    if args.json:
        print(json.dumps(shown, ensure_ascii=False, indent=2))
        return 0
    for name in ("id", "route", "failed", "kind", "source", "key", "status", "retried", "error", "hint"):
        if shown[name] is not None:
            print(f"{name + ':':<9} {shown[name]}")
    print("original:")
    for name, value in shown["original"].items():
        if name == "row" and isinstance(value, dict):
            print("  row:")
            for column, cell in value.items():
                print(f"    {column}: {cell}")
        else:
            print(f"  {name}: {value}")
    if not args.reveal:
        print("(values hidden; --reveal shows the row's values and the store's full error)")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Re-drive dead letters: produce their original bytes to their source topic again."""
    # deferred: Kafka and Avro clients: ~0.3 s, only for this command
    from streams.ops.dlq import DeadLetterError, retry

    if not args.ids and not args.all:
        print("name dead-letter ids or pass --all (with --route/--kind/--since to narrow it)", file=sys.stderr)
        return 2
    args.status = "all" if args.ids or args.again else "pending"
    settings, letters, marks = _load(args)
    if args.ids:
        by_id = {x.id: x for x in letters}
        unknown = [i for i in args.ids if i not in by_id]
        if unknown:
            print(f"no dead letter(s) {', '.join(unknown)} (see 'platsync dlq list')", file=sys.stderr)
            return 3
        letters = [by_id[i] for i in args.ids]
    if args.dry_run:
        for letter in letters:
            state = "already retried" if letter.id in marks else "would re-drive"
            print(f"{letter.id}: {state} to {letter.record['source_topic']} ({letter.kind})")
        return 0
    try:
        done = retry(settings, letters, marks, again=args.again)
    except DeadLetterError as exc:
        print(f"platsync dlq retry: {exc}", file=sys.stderr)
        return 1
    print(f"{len(done)} dead letter(s) re-driven; a message that fails again becomes a new dead letter")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``dlq`` subcommand group to the ``platsync`` parser."""
    # ``common`` (--data-dir, --config) goes on each action only: on both levels argparse would let the
    # action's defaults overwrite what was given before it.
    p = sub.add_parser("dlq", help="list, show and re-drive dead letters")
    actions = p.add_subparsers(dest="dlq_action", required=True)

    def filters(q: argparse.ArgumentParser, status: bool = True) -> None:
        q.add_argument("--route", choices=list(ROUTES))
        q.add_argument("--kind", help="only this error kind (decode, unknown_api, sink_rejected, ...)")
        q.add_argument("--since", help="only dead letters since this ISO-8601 time with offset")
        if status:
            q.add_argument("--status", choices=["pending", "retried", "all"], default="all")

    q = actions.add_parser("list", parents=[common], help="dead letters with kind, source, status, error")
    filters(q)
    q.add_argument("--json", action="store_true")
    q.add_argument("--reveal", action="store_true", help="print stores' errors unredacted (may show patient data)")
    q.set_defaults(func=cmd_list)
    q = actions.add_parser("show", parents=[common], help="one dead letter and what its original bytes are")
    q.add_argument("id")
    q.add_argument("--json", action="store_true")
    q.add_argument("--reveal", action="store_true", help="print the row's values (patient data)")
    q.set_defaults(func=cmd_show, route=None)
    q = actions.add_parser("retry", parents=[common], help="re-drive dead letters to their source topic")
    q.add_argument("ids", nargs="*", metavar="ID")
    q.add_argument("--all", action="store_true", help="every pending dead letter matching the filters")
    filters(q, status=False)
    q.add_argument("--again", action="store_true", help="also re-drive letters retried before")
    q.add_argument("--dry-run", action="store_true", help="say what would be re-driven")
    q.set_defaults(func=cmd_retry, status="pending")

