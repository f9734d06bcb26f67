"""The Confluent wire format against a schema registry: magic byte 0, the schema's 4-byte big-endian
global id, then the Avro binary body.

:func:`codec_for` is the factory every process calls at start: without ``schema_registry_url`` it
returns :data:`streams.core.codec.PLAIN` (nothing changes, no per-message work is added); with one, it
sets the compatibility level of every subject, registers ``schemas/*.avsc`` (subjects by
RecordNameStrategy, :func:`streams.runtime.schema_registry.subject_for`), refuses to start if the registry
rejects a schema, and returns a :class:`~streams.core.codec.MessageCodec` that

- encodes with the registered id (the capture's specialised change encoder is kept: the 5-byte
  header is prepended to its body);
- decodes by the id in the message: the writer schema is fetched once per id and cached, and the
  body is resolved against this process's reader contract, so a consumer reads messages written
  with older (or compatible newer) versions of a contract.

Whose fault a failure is decides what happens to the message. The message's: no magic byte, an id
the registry does not know (40403), an id of another record type, a body that does not resolve:
:class:`~streams.core.codec.DecodeError` (the worker dead-letters it). The registry's: unreachable,
5xx, 401/403: :class:`~streams.runtime.schema_registry.SchemaRegistryUnavailableError`, a
:class:`~streams.core.errors.RetryableError` the worker retries (good messages are never dead-lettered for it).

Change batches: each element of a ``change_batch`` message is itself a complete change-event
message in the same wire format (header with the ChangeEvent id), so an element dead-lettered,
inspected or re-driven alone is still a self-describing Confluent message.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import fastavro

from streams.core.codec import (
    PLAIN,
    SCHEMA_DIR,
    DecodeError,
    MessageCodec,
    _fast_change_decoder,
    _fast_change_encoder,
    change_from_record,
    decode_change_body,
    encode_change_generic,
    load_contract,
)
from streams.core.model import ChangeEvent
from streams.runtime.retry import Backoff, retry
from streams.runtime.schema_registry import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    SchemaNotFoundError,
    SchemaRegistryClient,
    SchemaRegistryError,
    SchemaRegistryUnavailableError,
    subject_for,
)
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.schema_registry")
MAGIC = 0
HEADER_BYTES = 5
UNKNOWN_ID_TTL_S = 60.0  # an id the registry did not know is asked again after this long


def contract_names() -> list[str]:
    """Every contract of ``schemas/`` (file stem), sorted."""
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.avsc"))


def header(schema_id: int) -> bytes:
    """The 5-byte Confluent header of ``schema_id``."""
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big")


def _full_name(raw: Any) -> str:
    if isinstance(raw, dict) and raw.get("type") == "record":
        return subject_for(raw)
    return json.dumps(raw)[:80]


class ConfluentWire:
    """Encoder and decoder of every contract in the Confluent wire format, with a writer-schema cache."""

    def __init__(self, client: SchemaRegistryClient, ids: dict[str, int]) -> None:
        self.client = client
        self.ids = dict(ids)  # contract name -> id registered by this process
        self._contracts = {name: load_contract(name) for name in contract_names()}
        self._names = {name: subject_for(c.raw) for name, c in self._contracts.items()}
        self._headers = {name: header(schema_id) for name, schema_id in self.ids.items()}
        #: schema id -> (record full name, parsed writer schema, or None when it is our reader schema)
        self._writers: dict[int, tuple[str, Any]] = {
            schema_id: (self._names[name], None) for name, schema_id in self.ids.items()}
        self._unknown: dict[int, tuple[float, str]] = {}  # id -> (expiry, why), ids the registry refused
        fast = _fast_change_encoder()
        event_header = self._headers.get("change_event")
        if fast is not None and event_header is not None:
            def encode_change(change: ChangeEvent, _h: bytes = event_header, _f: Any = fast) -> bytes:
                return _h + _f(change)
        else:
            def encode_change(change: ChangeEvent) -> bytes:
                return self._reframe("change_event", encode_change_generic(change))
        self.encode_change = encode_change

    def codec(self) -> MessageCodec:
        """This wire format as the :class:`~streams.core.codec.MessageCodec` the processes use."""
        return MessageCodec(self.encode, self.decode, self.encode_change, self.encode_change_batch,
                            self.split_changes, self.decode_change, name=f"confluent:{self.client.url}")

    # -- encoding -----------------------------------------------------------------------------
    def _header(self, contract: str) -> bytes:
        try:
            return self._headers[contract]
        except KeyError:
            raise SchemaRegistryError(f"contract {contract} has no id in the schema registry {self.client.url}: "
                                      "it is not registered (start an engine process, which registers "
                                      "schemas/*.avsc)") from None

    def encode(self, contract: str, record: dict[str, Any]) -> bytes:
        """Encode ``record`` against the named contract, prefixed with its registered id."""
        buf = io.BytesIO()
        buf.write(self._header(contract))
        fastavro.schemaless_writer(buf, self._contracts[contract].schema, record, strict_allow_default=True)
        return buf.getvalue()

    def _reframe(self, contract: str, plain: bytes) -> bytes:
        """A plain-framed message (streams.core.codec: 9-byte prefix) with the Confluent header instead."""
        return self._header(contract) + plain[9:]

    def encode_change_batch(self, encoded: Sequence[bytes]) -> bytes:
        """One ``change_batch`` message whose elements are complete change-event messages."""
        return self.encode("change_batch", {"events": list(encoded)})

    # -- decoding -----------------------------------------------------------------------------
    def _writer(self, contract: str, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id`` for reading a ``contract`` message (None: ours)."""
        entry = self._writers.get(schema_id)
        if entry is None:
            entry = self._fetch(schema_id)
        name, parsed = entry
        if name != self._names[contract]:
            raise DecodeError(f"{contract}: written with schema id {schema_id} ({name}), expected a "
                              f"{self._names[contract]}")
        return parsed

    def _fetch(self, schema_id: int) -> tuple[str, Any]:
        unknown = self._unknown.get(schema_id)
        if unknown is not None and unknown[0] > time.monotonic():
            raise DecodeError(unknown[1])
        try:
            text = self.client.schema(schema_id)
        except SchemaNotFoundError as exc:
            why = (f"schema id {schema_id} is unknown to the schema registry {self.client.url} "
                   f"(error code {exc.error_code}): the message was not written against this registry")
            self._unknown[schema_id] = (time.monotonic() + UNKNOWN_ID_TTL_S, why)
            raise DecodeError(why) from None
        except SchemaRegistryUnavailableError:
            raise
        except SchemaRegistryError as exc:  # 401/403 and the like: the registry's problem, not the message's
            raise SchemaRegistryUnavailableError(str(exc)) from None
        try:
            raw = json.loads(text)
            entry = (_full_name(raw), fastavro.parse_schema(raw))
        except Exception as exc:  # noqa: BLE001 - any parse failure makes the id unusable
            raise DecodeError(f"schema id {schema_id} from the registry is not a usable Avro "
                              f"schema: {type(exc).__name__}: {exc}") from None
        self._writers[schema_id] = entry
        log.info("schema id %d (%s) fetched from the registry", schema_id, entry[0])
        return entry

    def _read(self, contract: str, data: bytes | None) -> dict[str, Any]:
        if not data or len(data) < HEADER_BYTES:
            raise DecodeError(f"{contract}: message too short for the Confluent wire format "
                              f"({0 if not data else len(data)} bytes)")
        if data[0] != MAGIC:
            raise DecodeError(f"{contract}: not in the Confluent wire format (first byte {data[:1]!r}, expected "
                              "b'\\x00'): written by a producer without the schema registry? Every process must "
                              "use the same schema_registry_url")
        schema_id = int.from_bytes(data[1:5], "big")
        writer = self._writer(contract, schema_id)
        reader = self._contracts[contract].schema
        buf = io.BytesIO(data)
        buf.seek(HEADER_BYTES)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(buf, reader, None)
            else:
                record = fastavro.schemaless_reader(buf, writer, reader)
            if buf.read(1):
                raise DecodeError(f"{contract}: trailing bytes after the record (schema id {schema_id})")
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on corrupt or unresolvable input
            raise DecodeError(f"{contract}: body does not decode with schema id {schema_id}: "
                              f"{type(exc).__name__}: {exc}") from None
        return record

    def decode(self, contract: str, data: bytes | None) -> dict[str, Any]:
        """Decode a message of the named contract written in the Confluent wire format."""
        return self._read(contract, data)

    def split_changes(self, data: bytes | None) -> list[bytes | None]:
        """The change-event messages of one Kafka message value (a ``change_batch`` gives its elements)."""
        if data is not None and len(data) >= HEADER_BYTES and data[0] == MAGIC:
            schema_id = int.from_bytes(data[1:5], "big")
            entry = self._writers.get(schema_id)
            if entry is None:
                try:
                    entry = self._fetch(schema_id)
                except DecodeError:
                    return [data]  # decode_change names the fault
            if entry[0] == self._names["change_batch"]:
                return list(self._read("change_batch", data)["events"])
        return [data]

    def decode_change(self, data: bytes | None) -> ChangeEvent:
        """Decode one change-event message; raise :class:`DecodeError` if it is not a valid one.

        A message written with our own schema (the usual case) is read by the specialised decoder
        (:mod:`streams.core.change_decoder`); any other writer schema is resolved by fastavro.
        """
        fast = _fast_change_decoder()
        if fast is not None and data is not None and len(data) >= HEADER_BYTES and data[0] == MAGIC:
            schema_id = int.from_bytes(data[1:5], "big")
            if self._writers.get(schema_id) == (self._names["change_event"], None):
                return decode_change_body(fast, data, HEADER_BYTES,
                                          f"change_event: body does not decode with schema id {schema_id}")
        return change_from_record(self._read("change_event", data))


