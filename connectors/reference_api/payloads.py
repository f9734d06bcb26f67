"""Typed payloads of the reference APIs, parsed from JSON objects with precise errors.

Every parser takes the decoded JSON (a ``dict``) and returns a frozen dataclass, or raises
:class:`PayloadError` naming the API, the JSON path of the fault and what was expected, e.g.
``PRV_DOC_007 payload: documents[1].title: expected a non-empty string, got number``.
Unknown keys are refused (a misspelt optional key would otherwise be silently ignored).
Every text field is checked before any store is touched: no NUL character, no unpaired
surrogate, no control character (tab and line breaks only in free text), and a maximum length
-- Keycloak's own limits for the fields of a Keycloak account, the product's limits otherwise
(:mod:`connectors.reference_api.reader`). Error messages never echo payload values.

Payload formats (``?`` = optional; "string" = non-empty string):

``PRV_USR_001``  ``{login_id, display_name, institution_code, profile?: string}``
``PRV_PAT_001``  ``{family_name, given_name, birth_date: "YYYY-MM-DD", sex, institution_code,
                 patient_number?}``
``PRV_STF_001``  ``{staff_code, display_name, role}``
``PRV_STF_003``  ``{staff_code, display_name, role, username, password, email, family_name?,
                 given_name?}`` -- the password is never stored in META, logged or returned;
                 the names default to ``display_name`` (Keycloak's first and last name rules)
``PRV_ATH_001``  ``{username, password?, temporary?: bool, enabled?: bool, required_actions?:
                 [string]}`` (at least one change)
``PRV_DOC_006``  ``{documents: [NEW, ...]}`` or a single ``NEW`` as the payload (bulk of one);
                 ``NEW = {patient_id, doc_type, title, media_type, content_base64 | content_text,
                 signed_by, content_hash?, document_number?, department?, share_state?}``
                 (without a number, the side's range assigns one; without ``share_state``,
                 ``shared`` or ``private``, the share rules decide: docs/sharing.md)
``PRV_DOC_007``  ``{documents: [{id, title?, doc_type?, media_type?, content_base64 |
                 content_text?, content_hash?, share_state?, signed_by}, ...]}`` (at least one
                 change besides ``signed_by``; only the author may change ``share_state``)
``PRV_DOC_008``  ``{documents: [{id}, ...]}`` or ``{ids: [id, ...]}``
``PRV_DOC_009``  ``{documents: [{id, approved_by}, ...]}``

Document content is exactly one of ``content_base64`` (standard base64 of the bytes) or
``content_text`` (stored as its UTF-8 bytes). ``content_hash``, if given, must be the sha256 hex
digest of the decoded content (an end-to-end integrity check by the caller). Ids must be unique
within one bulk call, and so must given document numbers. A given patient or document number
is checked here for its form only; :mod:`connectors.stores.serials` checks it against the side's
range and the numbers already used.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from connectors.reference_api import reader as r
from connectors.reference_api.errors import PayloadError
from connectors.reference_api.fhir_content import fhir_refusal, is_fhir
from connectors.reference_api.reader import JsonObject, json_type, string_item
from connectors.stores.fructos import content_sha256
from connectors.stores.serials import number_key
from streams.sharing.rules import SHARE_STATES

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;.*)?$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_KEYS = ("content_base64", "content_text")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _Obj(JsonObject):
    """A payload object: :class:`JsonObject` plus document content and media types."""

    def content(self, *, required: bool) -> bytes | None:
        """Exactly one of ``content_base64``/``content_text``, decoded; checked against ``content_hash``.

        Content is bytes (stored as ``bytea``), so it has no text limits of its own: its size is
        bounded by the broker's message limit (an oversized change is dead-lettered by the capture).
        """
        given = [key for key in _CONTENT_KEYS if key in self.data]
        if len(given) > 1:
            self.fail(given[1], "give either content_base64 or content_text, not both")
        if not given:
            if required:
                self.fail("content_base64", "missing; expected content_base64 or content_text")
            if "content_hash" in self.data:
                self.fail("content_hash", "given without content_base64 or content_text")
            return None
        key = given[0]
        text = self.data[key]
        if not isinstance(text, str) or not text.strip():
            self.fail(key, f"expected a non-empty string, got {json_type(text)}")
        if key == "content_text":
            if _SURROGATE.search(text):
                self.fail(key, "contains an unpaired UTF-16 surrogate (not valid Unicode text)")
            content = text.encode("utf-8")
        else:
            try:
                content = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                self.fail(key, "expected standard base64 (A-Z, a-z, 0-9, +, /, = padding)")
        expected_hash = self.string("content_hash", required=False)
        if expected_hash is not None:
            if not _SHA256_RE.match(expected_hash):
                self.fail("content_hash", "expected a sha256 hex digest (64 lowercase hex digits)")
            if expected_hash != content_sha256(content):
                self.fail("content_hash", f"does not match the sha256 of the content of {key}")
        return content

    def media_type(self, *, required: bool) -> str | None:
        """A media type such as ``application/pdf``."""
        value = self.string("media_type", required=required)
        if value is not None and not _MEDIA_TYPE_RE.match(value):
            self.fail("media_type", "expected a media type such as application/pdf")
        return value

    def number(self, key: str) -> str | None:
        """An optional given patient or document number (see :mod:`connectors.stores.serials`)."""
        value = self.string(key, r.NUMBER, required=False)
        if value is None:
            return None
        if any(c.isspace() for c in value):
            self.fail(key, "expected a number without spaces")
        if r.has_non_ascii_digit(value):
            self.fail(key, "expected ASCII digits 0-9 (not full-width or other digits)")
        return value


def _items(obj: _Obj, key: str, allowed: tuple[str, ...]) -> list[_Obj]:
    return [_Obj(obj.api, f"{obj.at(key)}[{i}]", item, allowed) for i, item in enumerate(obj.array(key))]


def _check_unique_ids(items: list[_Obj], ids: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, (item, value) in enumerate(zip(items, ids, strict=True)):
        if value in seen:
            item.fail("id", f"duplicate id; the same id is already at index {seen[value]}")
        seen[value] = i


@dataclass(frozen=True)
class UserPayload:
    """PRV_USR_001: register a PLAT user of the institution."""

    login_id: str
    display_name: str
    institution_code: str
    profile: str | None = None


@dataclass(frozen=True)
class PatientPayload:
    """PRV_PAT_001: register a PLAT patient of the institution."""

    family_name: str
    given_name: str
    birth_date: date
    sex: str
    institution_code: str
    patient_number: str | None = None


@dataclass(frozen=True)
class StaffPayload:
    """PRV_STF_001: register a staff member."""

    staff_code: str
    display_name: str
    role: str


@dataclass(frozen=True)
class StaffCredentialsPayload:
    """PRV_STF_003: register a staff member with credentials (the password never leaves here)."""

    staff_code: str
    display_name: str
    role: str
    username: str
    password: str = field(repr=False)
    email: str = ""
    family_name: str | None = None
    given_name: str | None = None


@dataclass(frozen=True)
class NewDocument:
    """One document of a PRV_DOC_006 registration."""

    patient_id: str
    doc_type: str
    title: str
    media_type: str
    content: bytes = field(repr=False)
    signed_by: str
    document_number: str | None = None
    department: str | None = None
    share_state: str | None = None  # None: the share rules decide (docs/sharing.md)


@dataclass(frozen=True)
class DocumentChange:
    """One document of a PRV_DOC_007 update; ``None`` fields are left unchanged."""

    id: str
    signed_by: str
    title: str | None = None
    doc_type: str | None = None
    media_type: str | None = None
    content: bytes | None = field(default=None, repr=False)
    share_state: str | None = None  # only the document's author may change it


@dataclass(frozen=True)
class DocumentApproval:
    """One document of a PRV_DOC_009 approval."""

    id: str
    approved_by: str


@dataclass(frozen=True)
class DocumentsPayload:
    """PRV_DOC_006 (items are :class:`NewDocument`) or PRV_DOC_007 (:class:`DocumentChange`)."""

    documents: tuple[Any, ...]


@dataclass(frozen=True)
class DocumentIdsPayload:
    """PRV_DOC_008: the ids of the documents to delete logically."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class ApprovalsPayload:
    """PRV_DOC_009: the documents to approve and their approvers."""

    documents: tuple[DocumentApproval, ...]


