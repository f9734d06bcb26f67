"""What the benchmark writes and how it checks what arrived.

Every scenario tags its rows: META ``documents.patient_id`` and FRUCtoS
``signed_records.signed_by`` hold the scenario's tag, so rows of one scenario can be counted
and compared on both sides without touching anything else.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import psycopg

from connectors.reference_api.payloads import DocumentChange, NewDocument
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

#: Size of each document's signed content (a small structured clinical document).
CONTENT_BYTES = 1024
#: The tables a PRV_DOC_006/007 call writes, per store, and the column that holds the tag.
TAGGED = {"meta": ("documents", "patient_id"), "fructos_own": ("signed_records", "signed_by")}


def new_documents(tag: str, count: int, seed: int) -> list[NewDocument]:
    """``count`` PRV_DOC_006 documents tagged ``tag``, with distinct deterministic content."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        body = rng.randbytes(CONTENT_BYTES // 2).hex().encode()
        docs.append(NewDocument(patient_id=tag, doc_type="referral", title=f"{tag} document {i}",
                                media_type="application/octet-stream", content=body, signed_by=tag))
    return docs


def document_changes(tag: str, doc_ids: Sequence[str], seed: int) -> list[DocumentChange]:
    """A PRV_DOC_007 update of each document: new title and new signed content."""
    rng = random.Random(seed)
    return [DocumentChange(id=doc_id, signed_by=tag, title=f"{tag} document {i} (revised)",
                           content=rng.randbytes(CONTENT_BYTES // 2).hex().encode())
            for i, doc_id in enumerate(doc_ids)]


def chunks(items: Sequence[object], size: int) -> Iterator[Sequence[object]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def connect(settings: Settings, side: str, store: str,
            dbname: str | None = None) -> psycopg.Connection:  # type: ignore[type-arg]
    """An autocommit connection to one store database of one side (or to ``dbname`` there)."""
    return psycopg.connect(libpq_dsn(settings, side, dbname or store) + " connect_timeout=5", autocommit=True)


@dataclass(frozen=True)
class Watch:
    """A row that must reach ``min_version`` on one store: the last row a scenario wrote there."""

    store: str
    row_id: str
    min_version: int = 1


def wait_rows(settings: Settings, side: str, watches: Iterable[Watch], timeout_s: float,
              poll_s: float = 0.02, dbname: str | None = None) -> float:
    """Block until every watched row exists at its version on ``side``; return then (epoch seconds).

    A primary-key lookup per store per poll, so that watching does not load the databases
    being measured; completeness is then checked by :func:`count_tagged`.
    """
    pending = list(watches)
    conns = {w.store: connect(settings, side, w.store, dbname) for w in pending}
    deadline = time.monotonic() + timeout_s
    try:
        while pending:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"not applied on {side} within {timeout_s:.0f}s: "
                                   + ", ".join(f"{w.store}/{w.row_id} v{w.min_version}" for w in pending))
            still = []
            for w in pending:
                table, _ = TAGGED[w.store]
                row = conns[w.store].execute(f"SELECT version FROM {table} WHERE id = %s",  # noqa: S608
                                             (w.row_id,)).fetchone()
                if row is None or row[0] < w.min_version:
                    still.append(w)
            pending = still
            if pending:
                time.sleep(poll_s)
        return time.time()
    finally:
        for conn in conns.values():
            conn.close()


def count_tagged(settings: Settings, side: str, store: str, tag: str, min_version: int = 1,
                 dbname: str | None = None) -> int:
    """Rows of ``store`` on ``side`` (or of ``dbname`` there) carrying ``tag`` at ``min_version`` or later."""
    table, column = TAGGED[store]
    with connect(settings, side, store, dbname) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s AND version >= %s",  # noqa: S608
                           (tag, min_version)).fetchone()
    return int(row[0]) if row else 0


def digest_tagged(settings: Settings, side: str, store: str, tag: str, dbname: str | None = None) -> str:
    """A digest of every column of every row carrying ``tag`` (ordered by id): equal iff contents equal.

    ``dbname`` reads the same table from another database of that side (the native replica).
    """
    table, column = TAGGED[store]
    digest = hashlib.sha256()
    with connect(settings, side, store, dbname) as conn:
        query = f"SELECT t::text FROM {table} t WHERE {column} = %s ORDER BY id"  # noqa: S608
        for (text,) in conn.cursor().stream(query, (tag,)):
            digest.update(text.encode())
            digest.update(b"\n")
    return digest.hexdigest()


def wait_count(settings: Settings, side: str, store: str, tag: str, expected: int, timeout_s: float,
               min_version: int = 1) -> int:
    """Poll :func:`count_tagged` (once a second) until it reaches ``expected``; return the last count."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = count_tagged(settings, side, store, tag, min_version)
        if found >= expected or time.monotonic() > deadline:
            return found
        time.sleep(1.0)
