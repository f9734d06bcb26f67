"""``platsync fhir``: JP-CLINS FHIR documents (docs/fhir.md).

``validate FILE...`` checks documents offline: exit 0 if every file is valid, 1 if any is not (each fault on a
line of its own: ``FILE: entry[3] Condition/abc: Bundle.entry[3].resource.code: rule-id: message``), 2 on a
usage error (an unreadable file, an invalid ``--documents`` file). ``export``/``import`` exchange a patient's
documents as files; ``summary`` and ``submissions`` read the cloud's 6 information summary and submission
queue (exit 3 if the cloud's database is unreachable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.options import add_node_option
from streams.core.errors import PlatSyncError


def cmd_fhir(args: argparse.Namespace) -> int:
    """Run a ``platsync fhir`` action: ``validate``, ``export``, ``import``."""
    if args.fhir_action == "validate":
        return _validate(args)
    if args.fhir_action in ("summary", "submissions"):
        return _cloud_report(args)
    return _exchange(args)


def _cloud_report(args: argparse.Namespace) -> int:
    # deferred: psycopg and the FHIR models (~0.5 s); this module is imported by every run
    import psycopg

    from streams.cli.fhir_report import print_submissions, print_summary  # deferred: with it
    from streams.cli.network import cloud_reader  # deferred: with it
    from streams.runtime.settings import load_settings  # deferred: with it

    settings = cloud_reader(load_settings(args.config, data_dir=args.data_dir))
    try:
        if args.fhir_action == "summary":
            return print_summary(settings, args.patient, args.format, args.institution, args.output)
        return print_submissions(settings, args.status, args.patient, args.format, args.limit)
    except psycopg.OperationalError as exc:
        print(f"platsync fhir {args.fhir_action}: {str(exc).strip().splitlines()[0]} (is the stack up?)",
              file=sys.stderr)
        return 3


def _exchange(args: argparse.Namespace) -> int:
    """``export --patient ID DIR`` / ``import DIR [--patient ID]`` on a node (docs/fhir.md); exit 1 if refused,
    3 if the node's databases are unreachable."""
    # deferred: psycopg, SQLAlchemy and the reference API (~0.7 s); this module is imported by every run
    import psycopg

    from streams.cli.network import resolve_node  # deferred: with it
    from streams.ops.fhir_exchange import ExchangeError, export_patient, import_patient  # deferred: with it
    from streams.runtime.settings import load_settings  # deferred: with it

    settings = load_settings(args.config, data_dir=args.data_dir)
    try:
        link, side = resolve_node(settings, args.side or "local")
        if args.fhir_action == "export":
            docs = export_patient(link, side, args.patient, Path(args.directory))
            print(f"exported {len(docs)} FHIR document(s) of patient {args.patient} to {args.directory}")
            return 0
        registered, skipped = import_patient(link, side, args.patient, Path(args.directory), args.signed_by)
    except (ExchangeError, PlatSyncError, OSError) as exc:
        print(f"platsync fhir {args.fhir_action}: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"platsync fhir {args.fhir_action}: {str(exc).strip().splitlines()[0]} (is the stack up?)",
              file=sys.stderr)
        return 3
    print(f"imported {registered} FHIR document(s) for patient {args.patient}; {skipped} already held")
    return 0


def _validate(args: argparse.Namespace) -> int:
    # deferred: fhir.resources and pydantic (~0.2 s); this module is imported by every 'platsync' run
    from streams.fhir.documents import DocumentTypesError, load_document_types
    from streams.fhir.validate import parse_json, validate_document  # deferred: with it

    try:
        types = load_document_types(args.documents)
    except DocumentTypesError as exc:
        print(f"invalid document types ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    contents: list[tuple[str, bytes]] = []
    for name in args.files:
        try:
            contents.append((name, sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()))
        except OSError as exc:
            print(f"platsync fhir validate: cannot read {name}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
            return 2
    invalid = 0
    for name, data in contents:
        issues = validate_document(data, types)
        if issues:
            invalid += 1
            for issue in issues:
                print(f"{name}: {issue}")
            continue
        bundle, _ = parse_json(data)
        composition = (bundle.get("entry") or [{}])[0].get("resource", {})
        codings = composition.get("type", {}).get("coding", [])
        kind = next((k for c in codings if (k := types.by_code(c.get("system"), c.get("code")))), None)
        print(f"{name}: valid" + (f" ({kind.name}: {kind.title})" if kind else ""))
    if invalid:
        print(f"{invalid} of {len(contents)} file(s) invalid", file=sys.stderr)
    return 1 if invalid else 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``fhir`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("fhir", parents=[common],
                       help="JP-CLINS FHIR documents: validate, export/import, the cloud's summary and "
                                "submissions")
    actions = p.add_subparsers(dest="fhir_action", required=True)
    v = actions.add_parser("validate", parents=[common],
                           help="validate FHIR document Bundles (JSON): R4 structure and the JP-CLINS rules")
    v.add_argument("files", nargs="+", metavar="FILE", help="a Bundle JSON file ('-' for stdin)")
    v.add_argument("--documents", type=Path, metavar="FILE",
                   help="document types file (default: the packaged streams/fhir/documents.toml)")
    v.set_defaults(func=cmd_fhir)
    e = actions.add_parser("export", parents=[common], help="write a patient's FHIR documents and a manifest to DIR")
    add_node_option(e, None, default=None, help="the node whose stores are read (default: local)")
    e.add_argument("--patient", required=True, metavar="ID")
    e.add_argument("directory", metavar="DIR")
    e.set_defaults(func=cmd_fhir)
    i = actions.add_parser("import", parents=[common],
                           help="register the FHIR documents of an export directory (checked first; idempotent)")
    add_node_option(i, None, default=None, help="the node that registers them (default: local)")
    i.add_argument("--patient", required=True, metavar="ID", help="the PLAT patient they are registered for")
    i.add_argument("--signed-by", default="import", help="the signer recorded for the imported documents")
    i.add_argument("directory", metavar="DIR")
    i.set_defaults(func=cmd_fhir)
    s = actions.add_parser("summary", parents=[common],
                           help="a patient's 6 information in the cloud, from their approved shared documents")
    s.add_argument("--patient", required=True, metavar="ID", help="the PLAT patient id")
    s.add_argument("--format", choices=("text", "json", "fhir"), default="text",
                   help="fhir: a 6 information document Bundle (JSON) that passes 'platsync fhir validate'")
    s.add_argument("--institution", metavar="CODE",
                   help="with --format fhir: the institution (医療機関コード) the Bundle is written as; default: "
                        "the custodian of the patient's latest document")
    s.add_argument("--output", "-o", type=Path, metavar="FILE", help="with --format fhir: write to FILE")
    s.set_defaults(func=cmd_fhir)
    q = actions.add_parser("submissions", parents=[common],
                           help="the documents queued for the national sharing service, with receipts and refusals")
    q.add_argument("--status", choices=("queued", "retrying", "accepted", "refused", "superseded", "withdrawn"))
    q.add_argument("--patient", metavar="ID")
    q.add_argument("--limit", type=int, default=200, help="the latest N (default 200)")
    q.add_argument("--format", choices=("text", "json"), default="text")
    q.set_defaults(func=cmd_fhir)
