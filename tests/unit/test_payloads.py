"""Payload parsing of the reference APIs: shapes, defaults and precise error paths (no processes)."""

from __future__ import annotations

import base64
import hashlib
from datetime import date

import pytest

from connectors.reference_api import payloads as p
from connectors.reference_api.errors import ApiError, PayloadError

USER = {"login_id": "u1", "display_name": "山田 花子", "institution_code": "1310000001"}
PATIENT = {"family_name": "山田", "given_name": "太郎", "birth_date": "1980-02-29", "sex": "male",
           "institution_code": "1310000001"}
STAFF = {"staff_code": "S1", "display_name": "佐藤", "role": "nurse"}
NEW_DOC = {"patient_id": "p1", "doc_type": "referral", "title": "紹介状", "media_type": "text/plain",
           "content_text": "本文", "signed_by": "dr-1"}


def error(parser, data) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        parser(data)
    return info.value


def test_user_payload_with_and_without_profile() -> None:
    assert p.parse_user(USER) == p.UserPayload("u1", "山田 花子", "1310000001", None)
    assert p.parse_user(USER | {"profile": "内科"}).profile == "内科"


def test_patient_payload_parses_date_and_optional_number() -> None:
    parsed = p.parse_patient(PATIENT | {"patient_number": "000123"})
    assert parsed.birth_date == date(1980, 2, 29)
    assert parsed.patient_number == "000123"
    assert p.parse_patient(PATIENT).patient_number is None


@pytest.mark.parametrize("raw", ["1981-02-29", "1980/02/01", "19800201", "1980-2-1", ""])
def test_patient_birth_date_must_be_a_calendar_date(raw: str) -> None:
    err = error(p.parse_patient, PATIENT | {"birth_date": raw})
    assert err.path == "birth_date"
    assert err.api == "PRV_PAT_001"
    assert ("YYYY-MM-DD" in str(err)) or ("non-empty string" in str(err))


def test_missing_key_is_named() -> None:
    err = error(p.parse_staff, {"staff_code": "S1", "role": "nurse"})
    assert str(err) == "PRV_STF_001 payload: display_name: missing; expected a non-empty string"


def test_wrong_type_and_empty_string_are_named() -> None:
    assert "got number" in str(error(p.parse_user, USER | {"login_id": 7}))
    assert "login_id: expected a non-empty string, got an empty string" in str(
        error(p.parse_user, USER | {"login_id": "  "}))


def test_unknown_key_is_refused() -> None:
    err = error(p.parse_user, USER | {"profil": "x"})
    assert err.path == "profil"
    assert "unexpected key" in err.expected


def test_payload_must_be_an_object() -> None:
    err = error(p.parse_staff, ["S1"])
    assert err.path == "$"
    assert "expected a JSON object, got array" in str(err)


def test_staff_with_credentials_never_reveals_the_password() -> None:
    secret = "s3cr3t-パスワード"
    parsed = p.parse_staff_with_credentials(STAFF | {"username": "sato", "password": secret,
                                                      "email": "sato@example.jp"})
    assert parsed.password == secret
    assert secret not in repr(parsed)
    err = error(p.parse_staff_with_credentials, STAFF | {"username": 5, "password": secret,
                                                         "email": "sato@example.jp"})
    assert secret not in str(err)
    assert err.path == "username"
    assert error(p.parse_staff_with_credentials, STAFF | {"username": "sato",
                                                          "email": "sato@example.jp"}).path == "password"
    assert error(p.parse_staff_with_credentials, STAFF | {"username": "sato", "password": secret}).path == "email"
    assert error(p.parse_staff_with_credentials, STAFF | {"username": "sato", "password": secret,
                                                          "email": "no-at-sign"}).path == "email"


def test_single_document_is_a_bulk_of_one() -> None:
    parsed = p.parse_document_registration(NEW_DOC)
    assert len(parsed.documents) == 1
    assert parsed.documents[0].content == "本文".encode()
    bulk = p.parse_document_registration({"documents": [NEW_DOC, NEW_DOC | {"title": "2"}]})
    assert [d.title for d in bulk.documents] == ["紹介状", "2"]


def test_document_base64_content_and_hash() -> None:
    raw = bytes(range(256))
    doc = {k: v for k, v in NEW_DOC.items() if k != "content_text"}
    doc |= {"media_type": "application/pdf", "content_base64": base64.b64encode(raw).decode()}
    assert p.parse_document_registration(doc).documents[0].content == raw
    good = doc | {"content_hash": hashlib.sha256(raw).hexdigest()}
    assert p.parse_document_registration(good).documents[0].content == raw
    bad = doc | {"content_hash": hashlib.sha256(b"other").hexdigest()}
    err = error(p.parse_document_registration, {"documents": [NEW_DOC, bad]})
    assert err.path == "documents[1].content_hash"
    assert "does not match" in err.expected