def register_contracts(client: SchemaRegistryClient, compatibility: str, register: bool = True) -> dict[str, int]:
    """Set ``compatibility`` on every contract's subject and register it (or, with ``register``
    False, only look up the ids already registered); contract name -> global id.

    Raises :class:`IncompatibleSchemaError` / :class:`InvalidSchemaError` with what to do when
    the registry refuses a contract.
    """
    ids: dict[str, int] = {}
    for name in contract_names():
        contract = load_contract(name)
        subject = subject_for(contract.raw)
        text = json.dumps(contract.raw, separators=(",", ":"), ensure_ascii=False)
        if not register:
            try:
                ids[name] = client.lookup(subject, text)
            except SchemaNotFoundError:
                log.warning("schemas/%s.avsc is not registered as %s yet", name, subject)
            continue
        client.set_compatibility(compatibility, subject)
        try:
            ids[name] = client.register(subject, text)
        except IncompatibleSchemaError as exc:
            raise IncompatibleSchemaError(
                f"the schema registry {client.url} refuses schemas/{name}.avsc as a new version of subject "
                f"{subject} (compatibility {compatibility.upper()}): {exc.message}. The registry holds a version "
                "this contract cannot evolve from: make the change compatible (add fields with defaults; "
                "streams/core/contracts.py checks the committed history in CI), or, if every reader and writer is "
                "upgraded together, set schema_registry_compatibility to a weaker level",
                exc.status, exc.error_code, exc.message) from None
        except InvalidSchemaError as exc:
            raise InvalidSchemaError(f"the schema registry {client.url} refuses schemas/{name}.avsc as invalid: "
                                     f"{exc.message}", exc.status, exc.error_code, exc.message) from None
    return ids


