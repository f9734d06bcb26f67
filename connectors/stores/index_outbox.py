"""A common server's declarations to the patient index, waiting to be published (docs/sharing.md).

A trigger on the shared store's ``signed_records`` (the cloud's ``fructos_patient``, a regional
server's copy) writes one ``platsync_index_outbox`` row per change of a document, in the transaction
that changed it, whoever wrote it (the API's copy or withdrawal, a worker's apply, a replica
worker). So the outbox is exactly the store's history, in commit order per record, and nothing the
store took can be missed by the index. The declarer (:mod:`streams.apply.declarer`) publishes the
rows in ``seq`` order and deletes them once the broker has them.

The table is not captured (Debezium's table list names the synced tables only), and the trigger's
function runs as its owner (the provisioning admin), so the roles writing the store need no grant on
the outbox.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from streams.sharing.index import Declaration

OUTBOX = "platsync_index_outbox"

_DDL = f"""
CREATE TABLE IF NOT EXISTS {OUTBOX} (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id text NOT NULL,
    patient_id text,
    home_node text,
    doc_type text,
    version bigint NOT NULL,
    present boolean NOT NULL,
    document_date timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION platsync_index_declare() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.entity = 'document' THEN
            INSERT INTO {OUTBOX} (record_id, patient_id, home_node, doc_type, version, present, document_date)
            VALUES (OLD.id, OLD.patient_id, OLD.home_node, OLD.doc_type, OLD.version, false, OLD.updated_at);
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.entity = 'document' THEN
        INSERT INTO {OUTBOX} (record_id, patient_id, home_node, doc_type, version, present, document_date)
        VALUES (NEW.id, NEW.patient_id, NEW.home_node, NEW.doc_type, NEW.version,
                NOT NEW.deleted AND NEW.shared AND NEW.approved, NEW.updated_at);
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION platsync_index_declare() FROM PUBLIC;
CREATE OR REPLACE TRIGGER platsync_index_declare
    AFTER INSERT OR UPDATE OR DELETE ON signed_records
    FOR EACH ROW EXECUTE FUNCTION platsync_index_declare();
"""

_READ = text(f"""
SELECT seq, record_id, patient_id, home_node, doc_type, version, present,
       (extract(epoch FROM document_date) * 1000)::bigint AS document_ts_ms
FROM {OUTBOX} ORDER BY seq LIMIT :limit""")

#: "By command" (``platsync index declare``): every document the store holds, declared again.
_REDECLARE = text(f"""
INSERT INTO {OUTBOX} (record_id, patient_id, home_node, doc_type, version, present, document_date)
SELECT id, patient_id, home_node, doc_type, version, NOT deleted AND shared AND approved, updated_at
FROM signed_records WHERE entity = 'document' ORDER BY id""")


def create_index_outbox(conn: Connection) -> None:
    """Create the outbox and its trigger on ``signed_records`` of a shared store (idempotent)."""
    conn.exec_driver_sql(_DDL)


def pending(conn: Connection, server: str, limit: int = 500) -> list[Declaration]:
    """The oldest ``limit`` declarations not published yet, in ``seq`` order, as ``server``'s."""
    return [Declaration(server=server, seq=r.seq, record_id=r.record_id, patient_id=r.patient_id,
                        home_node=r.home_node, doc_type=r.doc_type, version=r.version, present=r.present,
                        document_ts_ms=r.document_ts_ms)
            for r in conn.execute(_READ, {"limit": limit})]


def published(conn: Connection, up_to_seq: int) -> int:
    """Forget the declarations up to ``up_to_seq`` (the broker has them); how many were removed."""
    return conn.execute(text(f"DELETE FROM {OUTBOX} WHERE seq <= :seq"), {"seq": up_to_seq}).rowcount


def redeclare_all(conn: Connection) -> int:
    """Queue a declaration of every document the store holds (after the index was lost, or for a store whose
    documents predate the index); how many. Safe to repeat: the index keeps the latest per record."""
    return conn.execute(_REDECLARE).rowcount


def backlog(conn: Connection) -> tuple[int, float | None]:
    """How many declarations wait, and the age in seconds of the oldest (None if none wait)."""
    row = conn.execute(text(f"SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM {OUTBOX}")).one()
    return int(row[0]), (None if row[1] is None else float(row[1]))
