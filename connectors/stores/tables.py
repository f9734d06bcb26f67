"""Reference schemas of the stores (SQLAlchemy Core), shared by the APIs, capture and sinks.

META holds PLAT users, patients, staff and documents; every FRUCtoS database holds signed
records. Every synced table has a text ``id`` (UUIDs, so the two sides never collide), a
``version`` that each API write increments (the sinks' stale-write guard), and a ``deleted``
flag (deletes are logical, so a late update can never resurrect a deleted row).

Every database also carries the engine's bookkeeping tables (``platsync_*``).
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from connectors.stores.fhir_summary import create_fhir_tables
from connectors.stores.index_outbox import create_index_outbox
from connectors.stores.master_schema import MASTER_TABLE, TARGETS_TABLE, create_master_objects
from connectors.stores.serials import create_sequences
from streams.core.model import SHARED_STORES, RowValue
from streams.runtime.settings import Settings


def _synced(name: str, metadata: MetaData, *columns: Column[Any]) -> Table:
    return Table(
        name, metadata,
        Column("id", Text, primary_key=True),
        *columns,
        Column("version", BigInteger, nullable=False, server_default=text("1")),
        Column("deleted", Boolean, nullable=False, server_default=text("false")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def _bookkeeping(metadata: MetaData) -> None:
    Table(
        "platsync_txn_marker", metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("txid", BigInteger, nullable=False, server_default=text("txid_current()")),
        Column("api_id", Text, nullable=False),
        Column("call_id", Text),
        Column("origin_side", Text, nullable=False),
        Column("applied_by_sync", Boolean, nullable=False, server_default=text("false")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Table(
        "platsync_probe", metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("probe_id", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Table(
        "platsync_tombstone", metadata,
        Column("table_name", Text, nullable=False),
        Column("id", Text, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("deleted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # A withdrawal's state (docs/sharing.md), ranked by the conflict rule; NULL for a hard delete.
        Column("approved", Boolean),
        Column("content_hash", Text),
        Column("updated_at", DateTime(timezone=True)),
        # The withdrawn state was deleted (a shared document deleted before it was approved): it beats an
        # approval the other party made at the same version during a cut. NULL (older tombstones): false.
        Column("deleted", Boolean),
        PrimaryKeyConstraint("table_name", "id"),
    )
    Table(
        "platsync_progress", metadata,
        Column("route", Text, nullable=False),
        Column("source_store", Text, nullable=False),
        Column("last_lsn", BigInteger, nullable=False, server_default=text("0")),
        Column("last_commit_ts_ms", BigInteger, nullable=False, server_default=text("0")),
        Column("last_probe_id", Text),
        Column("events_seen", BigInteger, nullable=False, server_default=text("0")),
        Column("writes_applied", BigInteger, nullable=False, server_default=text("0")),
        Column("dead_letters", BigInteger, nullable=False, server_default=text("0")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("route", "source_store"),
    )
    # Conflict handling (connectors/sinks/conflict_rule.py, docs/conflicts.md): the greatest state
    # received from the other side per row (its ordering key), and every conflict detected here.
    Table(
        "platsync_row_sync", metadata,
        Column("table_name", Text, nullable=False),
        Column("id", Text, nullable=False),
        Column("received_version", BigInteger, nullable=False),
        Column("received_updated_at", DateTime(timezone=True), nullable=False),
        Column("received_deleted", Boolean, nullable=False),
        Column("received_approved", Boolean, nullable=False),
        Column("received_content_hash", Text, nullable=False),
        PrimaryKeyConstraint("table_name", "id"),
    )
    Table(
        "platsync_conflict", metadata,
        Column("conflict_id", Text, primary_key=True),
        Column("store", Text, nullable=False),
        Column("table_name", Text, nullable=False),
        Column("row_id", Text, nullable=False),
        Column("local_row", JSONB, nullable=False),  # the version of the local side (bytes as base64)
        Column("remote_row", JSONB, nullable=False),
        Column("local_api_id", Text),
        Column("remote_api_id", Text),
        Column("winner", Text, nullable=False),  # local | remote
        Column("rule", Text, nullable=False),
        Column("detected_on", Text, nullable=False),
        Column("detected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("event_id", Text),  # the incoming change that revealed it
        Column("status", Text, nullable=False, server_default=text("'open'")),  # open | resolved
        Column("resolved_at", DateTime(timezone=True)),
        Column("resolution", Text),
        Index("platsync_conflict_row", "table_name", "row_id"),
    )


def meta_metadata() -> MetaData:
    """Tables of the META database."""
    md = MetaData()
    _synced("plat_users", md,
            Column("login_id", Text, nullable=False),
            Column("display_name", Text, nullable=False),
            Column("institution_code", Text, nullable=False),
            Column("record_id", Text))
    _synced("patients", md,
            Column("patient_number", Text),
            Column("family_name", Text, nullable=False),
            Column("given_name", Text, nullable=False),
            Column("birth_date", Date),
            Column("sex", Text),
            Column("institution_code", Text, nullable=False),
            Column("record_id", Text))
    _synced("staff", md,
            Column("staff_code", Text, nullable=False),
            Column("display_name", Text, nullable=False),
            Column("role", Text, nullable=False),
            Column("username", Text))
    _synced("documents", md,
            Column("document_number", Text),  # management serial (connectors/stores/serials.py)
            Column("patient_id", Text, nullable=False),
            Column("doc_type", Text, nullable=False),
            Column("title", Text, nullable=False),
            Column("record_id", Text, nullable=False),
            Column("content_hash", Text, nullable=False),
            Column("status", Text, nullable=False),  # registered | approved
            Column("approved_by", Text),
            Column("approved_at", DateTime(timezone=True)),
            # Sharing (docs/sharing.md): where it was written, who wrote it, shared | private.
            Column("department", Text),
            Column("author", Text),
            Column("share_state", Text, nullable=False, server_default=text("'shared'")))
    # Who changed which document's share state, when, why (docs/sharing.md): ids and states, never content.
    Table(
        "platsync_share_audit", md,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("document_id", Text, nullable=False),
        Column("share_state", Text, nullable=False),
        Column("previous_state", Text),  # NULL: set at registration
        Column("changed_by", Text, nullable=False),  # the signed_by of the call
        Column("decided_by", Text, nullable=False),  # author | rule '<name>' | default
        Column("api_id", Text, nullable=False),
        Column("call_id", Text, nullable=False),
        Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    # The MHLW medical institution master (docs/master.md): the hospital holds all of it, the cloud only its
    # target rows (is_target) and, beside them, the columns it maintains itself (master_schema.py).
    _synced(MASTER_TABLE, md,
            # The 10-digit 医療機関コード; ``id`` (the primary key the engine writes by) is the same code.
            Column("medical_id", Text, nullable=False, unique=True),
            Column("name", Text, nullable=False),
            Column("name_kana", Text),
            Column("postal_code", Text),
            Column("address", Text),
            Column("phone", Text),
            Column("founder", Text),
            Column("administrator", Text),
            Column("designated_on", Date),
            Column("beds", Integer),
            Column("departments", Text),
            Column("is_target", Boolean, nullable=False, server_default=text("false")),
            CheckConstraint("medical_id = id", name="master_medical_orgs_id_is_code"))
    Table(
        TARGETS_TABLE, md,
        Column("medical_id", Text, primary_key=True),
        Column("note", Text),
        Column("added_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Table(
        "platsync_keycloak_applied", md,
        Column("username", Text, primary_key=True),
        Column("origin_side", Text, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("fingerprint", Text, nullable=False),
        # Set (clock_timestamp) each time a state is about to be applied: the capture's echo token.
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    _bookkeeping(md)
    return md


def signed_records_table(metadata: MetaData, *extra: Column[Any]) -> Table:
    """The signed records table in ``metadata``, with ``extra`` columns (a subscriber's copies add some)."""
    return _synced("signed_records", metadata,
                   Column("entity", Text, nullable=False),  # plat_user | patient | document
                   Column("subject_id", Text, nullable=False),
                   Column("media_type", Text, nullable=False),
                   Column("content", LargeBinary, nullable=False),
                   Column("content_hash", Text, nullable=False),  # sha256 hex of content
                   Column("signed_by", Text, nullable=False),
                   Column("approved", Boolean, nullable=False, server_default=text("false")),
                   Column("shared", Boolean, nullable=False, server_default=text("true")),  # docs/sharing.md
                   Column("patient_id", Text),  # the PLAT patient a document is about (subscriptions)
                   # The patient index (docs/sharing.md): a document's type, and its home institution.
                   Column("doc_type", Text),
                   Column("home_node", Text),
                   *extra)


def fructos_metadata() -> MetaData:
    """Tables of a FRUCtoS database (own or patient-management): signed records."""
    md = MetaData()
    signed_records_table(md)
    _bookkeeping(md)
    return md


def metadata_for(store: str) -> MetaData:
    """The schema of a database store (``meta`` or a FRUCtoS store)."""
    if store == "meta":
        return meta_metadata()
    if store in ("fructos_own", "fructos_patient"):
        return fructos_metadata()
    raise ValueError(f"store {store!r} has no database schema")


#: Columns added to synced tables after their first release, and the value a row captured before the
#: column existed stands for (the source store got the same default when the column was added). The
#: sinks fill them in, so that changes still in the topics during an upgrade apply instead of failing.
ADDED_COLUMNS: dict[str, dict[str, RowValue]] = {
    "signed_records": {"shared": True, "patient_id": None, "doc_type": None, "home_node": None},  # docs/sharing.md
    "documents": {"department": None, "author": None, "share_state": "shared"},
}

SYNCED_TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("plat_users", "patients", "staff", "documents", MASTER_TABLE),
    "fructos_own": ("signed_records",),
    "fructos_patient": ("signed_records",),
}

