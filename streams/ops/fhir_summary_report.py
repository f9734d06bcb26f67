"""What ``platsync fhir summary`` and ``platsync fhir submissions`` read from the cloud (docs/fhir.md).

Both read the cloud's shared store (``fructos_patient``) as the operator role: the 6 information summary the
FHIR worker keeps (:mod:`streams.apply.fhir_summarizer`) and the submission queue
(:mod:`streams.apply.fhir_submitter`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.stores.fhir_summary import DOCUMENTS, OUTBOX, SIX, SUBMISSIONS
from streams.core.model import REPLICA_STORE
from streams.fhir.six import SixEntry
from streams.fhir.summary_bundle import SummaryInstitution, SummaryPatient, six_information_bundle
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

CLOUD = "remote"


@dataclass(frozen=True)
class PatientSummary:
    """A patient's summary: the documents it comes from, its entries (each once), and the queue's backlog."""

    patient_id: str
    documents: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    waiting: int

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (times as ISO text)."""
        return {"patient_id": self.patient_id, "waiting_documents": self.waiting,
                "documents": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in d.items()}
                              for d in self.documents],
                "entries": self.entries}


def _connect(settings: Settings) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(libpq_dsn(settings, CLOUD, REPLICA_STORE, "operator"), row_factory=dict_row)


def read_summary(settings: Settings, patient_id: str) -> PatientSummary:
    """The 6 information of ``patient_id`` in the cloud. An entry found in several documents is listed once
    (with the documents it comes from)."""
    with _connect(settings) as conn:
        documents = conn.execute(
            f"SELECT record_id, doc_type, version, institution_code, institution_name, patient_number, "
            f"patient_name, gender, birth_date, record_updated_at, problem FROM {DOCUMENTS} WHERE patient_id = %s "
            "ORDER BY record_updated_at, record_id", (patient_id,)).fetchall()
        rows = conn.execute(
            f"SELECT s.record_id, s.kind, s.system, s.code, s.display, s.date, s.status, s.value, s.source "
            f"FROM {SIX} s JOIN {DOCUMENTS} d USING (record_id) WHERE s.patient_id = %s "
            "ORDER BY d.record_updated_at, s.record_id, s.position", (patient_id,)).fetchall()
        waiting = conn.execute(f"SELECT count(*) AS n FROM {OUTBOX}").fetchone()
    entries: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(str(row[k]) for k in ("kind", "system", "code", "display", "date", "status", "value"))
        entry = entries.setdefault(key, {**{k: row[k] for k in ("kind", "system", "code", "display", "date",
                                                                "status", "value", "source")}, "records": []})
        entry["records"].append(row["record_id"])
    return PatientSummary(patient_id, list(documents), list(entries.values()), int(waiting["n"] if waiting else 0))


def summary_bundle(summary: PatientSummary, institution: str | None = None) -> bytes:
    """The summary as a 6 information document Bundle, authored by ``institution`` (a 医療機関コード of one of
    the patient's documents; default: the custodian of the latest one), naming the patient by their number
    there. ``LookupError`` if the patient has no summarized document (from that institution)."""
    usable = [d for d in summary.documents if not d["problem"] and d["institution_code"]]
    if institution:
        usable = [d for d in usable if d["institution_code"] == institution]
    if not usable:
        where = f" from institution {institution}" if institution else ""
        raise LookupError(f"patient {summary.patient_id} has no summarized document{where} in the cloud")
    latest = usable[-1]
    patient = SummaryPatient(number=latest["patient_number"], name=latest["patient_name"], gender=latest["gender"],
                             birth_date=latest["birth_date"])
    entries = [SixEntry(**{k: e[k] for k in ("kind", "system", "code", "display", "date", "status", "value",
                                              "source")}) for e in summary.entries]
    return six_information_bundle(patient, entries,
                                  SummaryInstitution(latest["institution_code"], latest["institution_name"]))


@dataclass(frozen=True)
class Submission:
    """One queued submission and what became of it."""

    id: int
    record_id: str
    doc_type: str
    patient_id: str
    version: int
    status: str
    attempts: int
    receipt: str | None
    detail: str | None
    queued_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def read_submissions(settings: Settings, status: str | None = None, patient_id: str | None = None,
                     limit: int = 200) -> tuple[list[Submission], dict[str, int]]:
    """The latest ``limit`` submissions (filtered by status and patient), and the count per status of all those
    the filter selects."""
    where, params = [], []
    if status:
        where.append("status = %s")
        params.append(status)
    if patient_id:
        where.append("patient_id = %s")
        params.append(patient_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with _connect(settings) as conn:
        rows = conn.execute(
            f"SELECT id, record_id, doc_type, patient_id, version, status, attempts, receipt, detail, queued_at, "
            f"last_attempt_at, next_attempt_at FROM {SUBMISSIONS} {clause} ORDER BY id DESC LIMIT %s",
            (*params, limit)).fetchall()
        counts = {r["status"]: int(r["n"]) for r in conn.execute(
            f"SELECT status, count(*) AS n FROM {SUBMISSIONS} {clause} GROUP BY status ORDER BY status", params)}
    out = []
    for r in reversed(rows):
        pending = r["status"] in ("queued", "retrying")
        out.append(Submission(
            id=r["id"], record_id=r["record_id"], doc_type=r["doc_type"], patient_id=r["patient_id"],
            version=r["version"], status=r["status"], attempts=r["attempts"], receipt=r["receipt"],
            detail=r["detail"], queued_at=r["queued_at"].isoformat(),
            last_attempt_at=r["last_attempt_at"].isoformat() if r["last_attempt_at"] else None,
            next_attempt_at=r["next_attempt_at"].isoformat() if pending else None))
    return out, counts


def fhir_counts(settings: Settings) -> dict[str, Any]:
    """For ``platsync status``: documents waiting to be summarized (and the oldest's age in seconds), and the
    submissions per status."""
    with _connect(settings) as conn:
        row = conn.execute(f"SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age "
                           f"FROM {OUTBOX}").fetchone()
        counts = {r["status"]: int(r["n"]) for r in conn.execute(
            f"SELECT status, count(*) AS n FROM {SUBMISSIONS} GROUP BY status ORDER BY status")}
    age = None if row is None or row["age"] is None else round(float(row["age"]), 1)
    return {"waiting": int(row["n"]) if row else 0, "oldest_waiting_s": age, "submissions": counts}
