"""The FRUCtoS adapter: a store of signed records, with a PostgreSQL-backed default.

FRUCtoS (自医療機関FRUCtoS / 患者管理FRUCtoS) is a proprietary record store with no public API.
PLAT Sync only needs it as a store of *signed records*: opaque content bytes, the sha256 hex
digest of that content, who signed it, a ``version`` that every write increments, a logical
``deleted`` flag and an ``approved`` flag. :class:`SignedRecordStore` is that contract;
:class:`PostgresSignedRecordStore` implements it on the ``signed_records`` table of a FRUCtoS
database (see :func:`connectors.stores.tables.fructos_metadata`).

The store works on a SQLAlchemy :class:`~sqlalchemy.engine.Connection` whose transaction the
caller owns: the caller must have run ``SELECT platsync_mark_api(...)`` as the first statement
of that transaction (see ``docs/integration.md``), and commits or rolls back itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import Table, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from connectors.sinks import conflict_rule as rule
from connectors.stores import withdrawals
from connectors.stores.tables import fructos_metadata
from streams.core.errors import PlatSyncError

ENTITIES: tuple[str, ...] = ("plat_user", "patient", "document")


class RecordNotFoundError(PlatSyncError, LookupError):
    """No live (not logically deleted) signed record has the requested id."""


def content_sha256(content: bytes) -> str:
    """The sha256 hex digest of ``content`` (the ``content_hash`` of a signed record)."""
    return hashlib.sha256(content).hexdigest()


def verify_content_hash(content: bytes, content_hash: str, record_id: str = "") -> None:
    """Raise ``ValueError`` unless ``content_hash`` is the sha256 hex digest of ``content``."""
    actual = content_sha256(content)
    if content_hash != actual:
        where = f"signed record {record_id}: " if record_id else ""
        raise ValueError(
            f"{where}content_hash {content_hash!r} does not match the content "
            f"({len(content)} bytes, sha256 {actual})"
        )


@dataclass(frozen=True)
class SignedRecord:
    """One signed record: opaque content plus its hash, signer, version and flags.

    ``subject_id`` is the id of the META row the record belongs to (a PLAT user, a patient or
    a document); ``entity`` says which of the three (see :data:`ENTITIES`).

    ``shared`` is a document's share state (``docs/sharing.md``): a record that is not shared never
    reaches a store shared beyond its institution (the patient-management FRUCtoS, a regional server).
    Records of users and patients are always ``shared``. ``patient_id`` is the PLAT patient a document
    (or a patient's own record) is about, so that a router can tell whose it is from the record alone
    (subscriptions, docs/sharing.md); ``None`` for users' records. ``doc_type`` is a document's type and
    ``home_node`` the topology node of the institution that wrote the record (its home), both for the
    patient index (docs/sharing.md); ``None`` in records written before they existed.

    ``updated_at`` is when the store wrote this version (``None`` for a record not read from a
    store). It is not part of the record's value (equality ignores it), but it is part of the
    state's identity for the sync (``version`` and ``updated_at``, see ``docs/conflicts.md``):
    :meth:`PostgresSignedRecordStore.copy` writes it verbatim.
    """

    id: str
    entity: str
    subject_id: str
    media_type: str
    content: bytes
    content_hash: str
    signed_by: str
    version: int = 1
    deleted: bool = False
    approved: bool = False
    shared: bool = True
    patient_id: str | None = None
    doc_type: str | None = None
    home_node: str | None = None
    updated_at: datetime | None = field(default=None, compare=False)

    @classmethod
    def new(cls, id: str, entity: str, subject_id: str, media_type: str, content: bytes,
            signed_by: str, shared: bool = True, patient_id: str | None = None, doc_type: str | None = None,
            home_node: str | None = None) -> SignedRecord:
        """A version-1 record whose ``content_hash`` is computed from ``content``."""
        return cls(id=id, entity=entity, subject_id=subject_id, media_type=media_type,
                   content=content, content_hash=content_sha256(content), signed_by=signed_by,
                   shared=shared, patient_id=patient_id, doc_type=doc_type, home_node=home_node)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SignedRecord:
        """Build a record from a ``signed_records`` row mapping."""
        return cls(id=row["id"], entity=row["entity"], subject_id=row["subject_id"],
                   media_type=row["media_type"], content=bytes(row["content"]),
                   content_hash=row["content_hash"], signed_by=row["signed_by"],
                   version=int(row["version"]), deleted=bool(row["deleted"]),
                   approved=bool(row["approved"]), shared=bool(row.get("shared", True)),
                   patient_id=row.get("patient_id"), doc_type=row.get("doc_type"),
                   home_node=row.get("home_node"), updated_at=row.get("updated_at"))


class SignedRecordStore(Protocol):
    """What PLAT Sync needs from a FRUCtoS store. Every write increments ``version``."""

    def put(self, record: SignedRecord) -> SignedRecord:
        """Create a new record (its ``content_hash`` must match its content)."""
        ...

    def update(self, record_id: str, *, signed_by: str, content: bytes | None = None,
               content_hash: str | None = None, media_type: str | None = None,
               shared: bool | None = None) -> SignedRecord:
        """Re-sign a live record, optionally replacing content, media type and share state; version + 1."""
        ...

    def approve(self, record_id: str) -> SignedRecord:
        """Mark a live record approved; version + 1."""
        ...

    def delete(self, record_id: str) -> SignedRecord:
        """Logically delete a live record (``deleted = true``); version + 1."""
        ...

    def get(self, record_id: str) -> SignedRecord | None:
        """The record with ``record_id`` (deleted ones included), or ``None``."""
        ...

    def get_many(self, record_ids: Iterable[str], *, lock: bool = False) -> dict[str, SignedRecord]:
        """The records among ``record_ids`` that exist, by id; ``lock`` locks them for update."""
        ...

    def copy(self, record: SignedRecord) -> bool:
        """Write ``record`` as is (same id, content, hash, version, updated_at); False if stale."""
        ...

    def withdraw(self, record: SignedRecord) -> bool:
        """Remove the copy of ``record`` (made private) unless newer; True if a row was removed."""
        ...


#: The columns of the conflict rule's key, in its order (connectors/sinks/conflict_rule.py), but the row hash.
RANKED = ("deleted", "approved", "version", "content_hash", "updated_at")


@cache
def _signed_records_table() -> Table:
    """The ``signed_records`` table, built once: a store is made per API call, and building the
    metadata each time was most of a single-document call's CPU."""
    return fructos_metadata().tables["signed_records"]


class PostgresSignedRecordStore:
    """:class:`SignedRecordStore` on the ``signed_records`` table; the caller owns the transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._table: Table = _signed_records_table()

    def put(self, record: SignedRecord) -> SignedRecord:
        """Insert a new record; ``ValueError`` if its hash or entity is wrong or it is not version 1."""
        verify_content_hash(record.content, record.content_hash, record.id)
        if record.entity not in ENTITIES:
            raise ValueError(f"signed record {record.id}: entity {record.entity!r} not in {ENTITIES}")
        if record.version != 1 or record.deleted:
            raise ValueError(f"signed record {record.id}: a new record must be live and at version 1")
        row = self._conn.execute(
            pg_insert(self._table).values(**_values(record)).returning(*self._table.c)
        ).mappings().one()
        return SignedRecord.from_row(row)

    def update(self, record_id: str, *, signed_by: str, content: bytes | None = None,
               content_hash: str | None = None, media_type: str | None = None,
               shared: bool | None = None, doc_type: str | None = None) -> SignedRecord:
        """Re-sign a live record; new ``content`` gets ``content_hash`` (verified, or computed);
        ``shared`` sets the share state, ``doc_type`` a document's type."""
        values: dict[str, Any] = {"signed_by": signed_by}
        if content is not None:
            if content_hash is None:
                content_hash = content_sha256(content)
            verify_content_hash(content, content_hash, record_id)
            values.update(content=content, content_hash=content_hash)
        elif content_hash is not None:
            raise ValueError(f"signed record {record_id}: content_hash given without content")
        if media_type is not None:
            values["media_type"] = media_type
        if shared is not None:
            values["shared"] = shared
        if doc_type is not None:
            values["doc_type"] = doc_type
        return self._bump(record_id, values)

    def approve(self, record_id: str) -> SignedRecord:
        """Set ``approved = true`` on a live record; version + 1."""
        return self._bump(record_id, {"approved": True})

    def delete(self, record_id: str) -> SignedRecord:
        """Logically delete a live record; version + 1. The row stays (deletes are logical)."""
        return self._bump(record_id, {"deleted": True})

    def get(self, record_id: str) -> SignedRecord | None:
        """The record with ``record_id`` (deleted ones included), or ``None``."""
        return self.get_many([record_id]).get(record_id)

    def get_many(self, record_ids: Iterable[str], *, lock: bool = False) -> dict[str, SignedRecord]:
        """The existing records among ``record_ids``, by id; ``lock`` takes ``FOR UPDATE`` locks."""
        ids = list(record_ids)
        if not ids:
            return {}
        query = select(self._table).where(self._table.c.id.in_(ids)).order_by(self._table.c.id)
        if lock:
            query = query.with_for_update()
        rows = self._conn.execute(query).mappings().all()
        return {row["id"]: SignedRecord.from_row(row) for row in rows}

    def copy(self, record: SignedRecord) -> bool:
        """Upsert ``record`` verbatim (e.g. into 患者管理FRUCtoS), guarded by version.

        The copy is the same state as the original: every column, ``updated_at`` included, is
        the record's own (as read back from the store that wrote it). A second clock read here
        would give the copy a state of its own, and the next change of the original, whose
        before-image names the original's state, would be taken for a concurrent edit of the
        copy (a false conflict). Only a record never read from a store (``updated_at`` None)
        gets this transaction's ``now()``. An existing row is replaced only by a state that beats it
        by the conflict rule, as the sinks decide (a state the other party wrote at the same version
        during a cut may have reached this store first), and a document withdrawn from a shared store
        in a state that beats ``record`` is not copied back; returns whether a row was written.
        """
        verify_content_hash(record.content, record.content_hash, record.id)
        if record.updated_at is not None:  # a tombstone first: rare, so one query in the common case
            gone = self._withdrawn(record.id)
            if gone is not None and gone >= _rank(record) and self.get(record.id) is None:
                return False  # withdrawn in a state that beats this one
        values = _values(record)
        values["updated_at"] = func.now() if record.updated_at is None else record.updated_at
        stmt = pg_insert(self._table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[self._table.c.id],
            set_={name: stmt.excluded[name] for name in values if name != "id"},
            where=tuple_(*(self._table.c[n] for n in RANKED)) < tuple_(*(stmt.excluded[n] for n in RANKED)),
        ).returning(self._table.c.id)
        return self._conn.execute(stmt).first() is not None

    def withdraw(self, record: SignedRecord) -> bool:
        """Remove the copy of a document made private (docs/sharing.md) from a shared store.

        Decided by the conflict rule, like every write the sinks make there: the copy goes unless it
        is a state that beats ``record`` (a concurrent change from the other side that won), and the
        tombstone keeps the withdrawn state's rank, so that no copy of a state it beats comes back
        (the sinks and :meth:`copy` honour it). Returns whether a row was removed.
        """
        mine = _rank(record)
        current = self._conn.execute(
            select(self._table).where(self._table.c.id == record.id).with_for_update()).mappings().first()
        if current is not None and rule.rank_key(current) >= mine:
            return False
        if current is None and (gone := self._withdrawn(record.id)) is not None and gone >= mine:
            return False
        self._conn.execute(delete(self._table).where(self._table.c.id == record.id))
        self._conn.exec_driver_sql(withdrawals.UPSERT_WITHDRAWN, {
            "table": "signed_records", "id": record.id, "version": record.version, "approved": record.approved,
            "content_hash": record.content_hash, "updated_at": record.updated_at, "deleted": record.deleted})
        return current is not None

    def _withdrawn(self, record_id: str) -> rule.RankKey | None:
        """The withdrawn state a tombstone of ``record_id`` keeps (locked), if any."""
        row = self._conn.exec_driver_sql(withdrawals.SELECT_WITHDRAWN,
                                         {"table": "signed_records", "ids": [record_id]}).first()
        return None if row is None else withdrawals.withdrawn_key(*row[1:])

    def _bump(self, record_id: str, values: dict[str, Any]) -> SignedRecord:
        t = self._table
        row = self._conn.execute(
            update(t)
            .where(t.c.id == record_id, t.c.deleted.is_(False))
            .values(**values, version=t.c.version + 1, updated_at=func.now())
            .returning(*t.c)
        ).mappings().first()
        if row is None:
            raise RecordNotFoundError(f"no live signed record with id {record_id!r}")
        return SignedRecord.from_row(row)


def _values(record: SignedRecord) -> dict[str, Any]:
    return {
        "id": record.id, "entity": record.entity, "subject_id": record.subject_id,
        "media_type": record.media_type, "content": record.content,
        "content_hash": record.content_hash, "signed_by": record.signed_by,
        "version": record.version, "deleted": record.deleted, "approved": record.approved,
        "shared": record.shared, "patient_id": record.patient_id, "doc_type": record.doc_type,
        "home_node": record.home_node,
    }


def _rank(record: SignedRecord) -> rule.RankKey:
    """The conflict rule's key of a record read from a store (its ``updated_at`` is set)."""
    if record.updated_at is None:
        raise ValueError(f"signed record {record.id}: no updated_at; read it from its store first")
    return rule.rank_key({**_values(record), "updated_at": record.updated_at})