def test_document_content_rules() -> None:
    no_content = {k: v for k, v in NEW_DOC.items() if k != "content_text"}
    assert error(p.parse_document_registration, no_content).path == "content_base64"
    both = NEW_DOC | {"content_base64": "aGk="}
    assert "not both" in str(error(p.parse_document_registration, both))
    bad64 = no_content | {"content_base64": "not base64!"}
    assert error(p.parse_document_registration, bad64).path == "content_base64"
    assert error(p.parse_document_registration, NEW_DOC | {"media_type": "pdf"}).path == "media_type"


def test_bulk_errors_name_the_index() -> None:
    err = error(p.parse_document_update,
                {"documents": [{"id": "a", "title": "x", "signed_by": "d"},
                               {"id": "b", "title": 3, "signed_by": "d"}]})
    assert str(err).startswith("PRV_DOC_007 payload: documents[1].title: expected a non-empty string")
    assert error(p.parse_document_registration, {"documents": []}).expected.endswith("an empty array")
    assert error(p.parse_document_registration, {"documents": [NEW_DOC, "x"]}).path == "documents[1]"


def test_update_needs_a_change_and_a_signer() -> None:
    err = error(p.parse_document_update, {"documents": [{"id": "a", "signed_by": "d"}]})
    assert err.path == "documents[0]"
    assert "at least one of" in err.expected
    assert error(p.parse_document_update, {"documents": [{"id": "a", "title": "t"}]}).path == \
        "documents[0].signed_by"
    change = p.parse_document_update({"documents": [{"id": "a", "content_text": "x", "signed_by": "d"}]})
    assert change.documents[0] == p.DocumentChange("a", "d", content=b"x")


def test_duplicate_ids_are_refused() -> None:
    err = error(p.parse_document_approval,
                {"documents": [{"id": "a", "approved_by": "x"}, {"id": "a", "approved_by": "y"}]})
    assert err.path == "documents[1].id"
    assert "duplicate" in err.expected
    assert error(p.parse_document_deletion, {"ids": ["a", "b", "a"]}).path == "ids[2]"


def test_deletion_accepts_both_forms() -> None:
    assert p.parse_document_deletion({"ids": ["a", "b"]}).ids == ("a", "b")
    assert p.parse_document_deletion({"documents": [{"id": "a"}]}).ids == ("a",)
    assert "not both" in str(error(p.parse_document_deletion, {"ids": ["a"], "documents": [{"id": "b"}]}))
    assert error(p.parse_document_deletion, {}).path == "documents"
    assert error(p.parse_document_deletion, {"ids": ["a", 1]}).path == "ids[1]"


def test_approval_requires_approver() -> None:
    assert p.parse_document_approval({"documents": [{"id": "a", "approved_by": "b"}]}).documents == (
        p.DocumentApproval("a", "b"),)
    assert error(p.parse_document_approval, {"documents": [{"id": "a"}]}).path == "documents[0].approved_by"


def test_payload_error_is_an_api_error() -> None:
    assert issubclass(PayloadError, ApiError)
    assert set(p.PARSERS) == {"PRV_USR_001", "PRV_PAT_001", "PRV_STF_001", "PRV_STF_003", "PRV_ATH_001",
                              "PRV_DOC_006", "PRV_DOC_007", "PRV_DOC_008", "PRV_DOC_009"}


@pytest.mark.parametrize(("data", "path", "expected"), [
    ({"password": "x"}, "username", "missing"),
    ({"username": "u"}, "$", "at least one of password, enabled, required_actions"),
    ({"username": "u", "enabled": "yes"}, "enabled", "expected true or false"),
    ({"username": "u", "required_actions": "UPDATE_PASSWORD"}, "required_actions", "array of non-empty strings"),
    ({"username": "u", "enabled": True, "temporary": True}, "temporary", "only meaningful with a password"),
    ({"username": "u", "pasword": "x"}, "pasword", "unexpected key"),
])
def test_auth_update_payload_errors_name_the_path(data: dict, path: str, expected: str) -> None:
    err = error(p.parse_auth_update, data)
    assert err.path == path and expected in str(err)


def test_auth_update_payload_hides_the_password() -> None:
    parsed = p.parse_auth_update({"username": "u", "password": "s3cret!", "temporary": True,
                                  "required_actions": ["CONFIGURE_TOTP"]})
    assert (parsed.username, parsed.password, parsed.temporary, parsed.enabled) == ("u", "s3cret!", True, None)
    assert parsed.required_actions == ("CONFIGURE_TOTP",) and "s3cret" not in repr(parsed)
