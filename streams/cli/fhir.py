"""``platsync fhir validate FILE...``: validate JP-CLINS FHIR documents offline (docs/fhir.md).

Exit 0 if every file is valid, 1 if any is not (each fault on a line of its own:
``FILE: entry[3] Condition/abc: Bundle.entry[3].resource.code: rule-id: message``), 2 on a usage error
(an unreadable file, an invalid ``--documents`` file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_fhir(args: argparse.Namespace) -> int:
    """Run a ``platsync fhir`` action (today: ``validate``)."""
    return _validate(args)


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
    p = sub.add_parser("fhir", parents=[common], help="JP-CLINS FHIR documents: validate them offline")
    actions = p.add_subparsers(dest="fhir_action", required=True)
    v = actions.add_parser("validate", parents=[common],
                           help="validate FHIR document Bundles (JSON): R4 structure and the JP-CLINS rules")
    v.add_argument("files", nargs="+", metavar="FILE", help="a Bundle JSON file ('-' for stdin)")
    v.add_argument("--documents", type=Path, metavar="FILE",
                   help="document types file (default: the packaged streams/fhir/documents.toml)")
    v.set_defaults(func=cmd_fhir)
