"""The cloud's FHIR bookkeeping beside the shared store: the 6 information summary and the submission queue.

On the cloud's ``fructos_patient`` (which holds exactly the approved, shared, live documents; docs/sharing.md),
a trigger on ``signed_records`` queues the id of every FHIR document that changed, in the writing transaction,
whoever wrote it (a worker's apply, the cloud's API, a withdrawal, a resync): so no change can be missed. The
FHIR worker (:mod:`streams.apply.fhir_worker`) drains the queue in order and, per document, in one
transaction with the queue rows it consumed:

- replaces the document's rows of the summary (``fhir_summary_documents``, ``fhir_six_summary``) with what
  its current state gives, or removes them (withdrawn, deleted): at-least-once and idempotent, current on
  update and delete by construction;
- queues the submission of a referral, discharge summary or checkup report to the national sharing service
  (``fhir_submissions``), once per content (same bytes, one submission, whatever the number of changes).

The tables are not captured, and the trigger's function runs as its owner (the provisioning admin), so the
roles writing the store need no grant on the queue.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.engine import Connection

OUTBOX = "platsync_fhir_outbox"
DOCUMENTS = "fhir_summary_documents"
SIX = "fhir_six_summary"
SUBMISSIONS = "fhir_submissions"

_DDL = f"""
-- As connectors/reference_api/fhir_content.is_fhir: the media type without its parameters.
CREATE OR REPLACE FUNCTION platsync_is_fhir(media_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT btrim(lower(split_part(media_type, ';', 1))) = 'application/fhir+json' $$;
CREATE TABLE IF NOT EXISTS {OUTBOX} (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION platsync_fhir_queue() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    -- Only documents that are or were FHIR; the worker reads the record's state when it drains the queue.
    IF TG_OP <> 'INSERT' AND OLD.entity = 'document' AND platsync_is_fhir(OLD.media_type) THEN
        INSERT INTO {OUTBOX} (record_id) VALUES (OLD.id);
    ELSIF TG_OP <> 'DELETE' AND NEW.entity = 'document' AND platsync_is_fhir(NEW.media_type) THEN
        INSERT INTO {OUTBOX} (record_id) VALUES (NEW.id);
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION platsync_fhir_queue() FROM PUBLIC;
CREATE OR REPLACE TRIGGER platsync_fhir_queue
    AFTER INSERT OR UPDATE OR DELETE ON signed_records
    FOR EACH ROW EXECUTE FUNCTION platsync_fhir_queue();
"""


@cache
def fhir_metadata() -> MetaData:
    """The summary and submission tables (on the shared store, beside ``signed_records``)."""
    md = MetaData()
    Table(DOCUMENTS, md,
          Column("record_id", Text, primary_key=True),
          Column("patient_id", Text, nullable=False),
          Column("home_node", Text),
          Column("doc_type", Text, nullable=False),  # the FHIR document type (streams/fhir/documents.toml)
          Column("version", BigInteger, nullable=False),
          Column("content_hash", Text, nullable=False),
          Column("patient_number", Text, nullable=False),  # the patient's number at the custodian
          Column("patient_name", Text, nullable=False),
          Column("gender", Text, nullable=False),
          Column("birth_date", Text, nullable=False),
          Column("institution_code", Text, nullable=False),
          Column("institution_name", Text, nullable=False),
          Column("problem", Text),  # why its 6 information could not be extracted (then it has no rows)
          Column("record_updated_at", DateTime(timezone=True)),
          Column("summarized_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Index("fhir_summary_documents_patient", "patient_id"))
    Table(SIX, md,
          Column("record_id", Text, primary_key=True),
          Column("position", Integer, primary_key=True),  # order within the document
          Column("patient_id", Text, nullable=False),
          Column("kind", Text, nullable=False),  # streams/fhir/six.py KINDS
          Column("system", Text, nullable=False),
          Column("code", Text, nullable=False),
          Column("display", Text, nullable=False),
          Column("date", Text, nullable=False),
          Column("status", Text, nullable=False),
          Column("value", Text, nullable=False),
          Column("source", Text, nullable=False),
          Index("fhir_six_summary_patient", "patient_id", "kind"))
    Table(SUBMISSIONS, md,
          Column("id", BigInteger, Identity(), primary_key=True),
          Column("record_id", Text, nullable=False),
          Column("version", BigInteger, nullable=False),
          Column("content_hash", Text, nullable=False),
          Column("doc_type", Text, nullable=False),
          Column("patient_id", Text, nullable=False),
          Column("home_node", Text),
          # queued -> accepted | refused; retrying between attempts (detail says why)
          Column("status", Text, nullable=False),
          Column("attempts", Integer, nullable=False),
          Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Column("queued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
          Column("last_attempt_at", DateTime(timezone=True)),
          Column("receipt", Text),
          Column("detail", Text),
          UniqueConstraint("record_id", "content_hash", name="fhir_submissions_once_per_content"),
          Index("fhir_submissions_due", "status", "next_attempt_at"))
    return md


def create_fhir_tables(conn: Connection) -> None:
    """Create the summary and submission tables, the queue and its trigger on ``signed_records`` (idempotent).
    A store that held FHIR documents before the queue existed (an upgraded data dir) has them all queued."""
    new = conn.execute(text(f"SELECT to_regclass('{OUTBOX}') IS NULL")).scalar_one()
    fhir_metadata().create_all(conn)
    conn.exec_driver_sql(_DDL)
    if new:
        _requeue_all(conn)


def queued(conn: Connection, limit: int) -> list[tuple[int, str]]:
    """The oldest ``limit`` queue rows: (seq, record_id) in ``seq`` order."""
    rows = conn.execute(text(f"SELECT seq, record_id FROM {OUTBOX} ORDER BY seq LIMIT :limit"), {"limit": limit})
    return [(int(r.seq), str(r.record_id)) for r in rows]


def consumed(conn: Connection, up_to_seq: int) -> int:
    """Forget the queue rows up to ``up_to_seq``; how many."""
    return conn.execute(text(f"DELETE FROM {OUTBOX} WHERE seq <= :seq"), {"seq": up_to_seq}).rowcount


def _requeue_all(conn: Connection) -> int:
    """Queue every FHIR document the store holds again (a summary table rebuilt, or documents older than it)."""
    return conn.execute(text(
        f"INSERT INTO {OUTBOX} (record_id) SELECT id FROM signed_records WHERE entity = 'document' "
        "AND platsync_is_fhir(media_type) ORDER BY id")).rowcount


def backlog(conn: Connection) -> tuple[int, float | None]:
    """How many documents wait to be summarized, and the age in seconds of the oldest (None if none)."""
    row = conn.execute(text(f"SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM {OUTBOX}")).one()
    return int(row[0]), (None if row[1] is None else float(row[1]))
