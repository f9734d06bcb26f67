"""Dead-letter helpers without a broker: redaction, selection and what an original message is."""

from __future__ import annotations

import pytest

from streams.core.codec import encode_change, encode_change_batch
from streams.core.model import ChangeEvent
from streams.ops.dlq import RetryMark, StoredDeadLetter, describe_original, redact, select


@pytest.mark.parametrize(("error", "hidden", "kept"), [
    ('new row for relation "staff" violates check constraint "c"\nDETAIL:  Failing row contains (s1, 山田 太郎, x).',
     "山田 太郎", "Failing row contains (…)"),
    ("duplicate key value violates unique constraint \"k\"\nDETAIL:  Key (staff_code)=(S-001) already exists.",
     "S-001", "Key (staff_code)=(…) already exists"),
    ('invalid input syntax for type integer: "佐藤花子"', "佐藤花子", 'type integer: "…"'),
    ("Key (patient_id, doc)=(p-9, d-1) is not present in table \"patients\".", "p-9", "=(…) is not present"),
])
def test_redact_masks_values_a_store_quotes(error: str, hidden: str, kept: str) -> None:
    assert hidden not in redact(error) and kept in redact(error)


def test_redact_keeps_errors_without_values() -> None:
    text = "content_hash abc does not match content (sha256 def)"
    assert redact(text) == text


def _letter(n: int, kind: str, ts: int) -> StoredDeadLetter:
    return StoredDeadLetter(f"local_to_remote:0:{n}", "local_to_remote", {"error_kind": kind, "failed_ts_ms": ts})


def test_select_by_kind_time_and_status() -> None:
    letters = [_letter(1, "decode", 100), _letter(2, "sink_rejected", 200), _letter(3, "sink_rejected", 300)]
    marks = {"local_to_remote:0:2": RetryMark("local_to_remote:0:2", 250, "t", 0, 7)}
    assert [x.id[-1] for x in select(letters, marks, kind="sink_rejected")] == ["2", "3"]
    assert [x.id[-1] for x in select(letters, marks, since_ms=200)] == ["2", "3"]
    assert [x.id[-1] for x in select(letters, marks, status="pending")] == ["1", "3"]
    assert [x.id[-1] for x in select(letters, marks, status="retried")] == ["2"]


def _change(name: str) -> ChangeEvent:
    return ChangeEvent("local.meta:1:0", "local", "meta", "staff", "c", "s1", 3,
                       {"id": "s1", "display_name": name, "photo": b"\x00\x01", "role": None}, "PRV_STF_001",
                       "call-1", "local", 42, 7, 1_700_000_000_000, 1_700_000_000_001)


def test_describe_original_hides_values_unless_revealed() -> None:
    value = encode_change(_change("山田 太郎"))
    hidden = describe_original(value, reveal=False)
    assert hidden["readable"] and hidden["api_id"] == "PRV_STF_001" and hidden["key"] == "s1"
    assert hidden["row"] == {"display_name": "<str, 5 chars>", "id": "<str, 2 chars>",
                             "photo": "<bytes, 2 bytes>", "role": "null"}
    assert "山田" not in repr(hidden)
    shown = describe_original(value, reveal=True)
    assert shown["row"]["display_name"] == "山田 太郎" and shown["row"]["photo"] == "AAE="


def test_describe_original_of_garbage_a_batch_and_nothing() -> None:
    garbage = describe_original(b"\x00not avro", reveal=False)
    assert garbage["readable"] is False and "base64" not in garbage and garbage["bytes"] == 9
    assert describe_original(b"\x00not avro", reveal=True)["base64"] == "AG5vdCBhdnJv"
    batch = encode_change_batch([encode_change(_change("a")), encode_change(_change("b"))])
    assert describe_original(batch, reveal=False)["readable"] is False
    assert describe_original(None, reveal=False)["bytes"] == 0
