"""The capture reads back, from real PostgreSQL, a transaction marker whose row Debezium did not deliver.

Debezium's resume after a restart can drop the first change of the first transaction it streams, and by
the integration contract that change is the API marker (connectors/capture/envelope.py). The rows fed
to the stamper here are the real captured signed-record insert (tests/fixtures/debezium), given the
transaction id of a transaction committed on the real database, without its marker row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.capture.envelope import Marker, TransactionStamper
from connectors.capture.marker_lookup import marker_lookup
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "debezium" / "fructos_signed_insert.json"
MARK_SYNC_SQL = ("INSERT INTO platsync_txn_marker (api_id, origin_side, applied_by_sync) "
                 "VALUES (%s, %s, true) RETURNING txid")


def commit(settings: Settings, *statements: tuple[str, tuple[Any, ...]], role: str = "app") -> int:
    """Run ``statements`` as ``role`` in one transaction of the hospital's fructos_own; its 32-bit id (Debezium's
    txId)."""
    with psycopg.connect(libpq_dsn(settings, "local", "fructos_own", role)) as conn:
        for sql, args in statements:
            conn.execute(sql, args)
        return int(conn.execute("SELECT txid_current()").fetchone()[0]) % 2**32


def row_of(txid: int, lsn: int) -> str:
    """The real captured signed-record insert, as if transaction ``txid`` had written it at ``lsn``."""
    records = json.loads(FIXTURE.read_text(encoding="utf-8"))["records"]
    value = next(json.loads(r["value"]) for r in records if '"signed_records"' in r["value"])
    value["source"].update(txId=txid, lsn=lsn)
    return json.dumps(value)


def stamper_reading(settings: Settings, asked: list[int]) -> TransactionStamper:
    lookup = marker_lookup(lambda: libpq_dsn(settings, "local", "fructos_own", "capture"), "local.fructos_own",
                           lambda action, _what: action())

    def counted(txid: int) -> Marker | None:
        asked.append(txid)
        return lookup(txid)

    return TransactionStamper("local", "fructos_own", lookup_marker=counted)


def test_an_api_transaction_s_rows_get_its_marker_from_the_store(pg_settings: Settings,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    xid = commit(pg_settings, ("SELECT platsync_mark_api(%s, %s)", ("PRV_DOC_006", "call-lookup")),
                 ("SELECT platsync_mark_api(%s, %s)", ("PRV_LATER", "second marker")))
    asked: list[int] = []
    st = stamper_reading(pg_settings, asked)
    events = st.convert(None, row_of(xid, 100)) + st.convert(None, row_of(xid, 101))
    assert [(e.api_id, e.call_id, e.origin_side) for e in events] == [("PRV_DOC_006", "call-lookup", "local")] * 2
    assert asked == [xid] and st.markers_recovered == 1  # the first marker wins, as when captured
    assert f"the marker row of transaction {xid} was not delivered" in caplog.text


def test_an_engine_apply_s_rows_are_dropped_as_echoes(pg_settings: Settings) -> None:
    xid = commit(pg_settings, (MARK_SYNC_SQL, ("PRV_DOC_006", "remote")), role="apply")
    st = stamper_reading(pg_settings, [])
    assert st.convert(None, row_of(xid, 200)) == [] and st.convert(None, row_of(xid, 201)) == []
    assert st.echoes_dropped == 2


def test_a_transaction_without_marker_stays_unmarked_and_is_asked_once(pg_settings: Settings) -> None:
    xid = commit(pg_settings)
    asked: list[int] = []
    st = stamper_reading(pg_settings, asked)
    events = st.convert(None, row_of(xid, 300)) + st.convert(None, row_of(xid, 301))
    assert [e.api_id for e in events] == [None, None] and asked == [xid] and st.unmarked == 2


def test_the_markers_table_is_indexed_by_transaction(pg_settings: Settings) -> None:
    with psycopg.connect(libpq_dsn(pg_settings, "local", "fructos_own")) as conn:
        definitions = [r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'platsync_txn_marker'")]
    assert any(d.endswith("USING btree (txid)") for d in definitions), definitions
