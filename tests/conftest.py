"""Shared fixtures: real PostgreSQL instances for both sides (started once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.runtime.settings import Settings
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir, running_postgres


@pytest.fixture(scope="session")
def pg_settings() -> Iterator[Settings]:
    """Settings of a data dir whose two PostgreSQL instances run, with every store provisioned."""
    data_dir = make_data_dir("platsync-pg-")
    settings = isolated_settings(data_dir)
    try:
        with running_postgres(settings):
            yield settings
    finally:
        remove_data_dir(data_dir)