def parse_user(data: Any) -> UserPayload:
    """Parse a PRV_USR_001 payload."""
    o = _Obj("PRV_USR_001", "", data, ("login_id", "display_name", "institution_code", "profile"))
    return UserPayload(o.req("login_id"), o.req("display_name", r.NAME), o.req("institution_code"),
                       o.string("profile", r.PROFILE, required=False))


def parse_patient(data: Any) -> PatientPayload:
    """Parse a PRV_PAT_001 payload (``birth_date`` as ``YYYY-MM-DD``)."""
    o = _Obj("PRV_PAT_001", "", data, ("family_name", "given_name", "birth_date", "sex",
                                       "institution_code", "patient_number"))
    family, given, raw_date = o.req("family_name", r.NAME), o.req("given_name", r.NAME), o.req("birth_date")
    try:
        if not _DATE_RE.match(raw_date):
            raise ValueError(raw_date)
        birth_date = date.fromisoformat(raw_date)
    except ValueError:
        o.fail("birth_date", "expected a calendar date as YYYY-MM-DD")
    return PatientPayload(family, given, birth_date, o.req("sex"), o.req("institution_code"),
                          o.number("patient_number"))


def parse_staff(data: Any) -> StaffPayload:
    """Parse a PRV_STF_001 payload."""
    o = _Obj("PRV_STF_001", "", data, ("staff_code", "display_name", "role"))
    return StaffPayload(o.req("staff_code"), o.req("display_name", r.NAME), o.req("role"))