def codec_for(settings: Settings, register: bool = True) -> MessageCodec:
    """The message codec of a process: :data:`~streams.core.codec.PLAIN` without a registry, else the
    Confluent wire format after registering the contracts (waiting up to
    ``schema_registry_start_wait_s`` for an unreachable registry, then raising a clear error)."""
    if not settings.schema_registry_url:
        return PLAIN
    client = SchemaRegistryClient(settings.schema_registry_url, settings.schema_registry_user,
                                  settings.schema_registry_password, settings.schema_registry_timeout_s)
    def failed(exc: BaseException, _attempts: int, delay: float) -> None:
        log.warning("schema registry not reachable yet, retrying in %.1fs: %s", delay, exc)

    try:
        ids = retry(lambda: register_contracts(client, settings.schema_registry_compatibility, register),
                    "schema registry", retry_on=(SchemaRegistryUnavailableError,), backoff=Backoff(0.25, 2.0),
                    deadline_s=settings.schema_registry_start_wait_s, on_failure=failed)
    except SchemaRegistryUnavailableError as exc:
        raise SchemaRegistryUnavailableError(
            f"{exc} (waited {settings.schema_registry_start_wait_s:g} s at start)") from None
    log.info("schema registry %s: %s", client.url, ", ".join(f"{n}=id {i}" for n, i in sorted(ids.items())))
    return ConfluentWire(client, ids).codec()
