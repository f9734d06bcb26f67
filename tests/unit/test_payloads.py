"""Payload parsing of the reference APIs: shapes, defaults and precise error paths (no processes)."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
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


# -- text fields (issue 13, items 7 and 8): NUL characters and over-long values, for every text field of every API --

STAFF_003 = STAFF | {"username": "sato", "password": "pw-秘密", "email": "sato@example.jp",
                     "family_name": "佐藤", "given_name": "花子"}
ATH = {"username": "sato", "password": "pw", "required_actions": ["UPDATE_PASSWORD"]}
DOC_CHANGE = {"id": "d1", "title": "改訂", "doc_type": "summary", "media_type": "text/plain",
              "content_text": "x", "content_hash": hashlib.sha256(b"x").hexdigest(), "signed_by": "dr"}
BULK_NEW = {"documents": [NEW_DOC | {"document_number": "0000000042",
                                     "content_hash": hashlib.sha256("本文".encode()).hexdigest()}]}

#: (API, valid payload, JSON path of the text field, its maximum length) -- every text field of every API.
TEXT_FIELDS: list[tuple[str, dict, str, int]] = [
    *[("PRV_USR_001", USER | {"profile": "内科"}, k, n) for k, n in
      (("login_id", 255), ("display_name", 255), ("institution_code", 255), ("profile", 4000))],
    *[("PRV_PAT_001", PATIENT | {"patient_number": "000123"}, k, n) for k, n in
      (("family_name", 255), ("given_name", 255), ("birth_date", 255), ("sex", 255), ("institution_code", 255),
       ("patient_number", 64))],
    *[("PRV_STF_001", STAFF, k, 255) for k in ("staff_code", "display_name", "role")],
    *[("PRV_STF_003", STAFF_003, k, n) for k, n in
      (("staff_code", 255), ("display_name", 255), ("role", 255), ("username", 255), ("password", 1024),
       ("email", 255), ("family_name", 255), ("given_name", 255))],
    *[("PRV_ATH_001", ATH, k, n) for k, n in (("username", 255), ("password", 1024), ("required_actions[0]", 255))],
    *[("PRV_DOC_006", BULK_NEW, f"documents[0].{k}", n) for k, n in
      (("patient_id", 255), ("doc_type", 255), ("title", 1000), ("media_type", 255), ("signed_by", 255),
       ("document_number", 64), ("content_hash", 255))],
    *[("PRV_DOC_007", {"documents": [DOC_CHANGE]}, f"documents[0].{k}", n) for k, n in
      (("id", 255), ("title", 1000), ("doc_type", 255), ("media_type", 255), ("signed_by", 255),
       ("content_hash", 255))],
    ("PRV_DOC_008", {"ids": ["d1"]}, "ids[0]", 255),
    ("PRV_DOC_008", {"documents": [{"id": "d1"}]}, "documents[0].id", 255),
    *[("PRV_DOC_009", {"documents": [{"id": "d1", "approved_by": "chief"}]}, f"documents[0].{k}", 255)
      for k in ("id", "approved_by")],
]
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def with_value(payload: dict, path: str, value: str) -> dict:
    """A deep copy of ``payload`` with the field at ``path`` (``documents[0].title``) set to ``value``."""
    doc = copy.deepcopy(payload)
    steps = [int(i) if i else k for k, i in _STEP.findall(path)]
    node = doc
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = value
    return doc


def over_long(path: str, max_len: int) -> str:
    """A value of ``max_len + 1`` characters that is otherwise valid for the field."""
    if path.endswith("email"):
        return "a" * 60 + "@" + "b" * (max_len - 63) + ".jp"
    if path.endswith("number"):
        return "9" * (max_len + 1)
    return "山" * (max_len + 1)


@pytest.mark.parametrize(("api", "payload", "path", "max_len"), TEXT_FIELDS,
                         ids=[f"{a}:{p}" for a, _, p, _ in TEXT_FIELDS])
def test_every_text_field_refuses_a_nul_character_without_echoing_it(api: str, payload: dict, path: str,
                                                                      max_len: int) -> None:
    p.PARSERS[api](payload)  # the payload is valid without the NUL
    err = error(p.PARSERS[api], with_value(payload, path, "PII-山田花子\u0000b"))
    assert (err.api, err.path) == (api, path)
    assert "NUL character" in err.expected
    assert "PII" not in str(err) and "山田花子" not in str(err) and "\x00" not in str(err)


@pytest.mark.parametrize(("api", "payload", "path", "max_len"), TEXT_FIELDS,
                         ids=[f"{a}:{p}" for a, _, p, _ in TEXT_FIELDS])
def test_every_text_field_refuses_an_over_long_value_and_accepts_its_maximum(api: str, payload: dict, path: str,
                                                                              max_len: int) -> None:
    value = over_long(path, max_len)
    assert len(value) == max_len + 1
    err = error(p.PARSERS[api], with_value(payload, path, value))
    assert (err.api, err.path) == (api, path)
    assert f"expected at most {max_len} " in err.expected and f"got {max_len + 1}" in err.expected
    assert value[:20] not in str(err)
    if not path.endswith(("birth_date", "media_type", "content_hash")):  # these have a format of their own
        p.PARSERS[api](with_value(payload, path, value[:-2] + value[-1]))  # exactly the maximum is accepted


@pytest.mark.parametrize(("api", "payload", "path"), [
    ("PRV_STF_003", STAFF_003, "username"), ("PRV_STF_003", STAFF_003, "family_name"),
    ("PRV_STF_003", STAFF_003, "given_name"), ("PRV_STF_003", {k: v for k, v in STAFF_003.items()
                                                               if k != "given_name"}, "display_name"),
    ("PRV_ATH_001", ATH, "username"),
])
def test_keycloak_fields_count_utf16_code_units_like_keycloak(api: str, payload: dict, path: str) -> None:
    # U+20BB7 (𠮷) is one character but two UTF-16 code units: Keycloak (Java) counts 2.
    err = error(p.PARSERS[api], with_value(payload, path, "𠮷" * 128))
    assert err.path == path and "at most 255 UTF-16 code units" in err.expected and "got 256" in err.expected
    p.PARSERS[api](with_value(payload, path, "𠮷" * 127 + "a"))


def test_stf_003_names_follow_keycloaks_person_name_rule() -> None:
    for bad in ("山田 (内科)", "a<b", "Dr. Sato; MD", "tab\there"):
        err = error(p.parse_staff_with_credentials, STAFF_003 | {"family_name": bad})
        assert err.path == "family_name" and ("Keycloak refuses in person names" in err.expected
                                              or "control character" in err.expected)
    # display_name becomes the names when they are not given, and only then follows the rule
    no_names = {k: v for k, v in STAFF_003.items() if k not in ("family_name", "given_name")}
    assert error(p.parse_staff_with_credentials, no_names | {"display_name": "佐藤 (内科)"}).path == "display_name"
    assert p.parse_staff_with_credentials(STAFF_003 | {"display_name": "佐藤 (内科)"}).display_name == "佐藤 (内科)"
    assert p.parse_staff(STAFF | {"display_name": "佐藤 (内科)"}).display_name == "佐藤 (内科)"


def test_stf_003_username_and_email_follow_keycloaks_rules() -> None:
    assert "expected at least 3" in error(p.parse_staff_with_credentials, STAFF_003 | {"username": "ab"}).expected
    local_65 = "a" * 65 + "@example.jp"
    err = error(p.parse_staff_with_credentials, STAFF_003 | {"email": local_65})
    assert err.path == "email" and "local part has at most 64" in err.expected and local_65 not in str(err)
    p.parse_staff_with_credentials(STAFF_003 | {"email": "a" * 64 + "@example.jp"})
    assert error(p.parse_staff_with_credentials, STAFF_003 | {"email": "a b@example.jp"}).path == "email"


@pytest.mark.parametrize("value", ["a\ud800b", "\udfff"])
def test_an_unpaired_surrogate_is_refused(value: str) -> None:
    err = error(p.parse_staff, STAFF | {"display_name": value})
    assert err.path == "display_name" and "unpaired UTF-16 surrogate" in err.expected
    doc = {k: v for k, v in NEW_DOC.items()} | {"content_text": value}
    assert error(p.parse_document_registration, doc).path == "content_text"


def test_control_characters_are_refused_except_line_breaks_in_free_text() -> None:
    for value in ("a\x01b", "a\x1bb", "a\x7fb", "a\nb"):
        assert "control character" in error(p.parse_staff, STAFF | {"role": value}).expected
        assert "control character" in error(p.parse_document_update, {"documents": [
            {"id": "d", "title": value, "signed_by": "x"}]}).expected
    assert p.parse_user(USER | {"profile": "内科\n\t外科\r\n"}).profile == "内科\n\t外科\r\n"
    assert "other than tab" in error(p.parse_user, USER | {"profile": "a\x0bb"}).expected


def test_document_content_is_bytes_and_may_hold_nul() -> None:
    parsed = p.parse_document_registration(NEW_DOC | {"content_text": "a\x00b"})
    assert parsed.documents[0].content == b"a\x00b"


def test_given_document_numbers_are_unique_within_a_bulk_by_value() -> None:
    docs = {"documents": [NEW_DOC | {"document_number": "0000000042"}, NEW_DOC, NEW_DOC | {"document_number": "42"}]}
    err = error(p.parse_document_registration, docs)
    assert err.path == "documents[2].document_number" and "already at index 0" in err.expected
