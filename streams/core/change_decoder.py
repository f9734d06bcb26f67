"""A specialised Avro decoder for ``schemas/change_event.avsc``: the workers' hottest call.

fastavro reads a row image's values generically (a union resolved per value, a ``Binary`` record
built as a dict and unwrapped afterwards): for a signed record that was about 22 us per event in a
worker, a quarter of its busy samples in a bulk (py-spy, issue 19). This decoder reads the
contract's layout (:mod:`streams.core.change_layout`) field by field and builds the
:class:`~streams.core.model.ChangeEvent` directly. It returns what fastavro's reading gives for every
valid body (``tests/unit/test_change_decoder.py`` compares them over thousands of generated
events) and refuses what fastavro refuses, raising :class:`CorruptBody`; it is only used while the
contract has that layout (:func:`change_decoder_for` returns None otherwise).

It is stricter than fastavro where the Avro specification is, refusing what no Avro writer produces:
a boolean byte other than 0 or 1 (fastavro reads it as true), a varint longer than a long's 10 bytes
or beyond 64 bits (fastavro wraps it around), a negative enum or union index (fastavro takes it from
the end of the list), and a union index written in more bytes than it needs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from streams.core.change_layout import change_symbols
from streams.core.model import ChangeEvent

_DOUBLE = struct.Struct("<d")
#: The longest valid varint of an Avro long (64 bits, 7 per byte).
_MAX_VARINT_BYTES = 10


class CorruptBody(ValueError):
    """The bytes are not a change-event body of the contract's layout."""


class TrailingBytes(CorruptBody):
    """A complete change event is followed by more bytes."""


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` and the position after it."""
    byte = data[pos]
    if byte < 0x80:  # the common case: lengths, small numbers, union branches
        return (byte >> 1) ^ -(byte & 1), pos + 1
    n = byte & 0x7F
    shift = 7
    end = pos + _MAX_VARINT_BYTES
    pos += 1
    while True:
        if pos >= end:
            raise CorruptBody(f"a varint at byte {end - _MAX_VARINT_BYTES} is longer than {_MAX_VARINT_BYTES} bytes")
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    if n >= 1 << 64:
        raise CorruptBody(f"a varint ending at byte {pos} does not fit an Avro long")
    return (n >> 1) ^ -(n & 1), pos


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise CorruptBody(f"a length of {size} bytes at byte {pos} runs past the end ({len(data)} bytes)")
    return data[pos:end], end


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size = data[pos]
    if size < 0x80 and not size & 1:  # a length below 64: one byte
        pos += 1
        end = pos + (size >> 1)
    else:
        size, pos = _long(data, pos)
        end = pos + size
        if size < 0:
            raise CorruptBody(f"a negative length {size} at byte {pos}")
    if end > len(data):
        raise CorruptBody(f"a string at byte {pos} runs past the end ({len(data)} bytes)")
    return data[pos:end].decode("utf-8"), end


def _optional(data: bytes, pos: int) -> tuple[str | None, int]:
    branch = data[pos]
    if branch == 0:
        return None, pos + 1
    if branch == 2:
        return _string(data, pos + 1)
    raise CorruptBody(f"union branch byte {branch} at byte {pos} is not null or string")


def _image(data: bytes, pos: int) -> tuple[dict[str, Any] | None, int]:
    """A row image: null, or a map of column name -> null | boolean | long | double | string | Binary."""
    branch = data[pos]
    pos += 1
    if branch == 0:
        return None, pos
    if branch != 2:
        raise CorruptBody(f"union branch byte {branch} at byte {pos - 1} is not null or a row image")
    image: dict[str, Any] = {}
    length = len(data)
    while True:
        count, pos = _long(data, pos)
        if count == 0:
            return image, pos
        if count < 0:  # a block that also gives its size in bytes, which we do not need
            count = -count
            _size, pos = _long(data, pos)
        for _ in range(count):
            name, pos = _string(data, pos)
            tag = data[pos]
            pos += 1
            if tag == 8:  # string, most columns: a short one is read inline (the call was ~7% of a decode)
                size = data[pos]
                if size < 0x80 and not size & 1:
                    pos += 1
                    end = pos + (size >> 1)
                    if end > length:
                        raise CorruptBody(f"a string at byte {pos} runs past the end ({length} bytes)")
                    image[name] = data[pos:end].decode("utf-8")
                    pos = end
                else:
                    image[name], pos = _string(data, pos)
            elif tag == 4:
                image[name], pos = _long(data, pos)
            elif tag == 0:
                image[name] = None
            elif tag == 2:
                flag = data[pos]
                if flag > 1:
                    raise CorruptBody(f"boolean byte {flag} at byte {pos}")
                image[name] = flag == 1
                pos += 1
            elif tag == 10:
                image[name], pos = _bytes(data, pos)
            elif tag == 6:
                if pos + 8 > length:
                    raise CorruptBody(f"a double at byte {pos} runs past the end ({length} bytes)")
                image[name] = _DOUBLE.unpack_from(data, pos)[0]
                pos += 8
            else:
                raise CorruptBody(f"union branch byte {tag} at byte {pos - 1} is not a row value")


def _symbol(symbols: tuple[str, ...], data: bytes, pos: int, what: str) -> tuple[str, int]:
    index, pos = _long(data, pos)
    if not 0 <= index < len(symbols):
        raise CorruptBody(f"{what}: enum index {index} is not one of {len(symbols)} symbols")
    return symbols[index], pos


def change_decoder_for(raw_schema: Mapping[str, Any]) -> Callable[[bytes, int], ChangeEvent] | None:
    """A decoder of change-event bodies for ``raw_schema`` (the parsed .avsc JSON), or None if the
    contract does not have the layout this decoder was written for.

    The decoder takes the message and the offset of the body (after the framing) and raises
    :class:`CorruptBody` if the body is not exactly one change event.
    """
    symbols = change_symbols(raw_schema)
    if symbols is None:
        return None
    sides, ops = symbols

    def decode(data: bytes, pos: int) -> ChangeEvent:
        try:
            event_id, pos = _string(data, pos)
            source_side, pos = _symbol(sides, data, pos, "source_side")
            source_store, pos = _string(data, pos)
            table, pos = _string(data, pos)
            op, pos = _symbol(ops, data, pos, "op")
            key, pos = _string(data, pos)
            version, pos = _long(data, pos)
            row, pos = _image(data, pos)
            api_id, pos = _optional(data, pos)
            call_id, pos = _optional(data, pos)
            origin_side, pos = _symbol(sides, data, pos, "origin_side")
            lsn, pos = _long(data, pos)
            txid, pos = _long(data, pos)
            commit_ts_ms, pos = _long(data, pos)
            captured_ts_ms, pos = _long(data, pos)
            before, pos = _image(data, pos)
        except IndexError:
            raise CorruptBody(f"the body ends early ({len(data)} bytes)") from None
        except UnicodeDecodeError as exc:
            raise CorruptBody(f"a string is not UTF-8: {exc}") from None
        if pos != len(data):
            raise TrailingBytes(f"{len(data) - pos} trailing bytes after the record")
        return ChangeEvent(event_id, source_side, source_store, table, op, key, version, row, api_id, call_id,
                           origin_side, lsn, txid, commit_ts_ms, captured_ts_ms, before)

    return decode
