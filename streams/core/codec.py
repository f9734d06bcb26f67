"""Avro encoding of every message the engine produces, against the contracts in ``schemas/``.

Messages are schemaless Avro bodies prefixed with a one-byte format marker and the
contract's fingerprint, so a consumer can refuse a message written against another contract.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from streams.core.change_decoder import CorruptBody, TrailingBytes, change_decoder_for
from streams.core.change_encoder import change_encoder_for
from streams.core.errors import PlatSyncError
from streams.core.model import ChangeEvent

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
MAGIC = b"\x50"  # 'P': PLAT Sync framing (the Confluent wire format uses 0x00)


class DecodeError(PlatSyncError, ValueError):
    """A message is not a valid encoding of the expected contract."""


@dataclass(frozen=True)
class Contract:
    """A parsed Avro contract and its 8-byte fingerprint."""

    name: str
    schema: Any
    fingerprint: bytes
    raw: Any  # the .avsc as written (the specialised change encoder reads its layout)


@cache
def load_contract(name: str) -> Contract:
    """Load and parse ``schemas/<name>.avsc``."""
    raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    parsed = fastavro.parse_schema(raw)
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    return Contract(name, parsed, hashlib.sha256(canonical).digest()[:8], raw)


def encode(contract_name: str, record: dict[str, Any]) -> bytes:
    """Encode ``record`` against the named contract (raises ``ValueError`` if it does not fit)."""
    contract = load_contract(contract_name)
    buf = io.BytesIO()
    buf.write(MAGIC + contract.fingerprint)
    fastavro.schemaless_writer(buf, contract.schema, record, strict_allow_default=True)
    return buf.getvalue()


def _checked_framing(contract_name: str, data: bytes | None) -> Contract:
    """The contract of a message written with :func:`encode`; :class:`DecodeError` if its framing is not
    that contract's."""
    contract = load_contract(contract_name)
    if not data or len(data) < 9:
        raise DecodeError(f"{contract_name}: message too short ({0 if not data else len(data)} bytes)")
    if data[:1] != MAGIC:
        raise DecodeError(f"{contract_name}: unknown framing byte {data[:1]!r}, expected {MAGIC!r}")
    if data[1:9] != contract.fingerprint:
        raise DecodeError(f"{contract_name}: written against another contract version "
                          f"(fingerprint {data[1:9].hex()}, expected {contract.fingerprint.hex()})")
    return contract


def decode(contract_name: str, data: bytes | None) -> dict[str, Any]:
    """Decode a message written with :func:`encode`; raise :class:`DecodeError` on any mismatch."""
    contract = _checked_framing(contract_name, data)
    assert data is not None  # checked above
    try:
        buf = io.BytesIO(data[9:])
        record = fastavro.schemaless_reader(buf, contract.schema, contract.schema)
        if buf.read(1):
            raise DecodeError(f"{contract_name}: trailing bytes after the record")
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on corrupt input
        raise DecodeError(f"{contract_name}: corrupt Avro body: {type(exc).__name__}: {exc}") from None
    return record


_CHANGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ChangeEvent))


@cache
def _fast_change_encoder() -> Callable[[ChangeEvent], bytes] | None:
    return change_encoder_for(load_contract("change_event").raw)


def encode_change(change: ChangeEvent) -> bytes:
    """Encode a :class:`ChangeEvent` against ``schemas/change_event.avsc``.

    Uses the specialised encoder (:mod:`streams.core.change_encoder`, same bytes) while the contract
    has its layout, fastavro otherwise.
    """
    fast = _fast_change_encoder()
    if fast is not None:
        return MAGIC + load_contract("change_event").fingerprint + fast(change)
    return encode_change_generic(change)


def encode_change_generic(change: ChangeEvent) -> bytes:
    """Encode a :class:`ChangeEvent` with fastavro (the reference for the specialised encoder)."""
    # A shallow copy: dataclasses.asdict deep-copies and was half of the encoding cost.
    record = {name: getattr(change, name) for name in _CHANGE_FIELDS}
    for image in ("row", "before"):
        value = record[image]
        if value is not None:
            record[image] = {k: {"data": v} if isinstance(v, bytes) else v for k, v in value.items()}
    return encode("change_event", record)


