"""Who a FHIR document is about and who holds it, read from the sample Bundles (streams/fhir/parties.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.fhir.documents import load_document_types
from streams.fhir.parties import document_parties, document_type

SAMPLES = Path(__file__).resolve().parents[2] / "streams" / "fhir" / "samples"


@pytest.mark.parametrize(("name", "kind"), [("referral", "referral"), ("discharge", "discharge"),
                                            ("checkup", "checkup"), ("six_information", "six-information")])
def test_each_sample_names_its_type_patient_and_custodian(name: str, kind: str) -> None:
    types = load_document_types()
    bundle = json.loads((SAMPLES / f"{name}.json").read_bytes())
    patient, institution = document_parties(bundle, types)
    found = document_type(bundle, types)
    assert found is not None and found.name == kind
    assert institution.code == "1311234569" and institution.name.startswith("架空中央病院")
    assert patient.number == "00098765" and patient.name == "架空 花子"
    assert (patient.gender, patient.birth_date) == ("female", "1958-04-12")


def test_a_bundle_without_parties_gives_empty_fields_not_an_error() -> None:
    types = load_document_types()
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Composition",
                                                                "subject": {"reference": "urn:uuid:missing"}}}]}
    patient, institution = document_parties(bundle, types)
    assert (patient.number, patient.name, institution.code, institution.name) == ("", "", "", "")
    assert document_type(bundle, types) is None
