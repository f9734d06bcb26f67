"""The reference implementation of the PLAT APIs that trigger synchronisation.

:class:`ReferenceApi` plays the hospital application (on ``local``) or the cloud service (on
``remote``): each API writes exactly its matrix ``source`` stores on its own side, one
transaction per store, each opened by ``SELECT platsync_mark_api(:api_id, :call_id)`` (see
``docs/integration.md``). All rows of a bulk call go into that one transaction per store.

Rules the sinks rely on: ids are uuid4 strings (the sides never collide); every write
increments ``version``; deletes are logical (``deleted = true``). A refused call (bad payload,
unknown or deleted document id) writes nothing: all checks run inside the marked transactions
before any commit, and a failure rolls every one of them back.

Every method returns ``{"api", "side", "call_id", "written": {store: {table: [ids]}},
"txids": {store: txid}}`` (see :meth:`ReferenceApi.call`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, func, insert, text
from sqlalchemy.engine import Engine

from connectors.keycloak.admin import accounts_for
from connectors.reference_api import payloads as p
from connectors.reference_api.accounts_api import create_staff_account, update_account
from connectors.reference_api.documents import (
    audit_share_states,
    bump_document,
    check_fhir_changes,
    check_fhir_documents,
    lock_live_documents,
    share_changes,
    staff_roles,
)
from connectors.reference_api.errors import ApiError, PayloadError
from connectors.reference_api.numbers import claim_or_refuse
from connectors.reference_api.subscriptions_api import (
    SUBSCRIPTION_APIS,
    SubscriptionsApi,
    canonical_subscription_api,
)
from connectors.reference_api.transaction import ApiCall
from connectors.stores.fructos import PostgresSignedRecordStore, SignedRecord
from connectors.stores.serials import DOCUMENT_NUMBER, PATIENT_NUMBER, next_document_numbers, next_patient_number
from connectors.stores.tables import meta_metadata
from streams.core.model import SIDES
from streams.runtime.connections import dsn
from streams.runtime.settings import Settings
from streams.sharing.rules import ShareRules, load_share_rules
from streams.topology.model import DEFAULT_HOSPITAL_ID

__all__ = ["ApiError", "PayloadError", "ReferenceApi", "SOURCE_STORES"]

log = logging.getLogger(__name__)

#: Database stores each API writes on each side (the matrix ``source`` column, keycloak excluded:
#: Keycloak accounts are issue #3).
SOURCE_STORES: dict[str, dict[str, tuple[str, ...]]] = {
    "local": {
        "PRV_USR_001": ("meta", "fructos_own"),
        "PRV_PAT_001": ("meta", "fructos_own"),
        "PRV_STF_001": ("meta",),
        "PRV_STF_003": ("meta",),
        "PRV_DOC_006": ("meta", "fructos_own"),
        "PRV_DOC_007": ("meta", "fructos_own"),
        "PRV_DOC_008": ("meta", "fructos_own"),
        "PRV_DOC_009": ("meta", "fructos_own"),
    },
    "remote": {
        "PRV_USR_001": ("meta", "fructos_own", "fructos_patient"),
        "PRV_PAT_001": ("meta", "fructos_own"),
        "PRV_STF_001": ("meta",),
        "PRV_STF_003": ("meta",),
        "PRV_DOC_006": ("meta", "fructos_own"),
        "PRV_DOC_007": ("meta", "fructos_own"),
        "PRV_DOC_008": ("meta", "fructos_own"),
        "PRV_DOC_009": ("meta", "fructos_own", "fructos_patient"),
    },
}

API_IDS: tuple[str, ...] = (*SOURCE_STORES["local"], "PRV_ATH_001")

_META = meta_metadata()
_USERS, _PATIENTS = _META.tables["plat_users"], _META.tables["patients"]
_STAFF, _DOCUMENTS = _META.tables["staff"], _META.tables["documents"]
_T = TypeVar("_T")


def _new_id() -> str:
    return str(uuid.uuid4())


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _typed(payload: _T | Mapping[str, Any], kind: type[_T], parser: Callable[[Any], _T]) -> _T:
    return payload if isinstance(payload, kind) else parser(payload)


def canonical_api_id(api_id: str) -> str:
    """``PRV_DOC_006`` for ``PRV_DOC_006`` or ``DOC_006``; :class:`ApiError` for unknown APIs."""
    canonical = api_id if api_id.startswith("PRV_") else f"PRV_{api_id}"
    if canonical not in API_IDS:
        raise ApiError(f"unknown API {api_id!r}; known: {', '.join((*API_IDS, *SUBSCRIPTION_APIS))}")
    return canonical


class ReferenceApi:
    """The PLAT APIs of one side, writing that side's source stores (SQLAlchemy Core)."""

    def __init__(self, settings: Settings, side: str) -> None:
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
        self.settings = settings
        self.side = side
        self._engines: dict[str, Engine] = {}

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def home_node(self) -> str:
        """The institution whose records this API writes (their home, named in each signed record): the
        hospital of its link, on both sides (the default two-site stack's hospital is ``local``)."""
        return self.settings.network_link or DEFAULT_HOSPITAL_ID

    @cached_property
    def share_rules(self) -> ShareRules:
        """The share rules (settings ``share_rules``, else the shipped file), read at the first registration:
        only PRV_DOC_006 needs them, and most calls are not that."""
        return load_share_rules(Path(self.settings.share_rules) if self.settings.share_rules else None)

    def _engine(self, store: str) -> Engine:
        engine = self._engines.get(store)
        if engine is None:
            engine = create_engine(dsn(self.settings, self.side, store, "app"), pool_size=2, max_overflow=2)
            with engine.connect() as conn:
                configured = conn.execute(text("SELECT current_setting('platsync.side', true)")).scalar()
            if configured != self.side:
                engine.dispose()
                raise ApiError(
                    f"store {store!r} at {self.settings.host}:{self.settings.pg_port(self.side)} has "
                    f"platsync.side={configured!r}, but this API runs on the {self.side} side: "
                    "its markers would carry the wrong origin side")
            self._engines[store] = engine
        return engine

    def _begin(self, api_id: str, call_id: str | None, also: tuple[str, ...] = ()) -> ApiCall:
        """The call's transactions on its matrix source stores, and, opened only if the call writes there, on
        ``also`` (on the cloud, a later change of an approved document keeps the shared store current, outside
        the matrix: docs/sharing.md)."""
        return ApiCall(api_id, call_id or _new_id(), self.side,
                       {s: self._engine(s) for s in SOURCE_STORES[self.side][api_id]},
                       {s: self._engine(s) for s in also})

    def _finish(self, call: ApiCall) -> dict[str, Any]:
        result = call.result()
        log.info("%s on %s: call %s wrote %s", call.api_id, self.side, call.call_id,
                 {s: {t: len(ids) for t, ids in tables.items()} for s, tables in call.written.items()})
        return result

    def call(self, api_id: str, payload: Mapping[str, Any], *, call_id: str | None = None) -> dict[str, Any]:
        """Run API ``api_id`` (``PRV_DOC_006`` or ``DOC_006``) with a JSON ``payload``.

        The subscription APIs (``PLAT_SUB_001..003``, :mod:`connectors.reference_api.subscriptions_api`) are
        served here too. Returns ``{"api": "PRV_...", "side": side, "call_id": str, "written": {store: {table:
        [ids created or changed]}}, "txids": {store: txid of the call's transaction}}``.
        Raises :class:`PayloadError` for a malformed payload, :class:`ApiError` for a refused
        call (nothing written).
        """
        methods: dict[str, Callable[..., dict[str, Any]]] = {
            "PRV_USR_001": self.register_user,
            "PRV_PAT_001": self.register_patient,
            "PRV_STF_001": self.register_staff,
            "PRV_STF_003": self.register_staff_with_credentials,
            "PRV_ATH_001": self.update_authentication,
            "PRV_DOC_006": self.register_documents,
            "PRV_DOC_007": self.update_documents,
            "PRV_DOC_008": self.delete_documents,
            "PRV_DOC_009": self.approve_documents,
        }
        if (subscription_api := canonical_subscription_api(api_id)) is not None:  # not in the matrix: no sync
            return self.subscriptions.call(subscription_api, payload)
        return methods[canonical_api_id(api_id)](payload, call_id=call_id)

    @cached_property
    def subscriptions(self) -> SubscriptionsApi:
        """The subscription APIs of this API's hospital (``PLAT_SUB_*``; a network's links only)."""
        return SubscriptionsApi(self.settings, self.side)

    def close(self) -> None:
        """Release the database connections."""
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        if "subscriptions" in self.__dict__:
            self.subscriptions.close()

    def __enter__(self) -> ReferenceApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- users, patients, staff -----------------------------------------------------------

    def register_user(self, payload: p.UserPayload | Mapping[str, Any], *,
                      call_id: str | None = None) -> dict[str, Any]:
        """PRV_USR_001: a ``plat_users`` row plus its signed profile record in fructos_own
        (and, on the remote side, the same record in fructos_patient).

        The record's content is the JSON of the user's fields (UTF-8); it is signed by the
        institution (``institution_code``).
        """
        u = _typed(payload, p.UserPayload, p.parse_user)
        user_id, record_id = _new_id(), _new_id()
        profile = {"login_id": u.login_id, "display_name": u.display_name,
                   "institution_code": u.institution_code, "profile": u.profile}
        record = SignedRecord.new(record_id, "plat_user", user_id, "application/json",
                                  _json_bytes(profile), signed_by=u.institution_code, home_node=self.home_node)
        with self._begin("PRV_USR_001", call_id) as call:
            self._put_record(call, record, copy_to_patient_store=self.side == "remote")
            call.conn("meta").execute(insert(_USERS).values(
                id=user_id, login_id=u.login_id, display_name=u.display_name,
                institution_code=u.institution_code, record_id=record_id))
            call.wrote("meta", "plat_users", user_id)
        return self._finish(call)

    def register_patient(self, payload: p.PatientPayload | Mapping[str, Any], *,
                         call_id: str | None = None) -> dict[str, Any]:
        """PRV_PAT_001: a ``patients`` row plus its signed record (JSON, UTF-8) in fructos_own."""
        pt = _typed(payload, p.PatientPayload, p.parse_patient)
        patient_id, record_id = _new_id(), _new_id()
        with self._begin("PRV_PAT_001", call_id) as call:
            # Without a given number, the side's own range assigns one (never collides with the other side);
            # a given one must be from this side's range and unused (serials.claim_given_numbers).
            if pt.patient_number:
                claim_or_refuse(call.conn("meta"), "PRV_PAT_001", self.settings, self.side, PATIENT_NUMBER,
                                [("patient_number", pt.patient_number)])
            number = pt.patient_number or next_patient_number(call.conn("meta"), self.settings, self.side)
            fields = {"family_name": pt.family_name, "given_name": pt.given_name,
                      "birth_date": pt.birth_date.isoformat(), "sex": pt.sex,
                      "institution_code": pt.institution_code, "patient_number": number}
            record = SignedRecord.new(record_id, "patient", patient_id, "application/json",
                                      _json_bytes(fields), signed_by=pt.institution_code, patient_id=patient_id,
                                      home_node=self.home_node)
            self._put_record(call, record)
            call.conn("meta").execute(insert(_PATIENTS).values(
                id=patient_id, patient_number=number, family_name=pt.family_name,
                given_name=pt.given_name, birth_date=pt.birth_date, sex=pt.sex,
                institution_code=pt.institution_code, record_id=record_id))
            call.wrote("meta", "patients", patient_id)
        return self._finish(call)

    def register_staff(self, payload: p.StaffPayload | Mapping[str, Any], *,
                       call_id: str | None = None) -> dict[str, Any]:
        """PRV_STF_001: a ``staff`` row in META."""
        s = _typed(payload, p.StaffPayload, p.parse_staff)
        return self._insert_staff("PRV_STF_001", call_id, s.staff_code, s.display_name, s.role, None)

    def register_staff_with_credentials(self, payload: p.StaffCredentialsPayload | Mapping[str, Any], *,
                                        call_id: str | None = None) -> dict[str, Any]:
        """PRV_STF_003: the Keycloak account (with its password) and a ``staff`` row in META.

        The password goes only to this side's Keycloak, which hashes it; it is never stored in
        META, logged or returned. The account is created first; if META then fails, the
        account is deleted again, so the call is all-or-nothing.
        """
        s = _typed(payload, p.StaffCredentialsPayload, p.parse_staff_with_credentials)
        accounts = accounts_for(self.settings, self.side)
        user_id = create_staff_account(accounts, self.side, s)
        try:
            result = self._insert_staff("PRV_STF_003", call_id, s.staff_code, s.display_name, s.role, s.username)
        except BaseException:
            accounts.delete_user(user_id)
            raise
        result["written"]["keycloak"] = {"users": [s.username]}
        return result

    def update_authentication(self, payload: p.AuthUpdatePayload | Mapping[str, Any], *,
                              call_id: str | None = None) -> dict[str, Any]:
        """PRV_ATH_001: change an account's password, enabled flag or required actions in Keycloak.

        One Admin API request, so Keycloak applies it in one transaction.
        """
        a = _typed(payload, p.AuthUpdatePayload, p.parse_auth_update)
        update_account(accounts_for(self.settings, self.side), self.side, a)
        return {"api": "PRV_ATH_001", "side": self.side, "call_id": call_id or _new_id(),
                "written": {"keycloak": {"users": [a.username]}}, "txids": {}}

    def _insert_staff(self, api_id: str, call_id: str | None, staff_code: str, display_name: str,
                      role: str, username: str | None) -> dict[str, Any]:
        staff_id = _new_id()
        with self._begin(api_id, call_id) as call:
            call.conn("meta").execute(insert(_STAFF).values(
                id=staff_id, staff_code=staff_code, display_name=display_name, role=role,
                username=username))
            call.wrote("meta", "staff", staff_id)
        return self._finish(call)

    def _put_record(self, call: ApiCall, record: SignedRecord, copy_to_patient_store: bool = False) -> None:
        # The copy is the record as fructos_own stored it (its updated_at too): the same state.
        record = PostgresSignedRecordStore(call.conn("fructos_own")).put(record)
        call.wrote("fructos_own", "signed_records", record.id)
        if copy_to_patient_store and PostgresSignedRecordStore(call.conn("fructos_patient")).copy(record):
            call.wrote("fructos_patient", "signed_records", record.id)

    # -- documents ------------------------------------------------------------------------

    def register_documents(self, payload: p.DocumentsPayload | Mapping[str, Any], *,
                           call_id: str | None = None) -> dict[str, Any]:
        """PRV_DOC_006: per document a signed record in fructos_own and a ``documents`` row
        (status ``registered``, a document number from the side's range unless given) in META
        pointing at it; all in one transaction per store."""
        docs = _typed(payload, p.DocumentsPayload, p.parse_document_registration).documents
        if not all(isinstance(d, p.NewDocument) for d in docs):
            raise TypeError("register_documents expects NewDocument items")
        if not isinstance(payload, Mapping):  # a parsed payload was checked by its parser
            check_fhir_documents(docs)  # type: ignore[arg-type]
        with self._begin("PRV_DOC_006", call_id) as call:
            records = PostgresSignedRecordStore(call.conn("fructos_own"))
            bulk = not isinstance(payload, Mapping) or "documents" in payload
            claim_or_refuse(call.conn("meta"), "PRV_DOC_006", self.settings, self.side, DOCUMENT_NUMBER,
                            [(f"documents[{i}].document_number" if bulk else "document_number", d.document_number)
                             for i, d in enumerate(docs) if d.document_number])
            numbers = iter(next_document_numbers(call.conn("meta"), self.settings, self.side,
                                                 sum(1 for d in docs if not d.document_number)))
            roles = staff_roles(call.conn("meta"), {d.signed_by for d in docs if d.share_state is None})
            rows, audit = [], []
            for d in docs:
                doc_id, record_id = _new_id(), _new_id()
                decision = self.share_rules.decide(d.doc_type, d.department, roles.get(d.signed_by))
                share = d.share_state or decision.state
                audit.append({"document_id": doc_id, "share_state": share, "changed_by": d.signed_by,
                              "decided_by": "author" if d.share_state else decision.decided_by})
                record = records.put(SignedRecord.new(record_id, "document", doc_id, d.media_type,
                                                      d.content, d.signed_by, shared=share == "shared",
                                                      patient_id=d.patient_id, doc_type=d.doc_type,
                                                      home_node=self.home_node))
                call.wrote("fructos_own", "signed_records", record_id)
                number = d.document_number or next(numbers)
                rows.append({"id": doc_id, "document_number": number, "patient_id": d.patient_id,
                             "doc_type": d.doc_type, "title": d.title, "record_id": record_id,
                             "content_hash": record.content_hash, "status": "registered",
                             "department": d.department, "author": d.signed_by, "share_state": share})
            call.conn("meta").execute(insert(_DOCUMENTS), rows)
            audit_share_states(call, audit)
            for row in rows:
                call.wrote("meta", "documents", row["id"])
        return self._finish(call)

    def update_documents(self, payload: p.DocumentsPayload | Mapping[str, Any], *,
                         call_id: str | None = None) -> dict[str, Any]:
        """PRV_DOC_007: re-sign each document's record (new content/media type if given) and
        update its META row (title, doc_type, content_hash); both version + 1."""
        changes = _typed(payload, p.DocumentsPayload, p.parse_document_update).documents
        if not all(isinstance(c, p.DocumentChange) for c in changes):
            raise TypeError("update_documents expects DocumentChange items")
        cloud = self.side == "remote"  # the cloud's API keeps its shared store current (docs/sharing.md)
        with self._begin("PRV_DOC_007", call_id, ("fructos_patient",) if cloud else ()) as call:
            live = lock_live_documents(call, [c.id for c in changes])
            previous = share_changes(call, changes)
            audit_share_states(call, [{"document_id": c.id, "share_state": c.share_state, "changed_by": c.signed_by,
                                       "previous_state": previous[c.id], "decided_by": "author"}
                                      for c in changes if c.share_state is not None])
            records = PostgresSignedRecordStore(call.conn("fructos_own"))
            current = records.get_many(live.values())
            was_shared = {r.id: r.shared for r in current.values()}
            check_fhir_changes(changes, {c.id: current[live[c.id]] for c in changes})
            for c in changes:
                shared = None if c.share_state is None else c.share_state == "shared"
                record = records.update(live[c.id], signed_by=c.signed_by, content=c.content,
                                        media_type=c.media_type, shared=shared, doc_type=c.doc_type)
                call.wrote("fructos_own", "signed_records", record.id)
                values: dict[str, Any] = {"content_hash": record.content_hash}
                if cloud and record.approved and (record.shared or was_shared[record.id]):
                    self._publish_or_withdraw(call, record)
                if c.share_state is not None:
                    values["share_state"] = c.share_state
                if c.title is not None:
                    values["title"] = c.title
                if c.doc_type is not None:
                    values["doc_type"] = c.doc_type
                bump_document(call, c.id, values)
        return self._finish(call)

    def delete_documents(self, payload: p.DocumentIdsPayload | Mapping[str, Any], *,
                         call_id: str | None = None) -> dict[str, Any]:
        """PRV_DOC_008: logical delete (``deleted = true``, version + 1) of each document's META
        row and signed record. Deleting an unknown or already deleted id is refused."""
        ids = _typed(payload, p.DocumentIdsPayload, p.parse_document_deletion).ids
        cloud = self.side == "remote"  # the cloud's API keeps its shared store current (docs/sharing.md)
        with self._begin("PRV_DOC_008", call_id, ("fructos_patient",) if cloud else ()) as call:
            live = lock_live_documents(call, list(ids))
            records = PostgresSignedRecordStore(call.conn("fructos_own"))
            for doc_id in ids:
                record = records.delete(live[doc_id])
                call.wrote("fructos_own", "signed_records", live[doc_id])
                if cloud and record.shared:  # the deleted state replaces the copy; unapproved: withdrawn (a
                    self._publish_or_withdraw(call, record)  # hospital's approval during a cut must not return)
                bump_document(call, doc_id, {"deleted": True})
        return self._finish(call)

    @staticmethod
    def _publish_or_withdraw(call: ApiCall, record: SignedRecord) -> None:
        """On the cloud, a later change of an approved document that is or was shared, or the delete of a shared
        one: copy its state into the shared patient store (shared and approved; a deleted one too, as deleted)
        or remove it from there (now private, or deleted before it was approved); docs/sharing.md."""
        store = PostgresSignedRecordStore(call.conn("fructos_patient"))
        if store.copy(record) if record.shared and record.approved else store.withdraw(record):
            call.wrote("fructos_patient", "signed_records", record.id)

    def approve_documents(self, payload: p.ApprovalsPayload | Mapping[str, Any], *,
                          call_id: str | None = None) -> dict[str, Any]:
        """PRV_DOC_009: set ``status = 'approved'``, ``approved_by``, ``approved_at`` in META and
        ``approved`` on the signed record (both version + 1); on the remote side the approved
        record is also upserted into fructos_patient (the same state: id, content, hash, version
        and updated_at).
        Approving an already approved document records the new approver (version + 1)."""
        approvals = _typed(payload, p.ApprovalsPayload, p.parse_document_approval).documents
        with self._begin("PRV_DOC_009", call_id) as call:
            live = lock_live_documents(call, [a.id for a in approvals])
            records = PostgresSignedRecordStore(call.conn("fructos_own"))
            for a in approvals:
                record = records.approve(live[a.id])
                call.wrote("fructos_own", "signed_records", record.id)
                if self.side == "remote" and record.shared and PostgresSignedRecordStore(
                        call.conn("fructos_patient")).copy(record):
                    call.wrote("fructos_patient", "signed_records", record.id)
                bump_document(call, a.id, {"status": "approved", "approved_by": a.approved_by,
                                            "approved_at": func.now()})
        return self._finish(call)