#: Synced tables that only one side captures (table -> that side): the other side holds a read-only copy.
SENT_BY: dict[str, str] = {MASTER_TABLE: "local"}
#: Captured tables of which only the rows matching a condition cross: the publication's row filter (PostgreSQL
#: turns an update into or out of it into an insert or a delete); resync and the recovery report use it too.
ROW_FILTERS: dict[str, str] = {MASTER_TABLE: "is_target"}


def sent_tables(store: str, side: str) -> tuple[str, ...]:
    """The synced tables of ``store`` whose changes ``side`` captures and sends to the other side."""
    return tuple(t for t in SYNCED_TABLES[store] if SENT_BY.get(t, side) == side)


def sent_rows(table: str) -> str:
    """The SQL condition selecting the rows of ``table`` that cross (``true`` for all)."""
    return ROW_FILTERS.get(table, "true")


MARK_API_FUNCTION = """
CREATE OR REPLACE FUNCTION platsync_mark_api(p_api_id text, p_call_id text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    INSERT INTO platsync_txn_marker (api_id, call_id, origin_side)
    VALUES (p_api_id, p_call_id, current_setting('platsync.side'))
    RETURNING txid
$$;
"""


def create_schema(conn: Connection, store: str, side: str, database: str, settings: Settings) -> None:
    """Create the store's tables, the marker function and the side setting (idempotent); META's serial
    sequences over the side's configured number ranges (``settings``)."""
    metadata_for(store).create_all(conn)
    for table in SYNCED_TABLES[store]:
        # Full before-images let a delete event carry the version it removed.
        conn.execute(text(f"ALTER TABLE {table} REPLICA IDENTITY FULL"))
    conn.execute(text(MARK_API_FUNCTION))
    # The capture reads back a marker whose row Debezium did not deliver (connectors/capture/marker_lookup.py).
    conn.execute(text("CREATE INDEX IF NOT EXISTS platsync_txn_marker_txid ON platsync_txn_marker (txid)"))
    for column in ("approved boolean", "content_hash text", "updated_at timestamptz", "deleted boolean"):  # older
        conn.execute(text(f"ALTER TABLE platsync_tombstone ADD COLUMN IF NOT EXISTS {column}"))
    if store == "meta":
        create_sequences(conn, settings, side)
        master = meta_metadata().tables[MASTER_TABLE]
        create_master_objects(conn, side, settings.master_protected_column_names, [c.name for c in master.columns])
        # Data dirs made before document numbers and sharing existed.
        for column in ("document_number text", "department text", "author text",
                       "share_state text NOT NULL DEFAULT 'shared'"):
            conn.execute(text(f"ALTER TABLE documents ADD COLUMN IF NOT EXISTS {column}"))
    else:  # a FRUCtoS store made before sharing existed
        for column in ("shared boolean NOT NULL DEFAULT true", "patient_id text", "doc_type text", "home_node text"):
            conn.execute(text(f"ALTER TABLE signed_records ADD COLUMN IF NOT EXISTS {column}"))
        if store in SHARED_STORES:  # a common server's shared store declares to the patient index
            create_index_outbox(conn)
            if side == "remote":  # the cloud's: the 6 information summary and the submissions (docs/fhir.md)
                create_fhir_tables(conn)
    conn.execute(text(f"ALTER DATABASE \"{database}\" SET platsync.side = '{side}'"))
    conn.execute(text(f"SET platsync.side = '{side}'"))


