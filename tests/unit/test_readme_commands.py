"""Every ``platsync`` command (and every action of a command group) is documented in the README."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.main import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(parser: argparse.ArgumentParser, prefix: str = "platsync") -> list[str]:
    found = []
    for action in parser._actions:  # argparse has no public view of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix} {name}")
                found.extend(nested or [f"{prefix} {name}"])
    return found


def test_every_command_is_in_the_readme_operations() -> None:
    text = README.read_text(encoding="utf-8")
    commands = _commands(build_parser())
    assert "platsync dlq retry" in commands and "platsync up" in commands
    missing = [c for c in commands if f"`{c}" not in text]
    assert not missing, f"commands without a README entry: {missing}"