def parse_staff_with_credentials(data: Any) -> StaffCredentialsPayload:
    """Parse a PRV_STF_003 payload."""
    o = _Obj("PRV_STF_003", "", data, ("staff_code", "display_name", "role", "username", "password", "email",
                                       "family_name", "given_name"))
    # Keycloak's default user profile requires e-mail and names before a login is allowed, and
    # limits them (reader.KC_*): refused here, before either store is touched.
    family = o.string("family_name", r.KC_PERSON_NAME, required=False)
    given = o.string("given_name", r.KC_PERSON_NAME, required=False)
    display_name = o.req("display_name", r.NAME if family and given else r.KC_PERSON_NAME)
    email = o.req("email", r.KC_EMAIL)
    problem = r.email_problem(email)
    if problem is not None:
        o.fail("email", problem)
    return StaffCredentialsPayload(o.req("staff_code"), display_name, o.req("role"),
                                   o.req("username", r.KC_USERNAME), o.req("password", r.PASSWORD), email,
                                   family, given)


_NEW_DOC_KEYS = ("patient_id", "doc_type", "title", "media_type", *_CONTENT_KEYS, "content_hash",
                 "signed_by", "document_number", "department", "share_state")


def _share_state(o: _Obj) -> str | None:
    state = o.string("share_state", required=False)
    if state is not None and state not in SHARE_STATES:
        o.fail("share_state", f"expected one of {', '.join(SHARE_STATES)}")
    return state


def _check_fhir(o: _Obj, media_type: str, content: bytes) -> None:
    """A FHIR document's content must be a valid JP-CLINS document (docs/fhir.md)."""
    if is_fhir(media_type) and (refusal := fhir_refusal(content)) is not None:
        o.fail("content_text" if "content_text" in o.data else "content_base64", refusal)


def _new_document(o: _Obj) -> NewDocument:
    patient_id, doc_type, title = o.req("patient_id"), o.req("doc_type"), o.req("title", r.TITLE)
    media_type = o.media_type(required=True)
    content = o.content(required=True)
    assert media_type is not None and content is not None
    _check_fhir(o, media_type, content)
    return NewDocument(patient_id, doc_type, title, media_type, content, o.req("signed_by"),
                       o.number("document_number"), o.string("department", required=False), _share_state(o))


def parse_document_registration(data: Any) -> DocumentsPayload:
    """Parse a PRV_DOC_006 payload: ``{documents: [...]}`` or one document (a bulk of one)."""
    api = "PRV_DOC_006"
    if isinstance(data, Mapping) and "documents" in data:
        items = _items(_Obj(api, "", data, ("documents",)), "documents", _NEW_DOC_KEYS)
        docs = [_new_document(o) for o in items]
        seen: dict[int | str, int] = {}
        for i, (item, doc) in enumerate(zip(items, docs, strict=True)):
            if doc.document_number is None:
                continue
            key = number_key(doc.document_number)
            if key in seen:
                item.fail("document_number", f"duplicate number; the same number is already at index {seen[key]}")
            seen[key] = i
        return DocumentsPayload(tuple(docs))
    return DocumentsPayload((_new_document(_Obj(api, "", data, _NEW_DOC_KEYS)),))


def _document_change(o: _Obj) -> DocumentChange:
    doc_id = o.req("id")
    title, doc_type = o.string("title", r.TITLE, required=False), o.string("doc_type", required=False)
    media_type = o.media_type(required=False)
    content = o.content(required=False)
    if media_type is not None and content is not None:  # else the service checks against the stored one
        _check_fhir(o, media_type, content)
    signed_by, share_state = o.req("signed_by"), _share_state(o)
    if title is None and doc_type is None and media_type is None and content is None and share_state is None:
        o.fail("", "expected at least one of title, doc_type, media_type, content_base64, content_text, share_state")
    return DocumentChange(doc_id, signed_by, title, doc_type, media_type, content, share_state)


