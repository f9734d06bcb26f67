"""The OpenAPI document of the reference API over HTTP, the X-Hybridmode values and the error mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.exc import IntegrityError, OperationalError

from connectors.keycloak.admin import KeycloakUnavailableError
from connectors.reference_api.call_errors import one_line
from connectors.reference_api.errors import ApiError, PayloadError
from connectors.reference_api.http_errors import ERROR_STATUS, classify, internal
from connectors.reference_api.openapi import API_PREFIX, SERVED_APIS, openapi_document
from connectors.reference_api.payloads import PARSERS
from connectors.reference_api.service import API_IDS
from streams.apply.mode_state import current_mode, state_path
from streams.core.modes import hybridmode
from streams.runtime.jsonfile import write_json
from streams.runtime.settings import load_settings


@pytest.fixture(scope="module", params=["local", "remote"])
def doc(request: pytest.FixtureRequest) -> dict[str, Any]:
    return openapi_document(request.param, "http://127.0.0.1:18092", "plat", "http://127.0.0.1:18080")


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return target
    return node


def test_the_seed_s_header_values() -> None:
    # seed 003, section 5(2): 運用環境 (the cloud) and 応急措置環境 (the hospital)
    assert [hybridmode("remote", m) for m in ("normal", "emergency", "recovery")] == ["normal", "emergency", "recovery"]
    assert [hybridmode("local", m) for m in ("normal", "emergency", "recovery")] == [
        "normal-fa", "emergency-fa", "recovery-fa"]
    with pytest.raises(ValueError):
        hybridmode("local", "unknown")
    with pytest.raises(ValueError):
        hybridmode("elsewhere", "normal")


def test_the_mode_comes_from_the_side_s_state_file(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    assert current_mode(settings, "local") == "normal"  # the mode server never ran: it answers normal too
    write_json(state_path(settings, "local"), {"mode": "emergency"})
    assert current_mode(settings, "local") == "emergency" and current_mode(settings, "remote") == "normal"
    state_path(settings, "remote").write_text("{damaged", encoding="utf-8")
    assert current_mode(settings, "remote") == "normal"


def test_the_document_is_openapi_3_1_with_one_path_per_api(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["servers"][0]["url"].startswith("http://")
    api_paths = sorted(p for p in doc["paths"] if p.removeprefix(f"{API_PREFIX}/") in SERVED_APIS)
    assert api_paths == sorted(f"{API_PREFIX}/{a}" for a in SERVED_APIS)
    assert set(API_IDS) <= set(SERVED_APIS) and len(API_IDS) == 9
    assert set(doc["paths"]) == {*api_paths, f"{API_PREFIX}/openapi.json", "/healthz"}
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert doc["components"]["securitySchemes"]["bearer"] == {**doc["components"]["securitySchemes"]["bearer"],
                                                              "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    json.dumps(doc)  # plain JSON


def test_every_response_carries_x_hybridmode_of_its_side(doc: dict[str, Any]) -> None:
    side = "local" if "local" in doc["info"]["title"] else "remote"
    header = doc["components"]["headers"]["XHybridmode"]
    assert header["schema"]["enum"] == [hybridmode(side, m) for m in ("normal", "emergency", "recovery")]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for status, response in op["responses"].items():
                assert _resolve(doc, response["headers"]["X-Hybridmode"]) is header, (path, status)
                if status != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert _resolve(doc, schema) is doc["components"]["schemas"]["Error"]
    post = doc["paths"][f"{API_PREFIX}/PRV_STF_001"]["post"]
    assert {str(s) for s in ERROR_STATUS.values()} | {"200"} == set(post["responses"])
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    assert "Retry-After" in post["responses"]["503"]["headers"]


def test_request_schemas_are_valid_and_their_examples_parse(doc: dict[str, Any]) -> None:
    for api_id in SERVED_APIS:
        body = doc["paths"][f"{API_PREFIX}/{api_id}"]["post"]["requestBody"]["content"]["application/json"]
        Draft202012Validator.check_schema(body["schema"])
        Draft202012Validator(body["schema"]).validate(body["example"])
        if api_id in PARSERS:
            PARSERS[api_id](body["example"])  # the parser accepts what the schema documents


@pytest.mark.parametrize(("api_id", "payload"), [
    ("PRV_STF_001", {"staff_code": "S", "display_name": "x", "role": "nurse", "extra": 1}),  # unknown key
    ("PRV_STF_001", {"staff_code": "S", "display_name": "x"}),  # missing key
    ("PRV_STF_001", {"staff_code": " ", "display_name": "x", "role": "nurse"}),  # whitespace only
    ("PRV_STF_001", {"staff_code": "S" * 256, "display_name": "x", "role": "nurse"}),  # too long
    ("PRV_PAT_001", {"family_name": "a", "given_name": "b", "birth_date": "1980/01/01", "sex": "m",
                     "institution_code": "1"}),
    ("PRV_ATH_001", {"username": "someone"}),  # no change
    ("PRV_DOC_006", {"documents": []}),
    ("PRV_DOC_006", {"patient_id": "p", "doc_type": "t", "title": "x", "media_type": "text/plain",
                     "content_text": "a", "content_base64": "YQ==", "signed_by": "s"}),  # both contents
    ("PRV_DOC_008", {"ids": ["a"], "documents": [{"id": "a"}]}),
    ("PRV_DOC_009", {"documents": [{"id": "a"}]}),
    ("PRV_DOC_006", ["not", "an", "object"]),
])
def test_what_the_schema_refuses_the_parser_refuses(api_id: str, payload: Any) -> None:
    schema = openapi_document("local")["paths"][f"{API_PREFIX}/{api_id}"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert not Draft202012Validator(schema).is_valid(payload)
    with pytest.raises(PayloadError):
        PARSERS[api_id](payload)


def test_errors_map_to_4xx_or_503_with_the_cli_s_line() -> None:
    payload = PayloadError("PRV_STF_001", "role", "missing; expected a non-empty string")
    failure = classify(payload, "PRV_STF_001", "local")
    assert failure is not None and (failure.status, failure.kind) == (422, "payload")
    assert failure.message == one_line(payload, "PRV_STF_001", "local", None) == str(payload)
    refused = classify(ApiError("PRV_DOC_008: unknown document id at ids[0]; nothing written"), "PRV_DOC_008", "x")
    assert refused is not None and (refused.status, refused.kind) == (409, "refused")

    def raised_during(exc: BaseException, outer: BaseException) -> BaseException:
        try:
            try:
                raise exc
            except BaseException:
                raise outer from None
        except BaseException as final:  # noqa: BLE001 - the test builds the chain accounts_api.py raises
            return final

    keycloak_down = raised_during(KeycloakUnavailableError("down", None, False), ApiError("PRV_ATH_001: unreachable"))
    down = classify(keycloak_down, "PRV_ATH_001", "local")
    assert down is not None and (down.status, down.kind, down.headers) == (503, "unavailable", {"Retry-After": "5"})
    assert down.body("r1")["retry_after_s"] == 5
    db_down = classify(OperationalError("SELECT 1", {"v": "secret"}, Exception("refused")), "PRV_STF_001", "local")
    assert db_down is not None and db_down.status == 503 and "secret" not in db_down.message

    class Orig(Exception):
        sqlstate = "23505"

    conflict = classify(IntegrityError("INSERT", {"v": "secret"}, Orig("dup")), "PRV_STF_001", "local")
    assert conflict is not None and (conflict.status, conflict.kind) == (409, "conflict")
    assert "secret" not in conflict.message
    assert classify(KeyError("secret"), "PRV_STF_001", "local") is None
    bug = internal(KeyError("secret"), "PRV_STF_001", "local")
    assert bug.status == 500 and "secret" not in bug.message and bug.body("r2")["request_id"] == "r2"
