"""FHIR documents in the document APIs' payloads: validated before any store is touched, refused by rule and
path without echoing a value (docs/fhir.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.reference_api.errors import PayloadError
from connectors.reference_api.fhir_content import SHOWN, fhir_refusal, is_fhir
from connectors.reference_api.payloads import parse_document_registration, parse_document_update

SAMPLES = Path(__file__).resolve().parents[2] / "streams" / "fhir" / "samples"


def new_document(content: str, media_type: str = "application/fhir+json") -> dict[str, str]:
    return {"patient_id": "p-1", "doc_type": "referral", "title": "紹介状", "media_type": media_type,
            "content_text": content, "signed_by": "dr-a"}


def broken_referral() -> str:
    bundle = json.loads((SAMPLES / "referral.json").read_text(encoding="utf-8"))
    bundle["type"] = "collection-SECRET"
    return json.dumps(bundle, ensure_ascii=False)


@pytest.mark.parametrize("media_type", ["application/fhir+json", "Application/FHIR+JSON; fhirVersion=4.0"])
def test_fhir_media_types_are_recognised(media_type: str) -> None:
    assert is_fhir(media_type)


@pytest.mark.parametrize("media_type", [None, "application/json", "text/plain", "application/fhir+xml"])
def test_other_media_types_are_not_fhir(media_type: str | None) -> None:
    assert not is_fhir(media_type)


@pytest.mark.parametrize("name", ["referral.json", "discharge.json", "checkup.json", "six_information.json"])
def test_every_sample_registers(name: str) -> None:
    payload = parse_document_registration(new_document((SAMPLES / name).read_text(encoding="utf-8")))
    assert payload.documents[0].content == (SAMPLES / name).read_bytes()


def test_an_invalid_bundle_is_refused_by_rule_and_path_without_its_values() -> None:
    with pytest.raises(PayloadError) as refused:
        parse_document_registration({"documents": [new_document("{}", "text/plain"),
                                                   new_document(broken_referral())]})
    assert refused.value.path == "documents[1].content_text"
    assert "Bundle.type: bundle-type" in str(refused.value)
    assert "SECRET" not in str(refused.value)


def test_a_non_fhir_document_is_not_validated() -> None:
    assert parse_document_registration(new_document("not json", "text/plain")).documents[0].content == b"not json"


def test_an_update_with_fhir_media_type_and_content_is_checked_by_the_parser() -> None:
    change = {"id": "d-1", "media_type": "application/fhir+json", "content_text": "[]", "signed_by": "dr-a"}
    with pytest.raises(PayloadError, match=r"documents\[0\]\.content_text: not a valid JP-CLINS FHIR document"):
        parse_document_update({"documents": [change]})


def test_a_refusal_names_at_most_a_few_faults_and_counts_the_rest() -> None:
    bundle = json.loads((SAMPLES / "discharge.json").read_text(encoding="utf-8"))
    for entry in bundle["entry"]:
        entry["fullUrl"] = "http://example.org/x"
    refusal = fhir_refusal(json.dumps(bundle).encode())
    assert refusal is not None and refusal.count("entry-fullurl") <= SHOWN and "more" in refusal
    assert fhir_refusal((SAMPLES / "discharge.json").read_bytes()) is None
