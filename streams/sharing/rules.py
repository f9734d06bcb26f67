"""Share rules as data: which documents are shared beyond their institution, and why.

Pure core: reads a TOML file and decides, no I/O beyond reading that file. The rules decide a
document's *default* share state when it is registered; its author may change it afterwards
(``docs/sharing.md``). Every fault of a rules file is reported in one :class:`ShareRulesError`,
each with the file, a dotted path and what was expected, like the routing matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.core.errors import FileFault, FileFaultsError, read_toml

SHARE_STATES: tuple[str, ...] = ("shared", "private")
#: What a rule may match on, each the name of a document attribute.
CRITERIA: tuple[str, ...] = ("doc_type", "department", "author_role")
_RULE_KEYS: tuple[str, ...] = ("name", "share", *CRITERIA)


def default_share_rules_path() -> Path:
    """The share rules shipped with the engine (``streams/sharing/share_rules.toml``)."""
    return Path(__file__).with_name("share_rules.toml")


#: One problem in a share rules file: the file, the dotted path inside it, what was expected.
ShareRuleFault = FileFault


class ShareRulesError(FileFaultsError):
    """A share rules file is invalid; ``faults`` lists every problem found."""


@dataclass(frozen=True)
class ShareRule:
    """One rule: the share state it gives to a document matching every criterion it names."""

    name: str
    share: str
    criteria: tuple[tuple[str, tuple[str, ...]], ...]  # (criterion, accepted values), in CRITERIA order

    def matches(self, attributes: Mapping[str, str | None]) -> bool:
        """True if the document's attributes satisfy every criterion of the rule."""
        return all(attributes.get(name) in values for name, values in self.criteria)


@dataclass(frozen=True)
class ShareDecision:
    """A document's share state and what decided it (a rule's name, or ``default``)."""

    state: str
    decided_by: str


@dataclass(frozen=True)
class ShareRules:
    """The validated rules of one file, in order, and the default."""

    rules: tuple[ShareRule, ...]
    default: str
    path: str = ""

    def decide(self, doc_type: str, department: str | None = None, author_role: str | None = None) -> ShareDecision:
        """The share state the rules give a document: the first matching rule's, else the default."""
        attributes = {"doc_type": doc_type, "department": department, "author_role": author_role}
        for rule in self.rules:
            if rule.matches(attributes):
                return ShareDecision(rule.share, f"rule {rule.name!r}")
        return ShareDecision(self.default, "default")


def load_share_rules(path: Path | None = None) -> ShareRules:
    """Load and validate a share rules file (the shipped one by default).

    Raises :class:`ShareRulesError` with every fault, or with the TOML syntax error and its position.
    """
    path = path or default_share_rules_path()
    data = read_toml(path, ShareRulesError)
    return parse_share_rules(data, str(path))


def parse_share_rules(data: Mapping[str, Any], file: str = "<rules>") -> ShareRules:
    """Validate already-parsed rules (``load_share_rules`` without the file)."""
    faults: list[ShareRuleFault] = []

    def fault(where: str, message: str) -> None:
        faults.append(ShareRuleFault(file, where, message))

    for key in data:
        if key not in ("default", "rules"):
            fault(key, "unknown key; expected default and [[rules]]")
    default = data.get("default")
    if default not in SHARE_STATES:
        fault("default", f"expected one of {', '.join(SHARE_STATES)}, got {default!r}")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        fault("rules", "expected an array of tables ([[rules]])")
        raw_rules = []
    rules: list[ShareRule] = []
    names: dict[str, int] = {}
    for i, entry in enumerate(raw_rules):
        rule = _check_rule(f"rules[{i}]", entry, fault)
        if rule is None:
            continue
        if rule.name in names:
            fault(f"rules[{i}].name", f"duplicate name {rule.name!r}; rules[{names[rule.name]}] has it")
        names.setdefault(rule.name, i)
        rules.append(rule)
    if faults:
        raise ShareRulesError(faults)
    return ShareRules(tuple(rules), str(default), file)


def _check_rule(where: str, entry: Any, fault: Any) -> ShareRule | None:
    if not isinstance(entry, dict):
        fault(where, "expected a table with name, share and criteria")
        return None
    ok = True
    for key in entry:
        if key not in _RULE_KEYS:
            fault(f"{where}.{key}", f"unknown key; expected one of {', '.join(_RULE_KEYS)}")
            ok = False
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        fault(f"{where}.name", f"expected a non-empty string, got {name!r}")
        ok = False
    share = entry.get("share")
    if share not in SHARE_STATES:
        fault(f"{where}.share", f"expected one of {', '.join(SHARE_STATES)}, got {share!r}")
        ok = False
    criteria: list[tuple[str, tuple[str, ...]]] = []
    for criterion in CRITERIA:
        if criterion not in entry:
            continue
        values = entry[criterion]
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, str) and v.strip() for v in values)):
            fault(f"{where}.{criterion}", f"expected a non-empty list of non-empty strings, got {values!r}")
            ok = False
            continue
        criteria.append((criterion, tuple(values)))
    if not criteria and not any(c in entry for c in CRITERIA):
        fault(where, f"a rule needs at least one criterion ({', '.join(CRITERIA)}); use `default` for all documents")
        ok = False
    return ShareRule(str(name), str(share), tuple(criteria)) if ok else None
