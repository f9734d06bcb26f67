"""The specialised change-event decoder reads what fastavro reads and refuses what it refuses (other
contract layouts: test_change_layout.py)."""

from __future__ import annotations

import math
import random
import re

import pytest

from streams.core.codec import (
    DecodeError,
    _fast_change_decoder,
    decode_change,
    decode_change_generic,
    encode_change,
)
from streams.core.model import ChangeEvent
from tests.support.change_events import random_event

#: What the specialised decoder refuses although fastavro reads it (no Avro writer produces it); a
#: union branch byte that is odd is a negative index (zig-zag).
STRICTER = re.compile(r"boolean byte|longer than 10 bytes|does not fit an Avro long|enum index -"
                      r"|union branch byte \d*[13579] ")


def _same(a: ChangeEvent, b: ChangeEvent) -> bool:
    """Equal, counting a NaN (which a damaged double can turn into) equal to a NaN."""
    if a == b:
        return True
    return repr(a) == repr(b) and any(isinstance(v, float) and math.isnan(v)
                                      for image in (a.row, a.before) if image for v in image.values())


def test_same_events_as_fastavro_for_thousands_of_generated_events() -> None:
    assert _fast_change_decoder() is not None  # the codec really uses the specialised decoder
    rng = random.Random(20261206)
    for _ in range(3000):
        event = random_event(rng)
        data = encode_change(event)
        decoded = decode_change(data)
        assert decoded == event
        assert decoded == decode_change_generic(data)
        assert [type(v) for v in (decoded.row or {}).values()] == [type(v) for v in (event.row or {}).values()]


def test_every_truncated_body_is_a_decode_error() -> None:
    rng = random.Random(3)
    for _ in range(20):
        data = encode_change(random_event(rng))
        for end in range(len(data)):
            with pytest.raises(DecodeError):
                decode_change(data[:end])


def test_damaged_bodies_are_refused_where_fastavro_refuses_them() -> None:
    rng = random.Random(5)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(4000):
        data = bytearray(encode_change(random_event(rng)))
        damage = rng.randrange(3)
        if damage == 0:
            del data[rng.randrange(9, len(data)):]
        elif damage == 1:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(9, len(data))] = rng.randrange(256)
        else:
            at = rng.randrange(9, len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        message = bytes(data)
        try:
            reference: ChangeEvent | None = decode_change_generic(message)
        except DecodeError:
            reference = None
        try:
            decoded: ChangeEvent | None = decode_change(message)  # nothing but DecodeError may escape
        except DecodeError as exc:
            # The documented differences (streams/core/change_decoder.py): fastavro reads a boolean byte
            # other than 0 or 1 as true, wraps a varint longer than a long around 64 bits and takes a
            # negative enum or union index from the end of the list.
            assert reference is None or STRICTER.search(str(exc)), \
                (message, reference, exc)
            outcomes["refused"] += 1
            continue
        assert reference is not None and _same(decoded, reference), (message, decoded, reference)
        outcomes["decoded"] += 1
    assert outcomes["decoded"] > 200 and outcomes["refused"] > 2000  # both paths really exercised


def test_a_boolean_byte_other_than_0_or_1_is_refused() -> None:
    event = random_event(random.Random(1))
    event = ChangeEvent(**{**event.__dict__, "row": {"flag": True}, "before": None})
    data = encode_change(event)
    at = data.rindex(b"flag\x02\x01") + 5
    assert decode_change(data) == event
    with pytest.raises(DecodeError, match="corrupt Avro body: boolean byte 7"):
        decode_change(data[:at] + b"\x07" + data[at + 1:])


def test_a_map_block_that_gives_its_byte_size_is_read() -> None:
    """Avro lets a writer prefix a map block with a negative count and the block's size (Java's
    blocking encoder does); fastavro never writes it, but both decoders must read it."""
    event = random_event(random.Random(2))
    event = ChangeEvent(**{**event.__dict__, "row": {"a": 1, "b": "x"}, "before": None})
    data = encode_change(event)
    plain = b"\x02\x04" + b"\x02a\x04\x02" + b"\x02b\x08\x02x" + b"\x00"  # branch 1, count 2, entries, end
    blocked = b"\x02\x03\x12" + b"\x02a\x04\x02" + b"\x02b\x08\x02x" + b"\x00"  # count -2, 9 bytes
    assert data.count(plain) == 1
    message = data.replace(plain, blocked)
    assert decode_change(message) == event == decode_change_generic(message)


@pytest.mark.parametrize("varint", [b"\xff" * 10 + b"\x01", b"\xff" * 9 + b"\x7f"])
def test_a_varint_beyond_64_bits_is_refused(varint: bytes) -> None:
    event = random_event(random.Random(4))
    event = ChangeEvent(**{**event.__dict__, "event_id": "e", "key": "key-1", "version": 5})
    data = encode_change(event)
    at = data.index(b"\x0akey-1") + 6  # the version follows the key
    assert data[at:at + 1] == b"\x0a"  # 5, zig-zag encoded
    with pytest.raises(DecodeError, match="corrupt Avro body"):
        decode_change(data[:at] + varint + data[at + 1:])