def parse_document_update(data: Any) -> DocumentsPayload:
    """Parse a PRV_DOC_007 payload."""
    allowed = ("id", "title", "doc_type", "media_type", *_CONTENT_KEYS, "content_hash", "signed_by", "share_state")
    items = _items(_Obj("PRV_DOC_007", "", data, ("documents",)), "documents", allowed)
    changes = [_document_change(o) for o in items]
    _check_unique_ids(items, [c.id for c in changes])
    return DocumentsPayload(tuple(changes))


def parse_document_deletion(data: Any) -> DocumentIdsPayload:
    """Parse a PRV_DOC_008 payload: ``{documents: [{id}, ...]}`` or ``{ids: [...]}``."""
    root = _Obj("PRV_DOC_008", "", data, ("documents", "ids"))
    if "documents" in root.data and "ids" in root.data:
        root.fail("ids", "give either documents or ids, not both")
    if "ids" in root.data:
        raw = root.array("ids")
        ids = []
        for i, value in enumerate(raw):
            value = string_item(root.api, f"ids[{i}]", value)
            if value in ids:
                raise PayloadError(root.api, f"ids[{i}]",
                                   f"duplicate id; the same id is already at index {ids.index(value)}")
            ids.append(value)
        return DocumentIdsPayload(tuple(ids))
    if "documents" not in root.data:
        root.fail("documents", "missing; expected a non-empty array (or ids)")
    items = _items(root, "documents", ("id",))
    doc_ids = [o.req("id") for o in items]
    _check_unique_ids(items, doc_ids)
    return DocumentIdsPayload(tuple(doc_ids))


def parse_document_approval(data: Any) -> ApprovalsPayload:
    """Parse a PRV_DOC_009 payload."""
    items = _items(_Obj("PRV_DOC_009", "", data, ("documents",)), "documents", ("id", "approved_by"))
    approvals = [DocumentApproval(o.req("id"), o.req("approved_by")) for o in items]
    _check_unique_ids(items, [a.id for a in approvals])
    return ApprovalsPayload(tuple(approvals))


#: The payload parser of each API implemented by the reference API.
PARSERS: dict[str, Callable[[Any], Any]] = {
    "PRV_USR_001": parse_user,
    "PRV_PAT_001": parse_patient,
    "PRV_STF_001": parse_staff,
    "PRV_STF_003": parse_staff_with_credentials,
    "PRV_DOC_006": parse_document_registration,
    "PRV_DOC_007": parse_document_update,
    "PRV_DOC_008": parse_document_deletion,
    "PRV_DOC_009": parse_document_approval,
}  # PRV_ATH_001 is added below, after its parser


@dataclass(frozen=True)
class AuthUpdatePayload:
    """PRV_ATH_001: change a Keycloak account's authentication (password, enabled, required actions)."""

    username: str
    password: str | None = field(default=None, repr=False)
    temporary: bool = False
    enabled: bool | None = None
    required_actions: tuple[str, ...] | None = None


def parse_auth_update(data: Any) -> AuthUpdatePayload:
    """Parse a PRV_ATH_001 payload: ``username`` plus at least one of the changes."""
    o = _Obj("PRV_ATH_001", "", data, ("username", "password", "temporary", "enabled", "required_actions"))
    username, password = o.req("username", r.KC_USERNAME_LOOKUP), o.string("password", r.PASSWORD, required=False)
    flags: dict[str, bool | None] = {}
    for key in ("temporary", "enabled"):
        value = o.data.get(key)
        if value is not None and not isinstance(value, bool):
            o.fail(key, f"expected true or false, got {json_type(value)}")
        flags[key] = value
    actions = o.data.get("required_actions")
    if actions is not None and (not isinstance(actions, list | tuple)
                                or not all(isinstance(a, str) and a.strip() for a in actions)):
        o.fail("required_actions", "expected an array of non-empty strings")
    for i, action in enumerate(actions or ()):
        string_item(o.api, f"required_actions[{i}]", action, r.REQUIRED_ACTION)
    if password is None and flags["enabled"] is None and actions is None:
        o.fail("", "expected at least one of password, enabled, required_actions")
    if flags["temporary"] is not None and password is None:
        o.fail("temporary", "only meaningful with a password")
    return AuthUpdatePayload(username, password, bool(flags["temporary"]), flags["enabled"],
                             None if actions is None else tuple(actions))


PARSERS["PRV_ATH_001"] = parse_auth_update
