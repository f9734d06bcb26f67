"""The document APIs' shared steps: locking live documents, bumping their META rows, share-state checks.

Used by :class:`connectors.reference_api.service.ReferenceApi` (PRV_DOC_006..009); every function works
inside the call's transactions (:class:`~connectors.reference_api.transaction.ApiCall`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Connection

from connectors.reference_api.errors import ApiError, PayloadError
from connectors.reference_api.fhir_content import fhir_refusal, is_fhir
from connectors.reference_api.payloads import DocumentChange, NewDocument
from connectors.reference_api.transaction import ApiCall
from connectors.stores.fructos import PostgresSignedRecordStore, SignedRecord
from connectors.stores.tables import meta_metadata

_META = meta_metadata()
_STAFF, _DOCUMENTS = _META.tables["staff"], _META.tables["documents"]
_AUDIT_COLUMNS = ("document_id", "share_state", "previous_state", "changed_by", "decided_by", "api_id", "call_id")
_AUDIT_INSERT = text(f"INSERT INTO platsync_share_audit ({', '.join(_AUDIT_COLUMNS)}) "
                     f"VALUES ({', '.join(':' + c for c in _AUDIT_COLUMNS)})")


def staff_roles(meta: Connection, signers: set[str]) -> dict[str, str]:
    """The role of each signer that names a staff member (by id or staff code): the share rules' author role."""
    if not signers:
        return {}
    rows = meta.execute(select(_STAFF.c.id, _STAFF.c.staff_code, _STAFF.c.role).where(
        (_STAFF.c.id.in_(signers) | _STAFF.c.staff_code.in_(signers)) & _STAFF.c.deleted.is_(False))).all()
    return {**{r.staff_code: r.role for r in rows}, **{r.id: r.role for r in rows}}


def share_changes(call: ApiCall, changes: tuple[Any, ...]) -> dict[str, str]:
    """The current share state of each document whose state ``changes`` set; ApiError unless every such
    change is made by the document's author (who registered it)."""
    wanted = {c.id: c.signed_by for c in changes if c.share_state is not None}
    if not wanted:
        return {}
    found = {r.id: r for r in call.conn("meta").execute(
        select(_DOCUMENTS.c.id, _DOCUMENTS.c.author, _DOCUMENTS.c.share_state)
        .where(_DOCUMENTS.c.id.in_(list(wanted)))).all()}
    others = [f"{doc_id!r} (author {getattr(found.get(doc_id), 'author', None)!r}, not {signer!r})"
              for doc_id, signer in wanted.items() if getattr(found.get(doc_id), "author", None) != signer]
    if others:
        raise ApiError(f"{call.api_id} refused, nothing written: only a document's author may change its "
                       f"share state: document {', '.join(others)}")
    return {doc_id: found[doc_id].share_state for doc_id in wanted}


def audit_share_states(call: ApiCall, entries: list[dict[str, Any]]) -> None:
    """Record share-state settings and changes (``document_id``, ``share_state``, ``previous_state``,
    ``changed_by``, ``decided_by``) in META's audit table, in the call's transaction."""
    if entries:  # plain SQL: SQLAlchemy would add RETURNING id, and the API role may insert only
        call.conn("meta").execute(_AUDIT_INSERT, [
            {"previous_state": None, **e, "api_id": call.api_id, "call_id": call.call_id} for e in entries])


def lock_live_documents(call: ApiCall, doc_ids: list[str]) -> dict[str, str]:
    """Lock the META rows and signed records of ``doc_ids``; map each id to its record id.

    Raises :class:`ApiError` (before anything is written) if any id is unknown or deleted, or
    if its signed record is missing or deleted in fructos_own.
    """
    meta: Connection = call.conn("meta")
    rows = meta.execute(
        select(_DOCUMENTS.c.id, _DOCUMENTS.c.record_id, _DOCUMENTS.c.deleted)
        .where(_DOCUMENTS.c.id.in_(doc_ids)).order_by(_DOCUMENTS.c.id).with_for_update()
    ).all()
    found = {row.id: row for row in rows}
    unknown = [i for i in doc_ids if i not in found]
    deleted = [i for i in doc_ids if i in found and found[i].deleted]
    problems = []
    if unknown:
        problems.append(f"no document with id {', '.join(map(repr, unknown))} on the {call.side} side")
    if deleted:
        problems.append(f"document {', '.join(map(repr, deleted))} is deleted")
    if not problems:
        record_ids = [found[i].record_id for i in doc_ids]
        records = PostgresSignedRecordStore(call.conn("fructos_own")).get_many(record_ids, lock=True)
        broken = [i for i in doc_ids if found[i].record_id not in records
                  or records[found[i].record_id].deleted]
        if broken:
            problems.append(f"the signed record of document {', '.join(map(repr, broken))} is missing "
                            "or deleted in fructos_own (stores inconsistent)")
    if problems:
        raise ApiError(f"{call.api_id} refused, nothing written: {'; '.join(problems)}")
    return {i: found[i].record_id for i in doc_ids}


def bump_document(call: ApiCall, doc_id: str, values: dict[str, Any]) -> None:
    """Update one META document row: ``values``, version + 1, updated_at = now()."""
    call.conn("meta").execute(
        update(_DOCUMENTS).where(_DOCUMENTS.c.id == doc_id)
        .values(**values, version=_DOCUMENTS.c.version + 1, updated_at=func.now()))
    call.wrote("meta", "documents", doc_id)


def check_fhir_changes(changes: Sequence[DocumentChange], records: Mapping[str, SignedRecord]) -> None:
    """PRV_DOC_007: a change that makes a document's content or media type FHIR, where the payload alone
    could not be checked (new content under the stored media type, or a new media type over the stored
    content), must leave a valid JP-CLINS document (docs/fhir.md); :class:`PayloadError` otherwise."""
    for i, c in enumerate(changes):
        record = records[c.id]
        if (c.content is None) == (c.media_type is None) or not is_fhir(c.media_type or record.media_type):
            continue  # nothing changed here, or both given (the payload parser checked them), or not FHIR
        content = c.content if c.content is not None else record.content
        if (refusal := fhir_refusal(content)) is not None:
            raise PayloadError("PRV_DOC_007", f"documents[{i}]", refusal)


def check_fhir_documents(docs: Sequence[NewDocument]) -> None:
    """PRV_DOC_006 given typed documents (not parsed from JSON, which checks them): each FHIR one must be a
    valid JP-CLINS document (docs/fhir.md); :class:`PayloadError` otherwise."""
    for i, d in enumerate(docs):
        if is_fhir(d.media_type) and (refusal := fhir_refusal(d.content)) is not None:
            raise PayloadError("PRV_DOC_006", f"documents[{i}]", refusal)