def encode_change_batch(encoded: Sequence[bytes]) -> bytes:
    """One ``change_batch`` message holding ``encoded`` (each a complete change-event message)."""
    return encode("change_batch", {"events": list(encoded)})


def split_changes(data: bytes | None) -> list[bytes | None]:
    """The change-event messages carried by one Kafka message value, in order.

    A ``change_batch`` gives its elements; anything else is returned as the only element (a single
    change event, or bytes that :func:`decode_change` will then refuse). Raises
    :class:`DecodeError` if the value claims to be a ``change_batch`` but is corrupt.
    """
    if data is not None and data[1:9] == load_contract("change_batch").fingerprint and data[:1] == MAGIC:
        return list(decode("change_batch", data)["events"])
    return [data]


def decode_changes(data: bytes | None) -> list[ChangeEvent]:
    """Every change event of one Kafka message value (:func:`split_changes`, then :func:`decode_change`)."""
    return [decode_change(element) for element in split_changes(data)]


@cache
def _fast_change_decoder() -> Callable[[bytes, int], ChangeEvent] | None:
    return change_decoder_for(load_contract("change_event").raw)


def decode_change(data: bytes | None) -> ChangeEvent:
    """Decode a change event; raise :class:`DecodeError` if it is not a valid one.

    Uses the specialised decoder (:mod:`streams.core.change_decoder`, same result) while the contract
    has its layout, fastavro otherwise (:func:`decode_change_generic`).
    """
    fast = _fast_change_decoder()
    if fast is None:
        return decode_change_generic(data)
    _checked_framing("change_event", data)
    assert data is not None  # checked above
    return decode_change_body(fast, data, 9, "change_event: corrupt Avro body")


def decode_change_body(fast: Callable[[bytes, int], ChangeEvent], data: bytes, offset: int,
                       corrupt: str) -> ChangeEvent:
    """The change event whose body starts at ``offset`` of ``data``, read by the specialised decoder;
    :class:`DecodeError` if the body is corrupt (its message starts with ``corrupt``) or followed by
    more bytes."""
    try:
        return fast(data, offset)
    except TrailingBytes as exc:
        raise DecodeError(f"change_event: trailing bytes after the record ({exc})") from None
    except CorruptBody as exc:
        raise DecodeError(f"{corrupt}: {exc}") from None


def decode_change_generic(data: bytes | None) -> ChangeEvent:
    """Decode a change event with fastavro (the reference for the specialised decoder)."""
    record = decode("change_event", data)  # the body of change_from_record, inline
    for image in ("row", "before"):
        value = record.get(image)
        if value is not None:
            record[image] = {k: v["data"] if isinstance(v, dict) else v for k, v in value.items()}
    return ChangeEvent(**record)


def change_from_record(record: dict[str, Any]) -> ChangeEvent:
    """The :class:`ChangeEvent` of a decoded ``change_event`` record (Binary column values unwrapped)."""
    for image in ("row", "before"):
        value = record.get(image)
        if value is not None:
            record[image] = {k: v["data"] if isinstance(v, dict) else v for k, v in value.items()}
    return ChangeEvent(**record)


@dataclass(frozen=True)
class MessageCodec:
    """The message functions of one process: :data:`PLAIN` (this module's framing, no registry) or
    the Confluent wire format against a schema registry (:func:`streams.runtime.confluent_wire.codec_for`).

    Callers hold the codec and call its functions; with :data:`PLAIN` they are this module's
    functions themselves, so the no-registry path does no extra work per message.
    """

    encode: Callable[[str, dict[str, Any]], bytes]
    decode: Callable[[str, bytes | None], dict[str, Any]]
    encode_change: Callable[[ChangeEvent], bytes]
    encode_change_batch: Callable[[Sequence[bytes]], bytes]
    split_changes: Callable[[bytes | None], list[bytes | None]]
    decode_change: Callable[[bytes | None], ChangeEvent]
    name: str = "plain"

    def decode_changes(self, data: bytes | None) -> list[ChangeEvent]:
        """Every change event of one Kafka message value."""
        return [self.decode_change(element) for element in self.split_changes(data)]


#: No schema registry: the framing of this module (format byte 'P' and the contract's fingerprint).
PLAIN = MessageCodec(encode, decode, encode_change, encode_change_batch, split_changes, decode_change)
