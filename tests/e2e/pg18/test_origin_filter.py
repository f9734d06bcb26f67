"""PostgreSQL >= 16: the server leaves the sinks' transactions out of the captured stream (origin = none).

On this package's PostgreSQL 18 stack: the captures stream ``origin = none``, each sink session tags its
transactions with a replication origin of its own, so a change applied on the other side never reaches
that side's capture (not even as an echo to drop), while what is written there directly still does. A
session that cannot set up an origin falls back, with a warning, to the echo rule.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from connectors.sinks.postgres_rows import PostgresRowSink
from connectors.stores.origins import ORIGIN_PREFIX, setup_session_origin
from infra.local.process import log_path
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from streams.runtime.state_files import progress_path

pytestmark = pytest.mark.e2e


def progress(settings: Settings, side: str, store: str) -> dict[str, Any]:
    path = progress_path(settings, side, store)
    return json.loads(path.read_text()) if path.exists() else {"events_produced": 0, "echoes_dropped": 0}


def origins(settings: Settings, side: str) -> dict[str, int]:
    """Each sink origin's local LSN (as an integer) on ``side``, read as the admin."""
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        rows = conn.execute("SELECT o.roname, (s.local_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_origin o "
                            "JOIN pg_replication_origin_status s ON s.local_id = o.roident "
                            "WHERE o.roname LIKE %s", (ORIGIN_PREFIX + "%",)).fetchall()
    return {name: lsn for name, lsn in rows}


def commit_time(settings: Settings, side: str, code: str) -> float:
    """When the transaction that wrote staff ``code`` on ``side`` committed (epoch seconds)."""
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        row = conn.execute("SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM staff "
                           "WHERE staff_code = %s", (code,)).fetchone()
    assert row is not None and row[0] is not None, f"no staff {code} (or no commit time) on {side}"
    return float(row[0])


def staff(settings: Settings, side: str, code: str) -> dict[str, Any]:
    with ReferenceApi(settings, side) as api:
        return api.call("PRV_STF_001", {"staff_code": code, "display_name": "検査 技師", "role": "nurse"})


def test_both_captures_stream_with_origin_none(stack: Stack) -> None:
    s = stack.settings
    for side in ("local", "remote"):
        with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
            assert conn.info.server_version >= 160000
        started = [line for line in log_path(s.data_dir, f"capture-{side}").read_text().splitlines()
                   if f"capture {side} started:" in line]
        assert started, f"capture-{side} never logged its start"
        assert f"{side}.meta (origin = none)" in started[-1] and f"{side}.fructos_own (origin = none)" in started[-1]


def test_an_applied_change_never_reaches_the_capture_while_a_direct_write_does(stack: Stack) -> None:
    s = stack.settings
    assert wait_synced(s, timeout_s=60) == []
    before = progress(s, "remote", "meta")
    origins_before = origins(s, "remote")
    code = f"O-{uuid.uuid4().hex[:8]}"
    staff(s, "local", code)  # applied on the remote by the worker's sink
    assert wait_synced(s, timeout_s=60) == []
    committed = {side: commit_time(s, side, code) for side in ("local", "remote")}
    # Applied after it was written: the apply's commit records its own time, not the session's first
    # commit's (connectors/stores/origins.py: fresh_commit_time).
    assert committed["local"] <= committed["remote"] <= committed["local"] + 60, committed
    advanced = {n: lsn for n, lsn in origins(s, "remote").items() if lsn > origins_before.get(n, 0)}
    assert advanced, f"no sink origin on the remote committed the apply: {origins(s, 'remote')}"

    staff(s, "remote", f"R-{uuid.uuid4().hex[:8]}")  # written on the remote itself: captured there
    deadline = time.monotonic() + 30
    while (after := progress(s, "remote", "meta"))["events_produced"] <= before["events_produced"]:
        assert time.monotonic() < deadline, f"the remote's own write was never captured: {after}"
        time.sleep(0.1)
    # pgoutput sends transactions in commit order: the applied one, committed first, would have
    # arrived before the direct write. It was left out by the server, not dropped as an echo.
    assert after["echoes_dropped"] == before.get("echoes_dropped", 0)
    assert after["events_produced"] == before["events_produced"] + 1
    assert wait_synced(s, timeout_s=60) == []


def test_each_sink_session_takes_an_origin_of_its_own(stack: Stack) -> None:
    s = stack.settings
    first, second = PostgresRowSink(s, "remote", "fructos_patient"), PostgresRowSink(s, "remote", "fructos_patient")
    try:
        first.setup()
        second.setup()
        assert first.origin and second.origin and first.origin != second.origin
        assert first.origin.startswith(ORIGIN_PREFIX) and second.origin.startswith(ORIGIN_PREFIX)
        first.close()
        third = PostgresRowSink(s, "remote", "fructos_patient")  # takes a free one, maybe the one first had
        try:
            third.setup()
            assert third.origin is not None and third.origin != second.origin
        finally:
            third.close()
    finally:
        first.close()
        second.close()


def test_a_session_without_a_free_origin_or_the_grant_falls_back_with_a_warning(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    s = stack.settings
    apply_dsn = libpq_dsn(s, "remote", "meta", "apply")
    with psycopg.connect(apply_dsn) as holder, psycopg.connect(apply_dsn) as late:
        name = setup_session_origin(holder, "holder", pool=64)
        assert name is not None and name.startswith(ORIGIN_PREFIX)
        pool = int(name.removeprefix(ORIGIN_PREFIX)) + 1  # every origin up to the holder's is taken
        with caplog.at_level(logging.WARNING, logger="platsync.origins"):
            assert setup_session_origin(late, "late", pool=pool) is None
        assert "late: no replication origin (every origin of the pool is in use)" in caplog.text
        # The session still works: its transactions are untagged, and dropped as echoes by their marker.
        assert late.execute("SELECT 1").fetchone() == (1,)
    caplog.clear()
    # The application's role has no EXECUTE on the origin functions (only the apply role has).
    with psycopg.connect(libpq_dsn(s, "remote", "meta", "app")) as conn:
        with caplog.at_level(logging.WARNING, logger="platsync.origins"):
            assert setup_session_origin(conn, "app", pool=4) is None
    assert "app: no replication origin (permission denied for function" in caplog.text
