"""The patient index's declarations and answers (streams/sharing/index.py; docs/sharing.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.core.codec import DecodeError
from streams.sharing.index import (
    Declaration,
    IndexEntry,
    Location,
    decode_declaration,
    encode_declaration,
    index_topic,
    latest_per_record,
    locations,
)


def declaration(seq: int, record: str = "r1", server: str = "cloud", present: bool = True) -> Declaration:
    return Declaration(server, seq, record, "p-1", "hosp-a", "referral", seq + 1, present, 1_700_000_000_000)


def test_a_declaration_round_trips_and_bad_bytes_are_refused() -> None:
    d = declaration(7, present=False)
    assert decode_declaration(encode_declaration(d)) == d
    with pytest.raises(DecodeError):
        decode_declaration(b"\x00junk")
    with pytest.raises(ValueError, match="seq must be positive"):
        declaration(0)
    with pytest.raises(ValueError, match="names its server"):
        Declaration("", 1, "r1", None, None, None, 1, True)
    assert index_topic("platsync", "region-1") == "platsync.index.region-1"


@pytest.mark.parametrize(("given", "kept"), [
    ([1, 2, 3], [3]),
    ([3, 1, 2], [3]),  # redelivered out of order: the greatest seq is the store's latest state
    ([2, 2], [2]),
])
def test_a_batch_keeps_the_latest_declaration_per_server_and_record(given: list[int], kept: list[int]) -> None:
    assert [d.seq for d in latest_per_record(declaration(s) for s in given)] == kept


def test_servers_and_records_are_kept_apart() -> None:
    batch = [declaration(5, "r1"), declaration(1, "r1", "region-1"), declaration(2, "r2"), declaration(4, "r2")]
    assert [(d.server, d.record_id, d.seq) for d in latest_per_record(batch)] == [
        ("cloud", "r2", 4), ("cloud", "r1", 5), ("region-1", "r1", 1)]


def test_locations_group_by_server_and_institution() -> None:
    day = datetime(2026, 12, 1, tzinfo=UTC)
    later = datetime(2026, 12, 3, tzinfo=UTC)
    entries = [IndexEntry("cloud", "r1", "hosp-a", "referral", day),
               IndexEntry("cloud", "r2", "hosp-a", "discharge_summary", later),
               IndexEntry("region-1", "r1", "hosp-a", "referral", day),
               IndexEntry("cloud", "r3", None, None, None)]  # written before records named their home
    assert locations(entries) == [
        Location("cloud", "hosp-a", 2, ("discharge_summary", "referral"), later),
        Location("cloud", "unknown", 1, ("unknown",), None),
        Location("region-1", "hosp-a", 1, ("referral",), day)]
    assert locations([]) == []
