"""The patient index's declarations and answers (pure; docs/sharing.md, "The patient index").

Every common server (the cloud, each regional server) declares what its shared store holds: a
trigger on its ``signed_records`` writes one outbox row per change of a document, and the server's
declarer publishes them, in order, to its own topic ``<prefix>.index.<server>``. The index (on the
cloud) keeps, per server and record, the declaration with the greatest ``seq``: the store's latest
state, whatever order the messages were redelivered in. :func:`locations` turns a patient's entries
into the answer of ``platsync index find``: where information about the patient is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from streams.core.codec import decode, encode

CONTRACT = "index_declaration"
#: The last part of every common server's declaration topic: ``<prefix>.index.<server>``.
INDEX_TOPIC_PART = "index"


def index_topic(topic_prefix: str, server: str) -> str:
    """The topic on which common server ``server`` declares to the index (NetworkPlan.index_topic)."""
    return f"{topic_prefix}.{INDEX_TOPIC_PART}.{server}"


@dataclass(frozen=True)
class Declaration:
    """One declaration: ``server`` holds (``present``) or no longer holds document ``record_id``."""

    server: str
    seq: int
    record_id: str
    patient_id: str | None
    home_node: str | None
    doc_type: str | None
    version: int
    present: bool
    document_ts_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.server or not self.record_id:
            raise ValueError("a declaration names its server and its record")
        if self.seq < 1:
            raise ValueError(f"declaration of {self.record_id}: seq must be positive, not {self.seq}")


def encode_declaration(declaration: Declaration) -> bytes:
    """The declaration's bytes against ``schemas/index_declaration.avsc``."""
    return encode(CONTRACT, asdict(declaration))


def decode_declaration(data: bytes | None) -> Declaration:
    """Decode a declaration; :class:`streams.core.codec.DecodeError` if the bytes are not one, ``ValueError``
    if they are one that breaks its rules."""
    return Declaration(**decode(CONTRACT, data))


def latest_per_record(declarations: Iterable[Declaration]) -> list[Declaration]:
    """The declaration with the greatest ``seq`` per (server, record), in ``seq`` order: what a batch leaves."""
    best: dict[tuple[str, str], Declaration] = {}
    for d in declarations:
        known = best.get((d.server, d.record_id))
        if known is None or d.seq > known.seq:
            best[d.server, d.record_id] = d
    return sorted(best.values(), key=lambda d: (d.server, d.seq))


@dataclass(frozen=True)
class IndexEntry:
    """A document a server holds, as the index knows it."""

    server: str
    record_id: str
    home_node: str | None
    doc_type: str | None
    document_date: datetime | None


@dataclass(frozen=True)
class Location:
    """Where information about a patient is: a server holding documents of one home institution."""

    server: str
    institution: str
    documents: int
    doc_types: tuple[str, ...]
    latest: datetime | None


def locations(entries: Iterable[IndexEntry]) -> list[Location]:
    """Group a patient's entries by (server, home institution): the answer of ``platsync index find``.

    A record written before documents carried their home institution shows as ``unknown``."""
    groups: dict[tuple[str, str], list[IndexEntry]] = {}
    for e in entries:
        groups.setdefault((e.server, e.home_node or "unknown"), []).append(e)
    out = []
    for (server, institution), held in sorted(groups.items()):
        dates = [e.document_date for e in held if e.document_date is not None]
        out.append(Location(server, institution, len(held), tuple(sorted({e.doc_type or "unknown" for e in held})),
                            max(dates) if dates else None))
    return out
