"""The cloud's 6 information summary, kept current from the queue of changed FHIR documents (docs/fhir.md).

Each batch is one transaction: the queue rows it read, the summary rows of those documents (replaced by what
each document's current state gives, or removed), the submissions it queued. A crash before the commit
leaves the queue as it was, and doing a document again gives the same rows: at-least-once, idempotent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from connectors.reference_api.fhir_content import fhir_refusal, is_fhir
from connectors.stores.fhir_summary import DOCUMENTS, SIX, SUBMISSIONS, consumed, fhir_metadata, queued
from connectors.stores.fructos import content_sha256
from connectors.stores.tables import fructos_metadata
from streams.fhir.documents import DocumentTypes
from streams.fhir.extract import extract_six
from streams.fhir.parties import document_parties, document_type

log = logging.getLogger("platsync.fhir")
#: The documents submitted to the national sharing service (3 documents; the 6 information go as summaries).
SUBMITTED_TYPES = ("referral", "discharge", "checkup")
#: One summarizer at a time per store (a second waits): the key of its transaction-level advisory lock.
LOCK_KEY = 0x504C4154_46480001


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: documents summarized, removed, refused (kept as a problem), submissions queued."""

    summarized: int = 0
    removed: int = 0
    problems: int = 0
    queued: int = 0

    @property
    def documents(self) -> int:
        """Documents handled in the batch."""
        return self.summarized + self.removed + self.problems


class Summarizer:
    """Drains the queue of a shared store into its summary and submission tables."""

    def __init__(self, engine: Engine, types: DocumentTypes, batch: int = 200) -> None:
        self.engine, self.types, self.batch = engine, types, batch
        md = fhir_metadata()
        self.documents, self.six, self.submissions = md.tables[DOCUMENTS], md.tables[SIX], md.tables[SUBMISSIONS]
        self.records = fructos_metadata().tables["signed_records"]

    def run_once(self) -> BatchResult:
        """Summarize the documents of the oldest queue rows (up to a batch) in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            rows = queued(conn, self.batch)
            if not rows:
                return BatchResult()
            ids = list(dict.fromkeys(record_id for _, record_id in rows))
            current = {r.id: r for r in conn.execute(select(self.records).where(self.records.c.id.in_(ids)))}
            counts = {"summarized": 0, "removed": 0, "problems": 0, "queued": 0}
            for record_id in ids:
                outcome, submission = self._summarize(conn, record_id, current.get(record_id))
                counts[outcome] += 1
                counts["queued"] += submission
            consumed(conn, rows[-1][0])
        return BatchResult(**counts)

    def _summarize(self, conn: Connection, record_id: str, record: Any) -> tuple[str, int]:
        """Replace one document's summary rows with its current state's; (outcome key, submissions queued)."""
        conn.execute(delete(self.six).where(self.six.c.record_id == record_id))
        conn.execute(delete(self.documents).where(self.documents.c.record_id == record_id))
        if (record is None or record.deleted or not record.approved or not record.shared
                or not is_fhir(record.media_type)):
            return "removed", 0
        row = {"record_id": record_id, "patient_id": record.patient_id or "", "home_node": record.home_node,
               "version": record.version, "content_hash": record.content_hash,
               "record_updated_at": record.updated_at}
        content = bytes(record.content)
        problem = None
        if content_sha256(content) != record.content_hash:
            problem = "its content does not match its content_hash (the store holds damaged bytes)"
        else:
            problem = fhir_refusal(content)
        if problem is not None:
            log.warning("FHIR document %s (version %s) not summarized: %s", record_id, record.version, problem)
            conn.execute(insert(self.documents).values(
                **row, doc_type=record.doc_type or "", patient_number="", patient_name="", gender="",
                birth_date="", institution_code="", institution_name="", problem=problem))
            return "problems", 0
        bundle = json.loads(content.decode("utf-8"))
        kind = document_type(bundle, self.types)
        patient, institution = document_parties(bundle, self.types)
        doc_type = kind.name if kind else (record.doc_type or "")
        conn.execute(insert(self.documents).values(
            **row, doc_type=doc_type, patient_number=patient.number, patient_name=patient.name,
            gender=patient.gender, birth_date=patient.birth_date, institution_code=institution.code,
            institution_name=institution.name, problem=None))
        entries = extract_six(bundle).entries
        if entries:
            conn.execute(insert(self.six), [
                {"record_id": record_id, "position": i, "patient_id": row["patient_id"], "kind": e.kind,
                 "system": e.system, "code": e.code, "display": e.display, "date": e.date, "status": e.status,
                 "value": e.value, "source": e.source} for i, e in enumerate(entries)])
        if doc_type not in SUBMITTED_TYPES:
            return "summarized", 0
        added = conn.execute(pg_insert(self.submissions).values(
            record_id=record_id, version=record.version, content_hash=record.content_hash, doc_type=doc_type,
            patient_id=row["patient_id"], home_node=record.home_node, status="queued", attempts=0,
        ).on_conflict_do_nothing(constraint="fhir_submissions_once_per_content")).rowcount
        return "summarized", added