#: How :func:`coerce_row` converts a wire value of a column kind given as a string (other kinds: as is).
_DATETIME, _DATE, _BINARY = "datetime", "date", "binary"


@cache
def _column_kinds(table: Table) -> dict[str, str | None]:
    """Column name -> what a string value of it becomes (None: kept as is); looked up once per table,
    because SQLAlchemy's column lookup and type checks were a tenth of a worker's per-row time."""
    kinds: dict[str, str | None] = {}
    for column in table.columns:
        kind = column.type
        kinds[column.name] = (_DATETIME if isinstance(kind, DateTime) else _DATE if isinstance(kind, Date)
                              else _BINARY if isinstance(kind, LargeBinary) else None)
    return kinds


@cache
def column_names(table: Table) -> tuple[str, ...]:
    """``table``'s column names in order (looked up once per table)."""
    return tuple(_column_kinds(table))


def coerce_row(table: Table, row: dict[str, RowValue]) -> dict[str, Any]:
    """Turn a row in its wire form (ISO strings, bytes) into values for ``table``'s columns.

    Unknown columns raise ``KeyError`` naming the column: a schema mismatch must be loud.
    """
    kinds = _column_kinds(table)
    out: dict[str, Any] = {}
    for name, value in row.items():
        kind = kinds[name]
        if kind is None or not isinstance(value, str):
            out[name] = value
        elif kind is _DATETIME:
            out[name] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif kind is _DATE:
            out[name] = date.fromisoformat(value)
        else:
            out[name] = base64.b64decode(value)
    return out
