"""Connections kept between a polling loop's rounds (streams/runtime/kept_connections.py), on a real
PostgreSQL: reused, replaced after an error or when the server dropped them, closed at the end."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from streams.runtime.connections import libpq_dsn
from streams.runtime.kept_connections import KeptConnections
from streams.runtime.settings import Settings

pytestmark = pytest.mark.e2e


def _pid(kept: KeptConnections, dsn: str, **kwargs: object) -> int:
    with kept.connect(dsn, **kwargs) as conn:
        row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
        assert row is not None
        return int(row["pid"] if isinstance(row, dict) else row[0])


def test_a_connection_is_kept_and_replaced_when_it_failed_or_was_dropped(pg_settings: Settings) -> None:
    dsn = libpq_dsn(pg_settings, "local", "meta", "operator")
    kept = KeptConnections()
    try:
        first = _pid(kept, dsn)
        assert _pid(kept, dsn) == first  # the same backend: no new connection, no new authentication
        assert _pid(kept, dsn, row_factory=dict_row) != first  # another row factory: a connection of its own
        with pytest.raises(psycopg.errors.UndefinedTable), kept.connect(dsn) as conn:
            conn.execute("SELECT * FROM no_such_table")
        after_error = _pid(kept, dsn)
        assert after_error != first  # a connection that raised is closed, not kept
        with psycopg.connect(libpq_dsn(pg_settings, "local", "meta"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (after_error,))
        assert _pid(kept, dsn) not in (first, after_error)  # dropped by the server: replaced, no error
    finally:
        kept.close()
    with psycopg.connect(libpq_dsn(pg_settings, "local", "meta"), autocommit=True) as admin:
        left = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'platsync_operator'").fetchone()
    assert left == (0,)


def test_concurrent_callers_each_get_a_connection_and_one_is_kept(pg_settings: Settings) -> None:
    dsn = libpq_dsn(pg_settings, "local", "meta", "operator")
    kept = KeptConnections()
    inside = threading.Barrier(2)
    pids: list[int] = []

    def call() -> None:
        with kept.connect(dsn) as conn:
            inside.wait(timeout=10)  # both hold a connection at once
            pids.append(int(conn.execute("SELECT pg_backend_pid()").fetchone()[0]))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert len(set(pids)) == 2
        assert _pid(kept, dsn) in pids  # one of them was kept, the other closed
    finally:
        kept.close()
