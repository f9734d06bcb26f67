"""Every command that took ``--side`` takes ``--node``; ``--side`` stays an alias (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli.main import build_parser, main


@pytest.mark.parametrize("argv", [
    ["call", "PRV_STF_001", "{flag}", "remote", "--file", "-"],
    ["inspect", "{flag}", "remote", "--store", "meta", "--entity", "staff", "--id", "x"],
    ["mode", "set", "emergency", "{flag}", "remote"],
    ["mode", "show", "{flag}", "remote"],
    ["resync", "{flag}", "remote"],
    ["conflicts", "resolve", "abc", "--restore-loser", "{flag}", "remote"],
    ["stamp", "{flag}", "remote"],
])
@pytest.mark.parametrize("flag", ["--node", "--side"])
def test_node_and_side_name_the_same_option(argv: list[str], flag: str) -> None:
    args = build_parser().parse_args([a.replace("{flag}", flag) for a in argv])
    assert args.side == "remote"


def test_an_unknown_node_is_refused_with_the_known_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["mode", "show", "--node", "hosp-x"])
    assert exc.value.code == 2
    assert "argument --node/--side: invalid choice: 'hosp-x' (choose from 'local', 'remote', 'both')" \
        in capsys.readouterr().err
    # call and inspect check the name against the data dir's topology (a network has other nodes)
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    assert main(["call", "PRV_STF_001", "--node", "hosp-x", "--file", str(payload), "--data-dir", str(tmp_path)]) == 2
    assert "unknown node 'hosp-x'; known: local, remote" in capsys.readouterr().err
