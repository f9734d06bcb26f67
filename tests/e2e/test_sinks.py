"""The PostgreSQL sink against a real PostgreSQL: idempotent, version-guarded, loud on bad rows."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

import psycopg
import pytest

from connectors.sinks.base import StoreUnavailableError
from connectors.sinks.postgres_rows import APPLY_API_ID, PostgresRowSink
from streams.core.model import Write
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

pytestmark = pytest.mark.e2e


def staff_write(key: str, version: int, name: str = "山田 太郎", op: str = "upsert") -> Write:
    row = {"id": key, "staff_code": f"S-{key[:6]}", "display_name": name, "role": "doctor", "username": None,
           "version": version, "deleted": False, "updated_at": "2026-11-22T09:00:00+09:00"}
    return Write("remote", "meta", "staff", op, key, version, None if op == "delete" else row,
                 f"local.meta:{version}:0", "PRV_STF_001", "local")


def record_write(key: str, version: int, content: bytes, content_hash: str | None = None) -> Write:
    row = {"id": key, "entity": "document", "subject_id": "doc-1", "media_type": "text/plain", "content": content,
           "content_hash": content_hash or hashlib.sha256(content).hexdigest(), "signed_by": "dr", "approved": False,
           "version": version, "deleted": False, "updated_at": "2026-11-22T00:00:00Z"}
    return Write("remote", "fructos_own", "signed_records", "upsert", key, version, row, f"e{version}",
                 "PRV_DOC_006", "local")


def fetch(settings: Settings, store: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(libpq_dsn(settings, "remote", store)) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture()
def meta_sink(pg_settings: Settings):  # type: ignore[no-untyped-def]
    sink = PostgresRowSink(pg_settings, "remote", "meta")
    sink.setup()
    yield sink
    sink.close()


def test_apply_is_idempotent_and_marks_its_transaction(pg_settings: Settings, meta_sink: PostgresRowSink) -> None:
    key = str(uuid.uuid4())
    first = meta_sink.apply_batch([staff_write(key, 1)], origin_side="local")
    again = meta_sink.apply_batch([staff_write(key, 1)], origin_side="local")
    assert (first.applied, again.applied, again.stale) == (1, 0, 1)
    assert fetch(pg_settings, "meta", "SELECT display_name, version FROM staff WHERE id = %s", key) == [
        ("山田 太郎", 1)]
    markers = fetch(pg_settings, "meta", "SELECT api_id, origin_side, applied_by_sync FROM platsync_txn_marker "
                    "WHERE txid = (SELECT xmin::text::bigint FROM staff WHERE id = %s)", key)
    assert markers == [(APPLY_API_ID, "local", True)]


def test_older_version_never_overwrites_newer(pg_settings: Settings, meta_sink: PostgresRowSink) -> None:
    key = str(uuid.uuid4())
    meta_sink.apply_batch([staff_write(key, 3, "v3")], "local")
    result = meta_sink.apply_batch([staff_write(key, 2, "v2")], "local")
    assert result.applied == 0
    assert fetch(pg_settings, "meta", "SELECT display_name, version FROM staff WHERE id = %s", key) == [("v3", 3)]


def test_batch_keeps_the_highest_version_per_key(pg_settings: Settings, meta_sink: PostgresRowSink) -> None:
    key = str(uuid.uuid4())
    result = meta_sink.apply_batch([staff_write(key, 2, "v2"), staff_write(key, 5, "v5"), staff_write(key, 4, "v4")],
                                   "local")
    assert (result.applied, result.stale) == (1, 2)
    assert fetch(pg_settings, "meta", "SELECT display_name FROM staff WHERE id = %s", key) == [("v5",)]


def test_delete_is_not_undone_by_a_late_update(pg_settings: Settings, meta_sink: PostgresRowSink) -> None:
    key = str(uuid.uuid4())
    meta_sink.apply_batch([staff_write(key, 1)], "local")
    meta_sink.apply_batch([staff_write(key, 2, op="delete")], "local")
    late = meta_sink.apply_batch([staff_write(key, 2, "late")], "local")
    older = meta_sink.apply_batch([staff_write(key, 1, "older")], "local")
    assert late.applied == 0 and older.applied == 0
    assert fetch(pg_settings, "meta", "SELECT 1 FROM staff WHERE id = %s", key) == []
    assert fetch(pg_settings, "meta", "SELECT version FROM platsync_tombstone WHERE id = %s", key) == [(2,)]
    newer = meta_sink.apply_batch([staff_write(key, 3, "re-registered")], "local")
    assert newer.applied == 1


def test_bad_rows_are_rejected_and_the_rest_applied(pg_settings: Settings) -> None:
    sink = PostgresRowSink(pg_settings, "remote", "fructos_own")
    sink.setup()
    try:
        good, tampered = str(uuid.uuid4()), str(uuid.uuid4())
        missing_col = dataclasses.replace(record_write(str(uuid.uuid4()), 1, b"x"))
        assert missing_col.row is not None
        del missing_col.row["signed_by"]
        result = sink.apply_batch([record_write(good, 1, b"signed content"),
                                   record_write(tampered, 1, b"content", content_hash="0" * 64), missing_col],
                                  "local")
        assert result.applied == 1
        errors = {r.write.key: r.error for r in result.rejected}
        assert set(errors) == {tampered, missing_col.key}
        assert "does not match content" in errors[tampered]
        assert "lacks columns ['signed_by']" in errors[missing_col.key]
        assert all(r.hint for r in result.rejected)
        rows = fetch(pg_settings, "fructos_own", "SELECT id, content FROM signed_records WHERE id = ANY(%s)",
                     [good, tampered])
        assert rows == [(good, b"signed content")]
    finally:
        sink.close()


def test_a_row_the_store_refuses_is_isolated_from_its_batch(pg_settings: Settings,
                                                           meta_sink: PostgresRowSink) -> None:
    # PostgreSQL's own refusal (NOT NULL here, which the sink does not check) fails the batch's
    # transaction whole; the batch is redone row by row, each in a savepoint.
    keys = [str(uuid.uuid4()) for _ in range(3)]
    refused = staff_write(keys[1], 1)
    assert refused.row is not None
    refused.row["staff_code"] = None
    result = meta_sink.apply_batch([staff_write(keys[0], 1, "一"), refused, staff_write(keys[2], 1, "三")], "local")
    assert result.applied == 2 and [r.write.key for r in result.rejected] == [keys[1]]
    assert "NotNullViolation" in result.rejected[0].error and result.rejected[0].hint
    rows = fetch(pg_settings, "meta", "SELECT id, display_name FROM staff WHERE id = ANY(%s) ORDER BY display_name",
                 keys)
    assert sorted(rows) == sorted([(keys[0], "一"), (keys[2], "三")])
    # The same batch again: the two rows are already there (idempotent), the refused one is refused again.
    again = meta_sink.apply_batch([staff_write(keys[0], 1, "一"), refused, staff_write(keys[2], 1, "三")], "local")
    assert again.applied == 0 and [r.write.key for r in again.rejected] == [keys[1]]


def test_unknown_table_is_rejected_not_crashing(meta_sink: PostgresRowSink) -> None:
    bad = dataclasses.replace(staff_write(str(uuid.uuid4()), 1), table="no_such_table")
    result = meta_sink.apply_batch([bad, staff_write(str(uuid.uuid4()), 1)], "local")
    assert result.applied == 1 and len(result.rejected) == 1 and "no_such_table" in result.rejected[0].error


def test_unreachable_store_raises_retryable_error(pg_settings: Settings) -> None:
    closed = pg_settings.with_node("remote", pg_port=1)
    sink = PostgresRowSink(closed, "remote", "meta")
    with pytest.raises(StoreUnavailableError, match="remote/meta"):
        sink.apply_batch([staff_write(str(uuid.uuid4()), 1)], "local")


def test_a_row_captured_before_the_sharing_columns_existed_gets_their_defaults(pg_settings: Settings) -> None:
    """During an upgrade the topics still hold changes captured without shared / patient_id: they apply."""
    sink = PostgresRowSink(pg_settings, "remote", "fructos_own")
    sink.setup()
    try:
        key = str(uuid.uuid4())
        old = record_write(key, 1, b"before the upgrade")
        assert old.row is not None and "shared" not in old.row and "patient_id" not in old.row
        assert sink.apply_batch([old], "local").applied == 1
        assert fetch(pg_settings, "fructos_own", "SELECT shared, patient_id FROM signed_records WHERE id = %s",
                     key) == [(True, None)]
    finally:
        sink.close()

