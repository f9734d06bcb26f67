"""JSON Schemas (OpenAPI 3.1, JSON Schema 2020-12) of the reference APIs' payloads, from their parsers' rules.

They follow :mod:`connectors.reference_api.payloads` as far as a schema can: required and optional keys,
no unknown keys, non-empty strings (not only whitespace) with the length limits of
:mod:`connectors.reference_api.reader`, enumerations, formats. What only the parser checks (no control
characters, Keycloak's UTF-16 length counting and person-name characters, the content hash matching the
content, a FHIR document's validity, unique ids in a bulk call, at least one change) is said in the
descriptions; the parser stays the authority and answers 422 with the JSON path of the fault.
"""

from __future__ import annotations

from typing import Any

from connectors.reference_api import reader as r
from connectors.reference_api.reader import TextRule
from streams.sharing.rules import SHARE_STATES

Schema = dict[str, Any]


def text(rule: TextRule = r.CODE, description: str = "", **extra: Any) -> Schema:
    """A non-empty string obeying ``rule``."""
    unit = "UTF-16 code units" if rule.utf16 else "characters"
    what = f"at most {rule.max_len} {unit} ({rule.why})"
    if rule.free_text:
        what += "; tab and line breaks allowed, no other control character"
    else:
        what += "; no control character"
    schema: Schema = {"type": "string", "minLength": max(1, rule.min_len), "maxLength": rule.max_len,
                      "pattern": r"\S", "description": f"{description}{'. ' if description else ''}{what.capitalize()}"}
    schema.update(extra)
    return schema


def obj(properties: dict[str, Schema], required: tuple[str, ...], description: str = "", **extra: Any) -> Schema:
    """A JSON object with exactly these keys (unknown keys are refused)."""
    schema: Schema = {"type": "object", "properties": properties, "required": list(required),
                      "additionalProperties": False}
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


def array(items: Schema, description: str = "") -> Schema:
    """A non-empty JSON array."""
    schema: Schema = {"type": "array", "items": items, "minItems": 1}
    if description:
        schema["description"] = description
    return schema


NUMBER = text(r.NUMBER, "A given number: from the calling side's range and unused, ASCII digits, no spaces",
              pattern=r"^\S+$")
MEDIA_TYPE = {"type": "string", "pattern": r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;.*)?$",
              "maxLength": r.CODE.max_len, "description": "A media type such as application/pdf"}
CONTENT = {
    "content_base64": {"type": "string", "contentEncoding": "base64", "pattern": r"\S",
                       "description": "The content's bytes, standard base64"},
    "content_text": {"type": "string", "pattern": r"\S", "description": "The content as text (stored as UTF-8)"},
    "content_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                     "description": "The sha256 hex digest of the decoded content (checked)"},
}
ONE_CONTENT = {"not": {"required": ["content_base64", "content_text"]}}
SHARE_STATE = {"type": "string", "enum": list(SHARE_STATES),
               "description": "shared or private; without it the share rules decide (docs/sharing.md)"}

NEW_DOCUMENT = obj({
    "patient_id": text(), "doc_type": text(), "title": text(r.TITLE), "media_type": MEDIA_TYPE, **CONTENT,
    "signed_by": text(description="The signer (staff code)"), "document_number": NUMBER,
    "department": text(), "share_state": SHARE_STATE,
}, ("patient_id", "doc_type", "title", "media_type", "signed_by"),
    "A document to register; exactly one of content_base64 or content_text. A FHIR media type "
    "(application/fhir+json) needs a valid JP-CLINS document (docs/fhir.md)",
    allOf=[ONE_CONTENT, {"anyOf": [{"required": ["content_base64"]}, {"required": ["content_text"]}]}])

DOCUMENT_CHANGE = obj({
    "id": text(), "title": text(r.TITLE), "doc_type": text(), "media_type": MEDIA_TYPE, **CONTENT,
    "share_state": SHARE_STATE, "signed_by": text(description="The signer (staff code)"),
}, ("id", "signed_by"), "A change of one document: at least one of title, doc_type, media_type, content, "
                        "share_state (only its author may change share_state)", allOf=[ONE_CONTENT])

PATIENT_SUBSCRIPTION = obj({"patient_id": text(), "requested_by": text()}, ("patient_id", "requested_by"))

