"""Avro framing of change events: round trip and precise errors on bad input."""

from __future__ import annotations

import pytest

from streams.core.codec import (
    MAGIC,
    DecodeError,
    decode_change,
    decode_changes,
    encode,
    encode_change,
    encode_change_batch,
    load_contract,
    split_changes,
)
from streams.core.model import ChangeEvent


def change(**overrides: object) -> ChangeEvent:
    base = dict(event_id="local.meta:100:0", source_side="local", source_store="meta", table="documents",
                op="u", key="d-1", version=3,
                row={"id": "d-1", "title": "紹介状", "version": 3, "deleted": False, "approved_at": None,
                     "content": b"\x00\xffbinary", "ratio": 0.5},
                api_id="PRV_DOC_007", call_id="call-1", origin_side="local", lsn=123456, txid=77,
                commit_ts_ms=1_700_000_000_000, captured_ts_ms=1_700_000_000_015)
    base.update(overrides)
    return ChangeEvent(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_and_value_type() -> None:
    original = change()
    decoded = decode_change(encode_change(original))
    assert decoded == original
    assert isinstance(decoded.row["content"], bytes) and isinstance(decoded.row["version"], int)


def test_before_image_round_trips_and_defaults_to_none() -> None:
    before = {"id": "d-1", "title": "旧", "version": 2, "deleted": False, "content": b"\x01old", "approved_at": None}
    with_before = change(before=before)
    decoded = decode_change(encode_change(with_before))
    assert decoded == with_before and isinstance(decoded.before["content"], bytes)  # type: ignore[index]
    assert decode_change(encode_change(change())).before is None


def test_delete_and_probe_round_trip() -> None:
    for ev in (change(op="d", row=None), change(op="probe", table="platsync_probe", key="0001", version=0,
                                                  row=None, api_id=None, call_id=None)):
        assert decode_change(encode_change(ev)) == ev


@pytest.mark.parametrize(("data", "message"), [
    (None, "too short"),
    (b"", "too short"),
    (b"garbage-bytes-here", "unknown framing byte"),
    (MAGIC + b"\x00" * 8 + b"\x02", "another contract version"),
])
def test_bad_input_raises_decode_error(data: bytes | None, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_change(data)


def test_truncated_body_is_a_decode_error() -> None:
    data = encode_change(change())
    with pytest.raises(DecodeError, match="corrupt Avro body"):
        decode_change(data[:-5])


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode_change(encode_change(change()) + b"\x00")


def test_record_not_fitting_the_contract_is_refused_at_encode() -> None:
    with pytest.raises(ValueError):
        encode("change_event", {"event_id": "x"})


def test_invalid_op_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_change(change(op="merge"))


def test_fingerprint_is_stable_per_contract() -> None:
    assert load_contract("change_event").fingerprint == load_contract("change_event").fingerprint
    assert load_contract("change_event").fingerprint != load_contract("dead_letter").fingerprint


def test_a_change_batch_carries_complete_change_event_messages_in_order() -> None:
    events = [change(key=f"k{i}") for i in range(5)]
    encoded = [encode_change(e) for e in events]
    batch = encode_change_batch(encoded)
    assert batch[:1] == MAGIC and batch[1:9] == load_contract("change_batch").fingerprint
    assert split_changes(batch) == encoded
    assert decode_changes(batch) == events
    assert split_changes(encoded[0]) == [encoded[0]]  # a single change event is its own only element
    assert decode_changes(encoded[0]) == [events[0]]
    assert split_changes(encode_change_batch([])) == []


def test_a_corrupt_change_batch_is_refused_as_a_whole() -> None:
    batch = encode_change_batch([encode_change(change()), encode_change(change(key="b"))])
    for broken in (batch[:-3], batch[:12], batch + b"\x00"):
        with pytest.raises(DecodeError, match="change_batch"):
            split_changes(broken)
    # An element that is not a change event is only found out when that element is decoded.
    assert split_changes(encode_change_batch([b"junk"])) == [b"junk"]
    with pytest.raises(DecodeError):
        decode_changes(encode_change_batch([b"junk"]))
