"""Share rules as data: the shipped file, the decision table, and one precise error per fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.sharing.rules import ShareRulesError, load_share_rules, parse_share_rules


@pytest.mark.parametrize(("doc_type", "department", "author_role", "state", "decided_by"), [
    ("referral", None, "doctor", "shared", "default"),
    ("note", None, "nurse", "shared", "default"),
    ("note", "internal_medicine", "doctor", "shared", "default"),
    ("private_note", None, "doctor", "private", "rule 'private notes'"),
    ("memo", "surgery", "clerk", "private", "rule 'private notes'"),
    ("note", "psychiatry", "doctor", "private", "rule 'psychotherapy notes'"),
    ("psychotherapy_note", "psychiatry", None, "private", "rule 'psychotherapy notes'"),
    ("discharge", "psychiatry", "doctor", "shared", "default"),  # a summary for the next carer is shared
    ("psychotherapy_note", None, "doctor", "shared", "default"),  # no department: the rule needs one
])
def test_shipped_rules_decide(doc_type: str, department: str | None, author_role: str | None, state: str,
                              decided_by: str) -> None:
    decision = load_share_rules().decide(doc_type, department, author_role)
    assert (decision.state, decision.decided_by) == (state, decided_by)


def test_the_first_matching_rule_wins_and_every_criterion_must_match() -> None:
    rules = parse_share_rules({"default": "private", "rules": [
        {"name": "doctors' referrals", "doc_type": ["referral"], "author_role": ["doctor"], "share": "shared"},
        {"name": "all referrals", "doc_type": ["referral"], "share": "private"},
        {"name": "summaries", "doc_type": ["summary", "discharge"], "share": "shared"},
    ]})
    assert rules.decide("referral", None, "doctor").decided_by == "rule \"doctors' referrals\""
    assert rules.decide("referral", None, "nurse").state == "private"
    assert rules.decide("discharge").state == "shared"
    assert rules.decide("note").decided_by == "default" and rules.decide("note").state == "private"


def test_every_fault_is_reported_with_its_path() -> None:
    with pytest.raises(ShareRulesError) as info:
        parse_share_rules({"default": "public", "extra": 1, "rules": [
            {"name": "a", "doc_type": ["note"], "share": "shared"},
            {"name": "a", "doc_type": ["memo"], "share": "private"},
            {"name": "", "doc_type": [], "share": "hidden", "ward": ["3F"]},
            {"name": "no criteria", "share": "private"},
            "not a table",
        ]}, "rules.toml")
    assert [str(f) for f in info.value.faults] == [
        "rules.toml: extra: unknown key; expected default and [[rules]]",
        "rules.toml: default: expected one of shared, private, got 'public'",
        "rules.toml: rules[1].name: duplicate name 'a'; rules[0] has it",
        "rules.toml: rules[2].ward: unknown key; expected one of name, share, doc_type, department, author_role",
        "rules.toml: rules[2].name: expected a non-empty string, got ''",
        "rules.toml: rules[2].share: expected one of shared, private, got 'hidden'",
        "rules.toml: rules[2].doc_type: expected a non-empty list of non-empty strings, got []",
        "rules.toml: rules[3]: a rule needs at least one criterion (doc_type, department, author_role); "
        "use `default` for all documents",
        "rules.toml: rules[4]: expected a table with name, share and criteria",
    ]


def test_a_file_that_is_not_toml_or_missing_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("default = \n")
    with pytest.raises(ShareRulesError, match=r"bad\.toml: not valid TOML: .*line 1"):
        load_share_rules(bad)
    with pytest.raises(ShareRulesError, match=r"missing\.toml: cannot read"):
        load_share_rules(tmp_path / "missing.toml")


def test_the_cli_prints_checks_and_decides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main

    assert main(["sharing", "rules", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1. private notes: private when doc_type in (private_note, memo)" in out and "otherwise: shared" in out
    assert main(["sharing", "decide", "--doc-type", "note", "--department", "psychiatry", "--format", "json",
                 "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"share_state": "private", "decided_by": "rule 'psychotherapy notes'"}
    bad = tmp_path / "rules.toml"
    bad.write_text('default = "public"\n')
    assert main(["sharing", "rules", "--rules", str(bad), "--data-dir", str(tmp_path)]) == 2
    assert f"{bad}: default: expected one of shared, private, got 'public'" in capsys.readouterr().err
    # The settings' share_rules names the file the APIs use; the CLI checks that one by default.
    (tmp_path / "platsync.toml").write_text(f'share_rules = "{bad}"\n')
    assert main(["sharing", "rules", "--data-dir", str(tmp_path)]) == 2


def test_up_refuses_to_start_with_broken_share_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main

    bad = tmp_path / "rules.toml"
    bad.write_text('default = "shared"\n[[rules]]\nname = "x"\nshare = "private"\n')
    (tmp_path / "platsync.toml").write_text(f'share_rules = "{bad}"\n')
    assert main(["up", "--detach", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "invalid share rules (1 fault(s))" in err and f"{bad}: rules[0]: a rule needs at least one criterion" in err
    assert not (tmp_path / "run").exists()  # nothing was started
