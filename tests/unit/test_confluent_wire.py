"""The Confluent wire format (streams/runtime/confluent_wire.py) without a registry process: the header, the
decode errors that are the message's fault, and an unreachable registry being the registry's fault."""

from __future__ import annotations

import io

import fastavro
import pytest

from infra.local.process import free_port
from streams.core import codec as plain
from streams.core.codec import PLAIN, DecodeError, load_contract
from streams.core.errors import RetryableError
from streams.core.model import ChangeEvent
from streams.runtime.confluent_wire import ConfluentWire, codec_for, contract_names, header
from streams.runtime.schema_registry import SchemaRegistryClient, SchemaRegistryUnavailableError, subject_for
from streams.runtime.settings import load_settings

IDS = {"change_batch": 11, "change_event": 12, "dead_letter": 13, "heartbeat": 14}


def change(**overrides: object) -> ChangeEvent:
    base = dict(event_id="local.meta:7:0", source_side="local", source_store="meta", table="staff", op="u",
                key="s-1", version=3, row={"id": "s-1", "n": 5, "f": 1.5, "ok": True, "blob": b"\x00\xff", "x": None},
                api_id="PRV_STF_001", call_id="c-1", origin_side="local", lsn=7, txid=9, commit_ts_ms=10,
                captured_ts_ms=11, before={"id": "s-1", "n": 4})
    base.update(overrides)
    return ChangeEvent(**base)  # type: ignore[arg-type]


@pytest.fixture()
def wire() -> ConfluentWire:
    """A wire codec whose registry is unreachable: everything here must work from its cache."""
    return ConfluentWire(SchemaRegistryClient(f"http://127.0.0.1:{free_port()}", timeout_s=0.5), IDS)


def test_header_is_magic_zero_and_a_big_endian_id() -> None:
    assert header(1) == b"\x00\x00\x00\x00\x01"
    assert header(0x01020304) == b"\x00\x01\x02\x03\x04"


def test_subjects_follow_the_record_name_strategy() -> None:
    subjects = {subject_for(load_contract(name).raw) for name in contract_names()}
    assert subjects == {"jp.plat.sync.ChangeEvent", "jp.plat.sync.ChangeBatch", "jp.plat.sync.DeadLetter",
                        "jp.plat.sync.Heartbeat", "jp.plat.sync.SubscriptionMessage", "jp.plat.sync.Notification",
                        "jp.plat.sync.IndexDeclaration"}


def test_without_a_registry_url_the_codec_is_the_plain_one_unchanged() -> None:
    codec = codec_for(load_settings(env={}))
    assert codec is PLAIN
    # The hot path is the very same functions: no wrapper, no per-event work added.
    assert codec.encode_change is plain.encode_change and codec.decode_change is plain.decode_change
    assert codec.split_changes is plain.split_changes


def test_encoding_prepends_the_registered_id_to_the_same_avro_body(wire: ConfluentWire) -> None:
    event = change()
    message = wire.encode_change(event)
    assert message[:5] == header(IDS["change_event"])
    assert message[5:] == plain.encode_change(event)[9:]  # the fast encoder's body, as without a registry
    assert wire.decode_change(message) == event
    record = fastavro.schemaless_reader(io.BytesIO(message[5:]), load_contract("change_event").schema, None)
    assert record["key"] == "s-1"


def test_a_batch_and_its_elements_all_carry_the_header(wire: ConfluentWire) -> None:
    events = [change(key=f"k{i}", lsn=i) for i in range(3)]
    elements = [wire.encode_change(e) for e in events]
    batch = wire.encode_change_batch(elements)
    assert batch[:5] == header(IDS["change_batch"])
    assert wire.split_changes(batch) == elements
    assert all(e[:5] == header(IDS["change_event"]) for e in wire.split_changes(batch))
    assert wire.codec().decode_changes(batch) == events
    assert wire.split_changes(elements[0]) == [elements[0]]


def test_other_contracts_round_trip(wire: ConfluentWire) -> None:
    beat = {"side": "local", "sent_ts_ms": 5, "mode": "normal", "incarnation": "i"}
    data = wire.encode("heartbeat", beat)
    assert data[:5] == header(IDS["heartbeat"]) and wire.decode("heartbeat", data) == beat


def test_our_own_change_events_are_read_by_the_specialised_decoder(wire: ConfluentWire,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    events = [change(), change(row=None, before=None, op="d", api_id=None, call_id=None)]
    messages = [wire.encode_change(e) for e in events]

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("fastavro must not read a change event written with our own schema id")

    monkeypatch.setattr(fastavro, "schemaless_reader", refuse)
    assert [wire.decode_change(m) for m in messages] == events


def test_a_plain_message_is_refused_as_not_in_the_wire_format(wire: ConfluentWire) -> None:
    with pytest.raises(DecodeError, match="not in the Confluent wire format"):
        wire.decode_change(plain.encode_change(change()))
    assert wire.split_changes(plain.encode_change_batch([plain.encode_change(change())]))[0][:1] == b"P"


@pytest.mark.parametrize("data", [None, b"", b"\x00\x00\x00"])
def test_a_message_too_short_is_refused(wire: ConfluentWire, data: bytes | None) -> None:
    with pytest.raises(DecodeError, match="too short"):
        wire.decode_change(data)


def test_a_message_of_another_record_type_is_refused(wire: ConfluentWire) -> None:
    beat = wire.encode("heartbeat", {"side": "local", "sent_ts_ms": 5, "mode": "normal", "incarnation": "i"})
    with pytest.raises(DecodeError, match="expected a jp.plat.sync.ChangeEvent"):
        wire.decode_change(beat)


def test_a_corrupt_body_or_trailing_bytes_are_refused(wire: ConfluentWire) -> None:
    message = wire.encode_change(change())
    with pytest.raises(DecodeError, match="body does not decode"):
        wire.decode_change(message[:-6])
    with pytest.raises(DecodeError, match="trailing bytes"):
        wire.decode_change(message + b"\x00")


def test_an_unknown_id_with_the_registry_down_is_the_registrys_fault(wire: ConfluentWire) -> None:
    unknown = header(999) + plain.encode_change(change())[9:]
    with pytest.raises(SchemaRegistryUnavailableError, match="unreachable") as caught:
        wire.decode_change(unknown)
    # retried by the worker (RetryableError), never dead-lettered (DecodeError)
    assert isinstance(caught.value, RetryableError) and not isinstance(caught.value, DecodeError)
    with pytest.raises(SchemaRegistryUnavailableError):
        wire.split_changes(unknown)


def test_an_unreachable_registry_at_start_fails_with_a_clear_error() -> None:
    settings = load_settings(env={}, schema_registry_url=f"http://127.0.0.1:{free_port()}",
                             schema_registry_start_wait_s=0.3)
    with pytest.raises(SchemaRegistryUnavailableError, match=r"unreachable.*schema_registry_url.*waited 0.3 s"):
        codec_for(settings)


def test_a_bad_url_or_level_is_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        SchemaRegistryClient("localhost:8081")
    with pytest.raises(ValueError, match="expected one of BACKWARD"):
        SchemaRegistryClient("http://127.0.0.1:1").set_compatibility("SIDEWAYS", "s")
