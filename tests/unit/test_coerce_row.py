"""Rows in their wire form become column values: ISO strings, base64 and bytes, per column type."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Boolean, Column, Date, DateTime, Integer, LargeBinary, MetaData, Table, Text

from connectors.stores.tables import coerce_row, column_names, metadata_for

TABLE = Table("coerced", MetaData(), Column("id", Text, primary_key=True), Column("n", Integer),
              Column("ok", Boolean), Column("at", DateTime(timezone=True)), Column("day", Date),
              Column("blob", LargeBinary))


def test_each_column_type_gets_its_value() -> None:
    row = {"id": "r-1", "n": 7, "ok": False, "at": "2026-12-06T10:00:00.123456Z", "day": "2026-12-06",
           "blob": base64.b64encode(b"\x00\xff").decode()}
    assert coerce_row(TABLE, row) == {"id": "r-1", "n": 7, "ok": False,
                                      "at": datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC),
                                      "day": date(2026, 12, 6), "blob": b"\x00\xff"}


def test_values_already_typed_and_nulls_are_kept() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    row = {"id": "r-1", "n": None, "ok": None, "at": at, "day": None, "blob": b"raw"}
    assert coerce_row(TABLE, row) == row


def test_an_unknown_column_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="colour"):
        coerce_row(TABLE, {"id": "r-1", "colour": "red"})


def test_a_synced_table_keeps_the_same_values_twice() -> None:
    """The column kinds are looked up once per table: a second row of the table converts the same."""
    signed = metadata_for("fructos_own").tables["signed_records"]
    row = {"id": "d-1", "content": b"\x01", "updated_at": "2026-12-06T10:00:00Z", "version": 2}
    first, second = coerce_row(signed, row), coerce_row(signed, dict(row))
    assert first == second == {"id": "d-1", "content": b"\x01", "version": 2,
                               "updated_at": datetime(2026, 12, 6, 10, 0, tzinfo=UTC)}


def test_column_names_are_the_tables_in_order() -> None:
    assert column_names(TABLE) == ("id", "n", "ok", "at", "day", "blob")
