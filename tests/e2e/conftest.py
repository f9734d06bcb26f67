"""The real embedded stack (PostgreSQL x2, broker, Debezium captures, Faust workers), once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.stack import Stack
from streams.settings import Settings
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """A running two-site stack on free ports; drained and stopped at the end of the session."""
    data_dir = make_data_dir("platsync-e2e-")
    settings = isolated_settings(data_dir)
    running = Stack(settings)
    try:
        running.up(say=lambda m: print(f"[stack] {m}"))
        yield running
    finally:
        running.down(say=lambda m: print(f"[stack] {m}"), drain_timeout_s=30)
        remove_data_dir(data_dir)


@pytest.fixture(scope="session")
def stack_settings(stack: Stack) -> Settings:
    """Settings of the session's running stack."""
    return stack.settings
