"""A capture waiting for an unreachable database says so in `platsync status`, and stops saying so."""

from __future__ import annotations

from pathlib import Path

import psycopg

from connectors.capture.runner import _retrying
from infra.local.process import free_port
from streams.cli.status import collect_status
from streams.runtime.settings import load_settings
from streams.runtime.state_files import retrying_path


def test_retry_is_visible_while_it_lasts_and_cleared_after(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path, pg_local_port=free_port(), pg_remote_port=free_port())
    retry_file = retrying_path(settings, "local")
    closed = free_port()
    seen_while_retrying: list[list[str]] = []
    attempts = 0

    def action() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            psycopg.connect(f"host=127.0.0.1 port={closed} connect_timeout=1")  # nothing listens: fails
        seen_while_retrying.append([e for e in collect_status(settings)["errors"] if e.startswith("capture local")])
        return "done"

    assert _retrying(action, "local Keycloak database", retry_file) == "done"
    assert attempts == 3
    (errors,) = seen_while_retrying
    assert errors and "local Keycloak database unreachable, retrying" in errors[0]
    assert not retry_file.exists()
    assert not [e for e in collect_status(settings)["errors"] if e.startswith("capture")]


def test_publisher_groups_consecutive_events_within_both_limits() -> None:
    from connectors.capture.publisher import _groups

    items = [(f"e{i}", b"x" * size) for i, size in enumerate([10, 10, 10, 50, 10, 200, 10])]
    groups = [[name for name, _ in g] for g in _groups(items, 3, 60)]  # type: ignore[arg-type]
    # at most 3 events and 60 bytes per message, order kept, a 200-byte event alone
    assert groups == [["e0", "e1", "e2"], ["e3", "e4"], ["e5"], ["e6"]]
    assert [n for g in groups for n in g] == [name for name, _ in items]
    assert list(_groups([], 3, 60)) == []
