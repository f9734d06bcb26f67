"""``platsync sharing rules|decide``: validate and show the share rules, and what they decide."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streams.runtime.settings import load_settings
from streams.sharing.rules import ShareRules, ShareRulesError, load_share_rules


def _rules(args: argparse.Namespace) -> ShareRules:
    if args.rules is not None:
        return load_share_rules(args.rules)
    configured = load_settings(args.config, data_dir=args.data_dir).share_rules
    return load_share_rules(Path(configured) if configured else None)


def cmd_sharing(args: argparse.Namespace) -> int:
    """``rules``: print the validated rules in order; ``decide``: the state they give one document."""
    try:
        rules = _rules(args)
    except ShareRulesError as exc:
        print(f"invalid share rules ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    if args.action == "decide":
        if not args.doc_type:
            print("platsync sharing decide: --doc-type is required", file=sys.stderr)
            return 2
        decision = rules.decide(args.doc_type, args.department, args.author_role)
        if args.format == "json":
            print(json.dumps({"share_state": decision.state, "decided_by": decision.decided_by}, ensure_ascii=False))
        else:
            print(f"{decision.state} (decided by {decision.decided_by})")
        return 0
    doc = {"file": rules.path, "default": rules.default,
           "rules": [{"name": r.name, "share": r.share, **{k: list(v) for k, v in r.criteria}} for r in rules.rules]}
    if args.format == "json":
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 0
    print(f"share rules: {rules.path}")
    for i, r in enumerate(rules.rules, 1):
        when = " and ".join(f"{k} in ({', '.join(v)})" for k, v in r.criteria)
        print(f"  {i}. {r.name}: {r.share} when {when}")
    print(f"  otherwise: {rules.default}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``sharing`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("sharing", parents=[common],
                       help="validate and print the share rules, or what they decide for a document")
    p.add_argument("action", choices=["rules", "decide"])
    p.add_argument("--rules", type=Path, help="share rules TOML (default: the settings' share_rules, else the "
                   "shipped streams/sharing/share_rules.toml)")
    p.add_argument("--doc-type", help="decide: the document's type")
    p.add_argument("--department", help="decide: the department it was written in")
    p.add_argument("--author-role", help="decide: the role of the staff member who signed it")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_sharing)