#: The request body schema of every API served.
REQUESTS: dict[str, Schema] = {
    "PRV_USR_001": obj({"login_id": text(), "display_name": text(r.NAME), "institution_code": text(),
                        "profile": text(r.PROFILE)}, ("login_id", "display_name", "institution_code")),
    "PRV_PAT_001": obj({"family_name": text(r.NAME), "given_name": text(r.NAME),
                        "birth_date": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$",
                                       "description": "A calendar date, YYYY-MM-DD"},
                        "sex": text(), "institution_code": text(), "patient_number": NUMBER},
                       ("family_name", "given_name", "birth_date", "sex", "institution_code")),
    "PRV_STF_001": obj({"staff_code": text(), "display_name": text(r.NAME), "role": text()},
                       ("staff_code", "display_name", "role")),
    "PRV_STF_003": obj({"staff_code": text(), "display_name": text(r.NAME), "role": text(),
                        "username": text(r.KC_USERNAME), "password": text(r.PASSWORD, "Never stored, logged or "
                                                                          "returned", format="password",
                                                                          writeOnly=True),
                        "email": text(r.KC_EMAIL, format="email"), "family_name": text(r.KC_PERSON_NAME),
                        "given_name": text(r.KC_PERSON_NAME)},
                       ("staff_code", "display_name", "role", "username", "password", "email"),
                       "Names refuse the characters Keycloak refuses in person names; display_name obeys "
                       "Keycloak's name limits unless family_name and given_name are given"),
    "PRV_ATH_001": obj({"username": text(r.KC_USERNAME_LOOKUP), "password": text(r.PASSWORD, format="password",
                                                                                 writeOnly=True),
                        "temporary": {"type": "boolean", "description": "Only with a password"},
                        "enabled": {"type": "boolean"},
                        "required_actions": {"type": "array", "items": text(r.REQUIRED_ACTION)}},
                       ("username",), "At least one of password, enabled, required_actions",
                       anyOf=[{"required": ["password"]}, {"required": ["enabled"]},
                              {"required": ["required_actions"]}]),
    "PRV_DOC_006": {"oneOf": [obj({"documents": array(NEW_DOCUMENT, "Given numbers unique within the call")},
                                  ("documents",)), NEW_DOCUMENT],
                    "description": "A bulk of documents, or one document as the payload (a bulk of one)"},
    "PRV_DOC_007": obj({"documents": array(DOCUMENT_CHANGE, "Ids unique within the call")}, ("documents",)),
    "PRV_DOC_008": {"oneOf": [obj({"documents": array(obj({"id": text()}, ("id",)))}, ("documents",)),
                              obj({"ids": array(text())}, ("ids",))],
                    "description": "The documents to delete logically; ids unique within the call"},
    "PRV_DOC_009": obj({"documents": array(obj({"id": text(), "approved_by": text()}, ("id", "approved_by")),
                                           "Ids unique within the call")}, ("documents",)),
    "PLAT_SUB_001": PATIENT_SUBSCRIPTION,
    "PLAT_SUB_002": PATIENT_SUBSCRIPTION,
    "PLAT_SUB_003": obj({"patient_id": text()}, ()),
}

_DOC = {"patient_id": "2f0f6a52-6a6e-4d54-9d0e-3f3d1b8f1c11", "doc_type": "referral", "title": "紹介状",
        "media_type": "text/plain", "content_text": "所見なし", "signed_by": "S-001"}
_ID = "7d7c2a9e-2a55-4c2b-8f8e-0e4f4c7c1a01"
#: A valid example payload of every API (synthetic values).
EXAMPLES: dict[str, Any] = {
    "PRV_USR_001": {"login_id": "hanako", "display_name": "山田 花子", "institution_code": "1310000001"},
    "PRV_PAT_001": {"family_name": "山田", "given_name": "太郎", "birth_date": "1980-02-29", "sex": "male",
                    "institution_code": "1310000001"},
    "PRV_STF_001": {"staff_code": "S-001", "display_name": "佐藤 一郎", "role": "nurse"},
    "PRV_STF_003": {"staff_code": "S-002", "display_name": "佐藤 次郎", "role": "doctor", "username": "sato.jiro",
                    "password": "change-me-0000", "email": "sato.jiro@hospital.example"},
    "PRV_ATH_001": {"username": "sato.jiro", "enabled": False},
    "PRV_DOC_006": {"documents": [_DOC]},
    "PRV_DOC_007": {"documents": [{"id": _ID, "title": "紹介状（改訂）", "signed_by": "S-001"}]},
    "PRV_DOC_008": {"ids": [_ID]},
    "PRV_DOC_009": {"documents": [{"id": _ID, "approved_by": "S-003"}]},
    "PLAT_SUB_001": {"patient_id": _DOC["patient_id"], "requested_by": "S-001"},
    "PLAT_SUB_002": {"patient_id": _DOC["patient_id"], "requested_by": "S-001"},
    "PLAT_SUB_003": {},
}

#: The answer of a matrix API (``ReferenceApi.call``).
RESULT = obj({
    "api": {"type": "string"}, "side": {"type": "string", "enum": ["local", "remote"]},
    "call_id": {"type": "string", "description": "This call's id, in every marker it wrote"},
    "written": {"type": "object", "description": "store -> table -> ids created or changed",
                "additionalProperties": {"type": "object",
                                         "additionalProperties": {"type": "array", "items": {"type": "string"}}}},
    "txids": {"type": "object", "description": "store -> id of the call's transaction there",
              "additionalProperties": {"type": "integer"}},
}, ("api", "side", "call_id", "written", "txids"))
#: The answer of a subscription API (``SubscriptionsApi.call``).
SUBSCRIPTION_RESULT: Schema = {"type": "object", "required": ["api", "node", "side"],
                               "properties": {"api": {"type": "string"}, "node": {"type": "string"},
                                              "side": {"type": "string"}}}
