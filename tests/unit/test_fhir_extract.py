"""The 6 information extracted from each sample, and the 6 information summary document (issue 17)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from streams.fhir.extract import (
    KINDS,
    SixEntry,
    SummaryInstitution,
    SummaryPatient,
    extract_six,
    six_information_bundle,
)
from streams.fhir.validate import validate_document
from streams.master.codes import InvalidCode

SAMPLES = Path(__file__).resolve().parents[2] / "streams" / "fhir" / "samples"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
YJ = "urn:oid:1.2.392.100495.20.1.73"
JFAGY = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS"
CORE = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS"
INFECTION = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_InfectionLabo_CS"
PATIENT = SummaryPatient("00098765", "架空 花子", "female", "1958-04-12")
HOSPITAL = SummaryInstitution("1311234569", "架空中央病院")


def six_of(doc: str, lab_date: str) -> list[tuple[str, str, str, str, str, str, str, str]]:
    """The entries every sample but the checkup carries (its own ids prefixed with ``doc``)."""
    return [
        ("diagnosis", ICD10, "E11.9", "2型糖尿病", "2019-06-01", "active", "", f"Condition/{doc}-dx1"),
        ("diagnosis", ICD10, "I10", "本態性高血圧症", "2016-10-15", "active", "", f"Condition/{doc}-dx2"),
        ("allergy", JFAGY, "J7F1110", "そば", "2001-08-01", "active", "", f"AllergyIntolerance/{doc}-allergy1"),
        ("contraindication", YJ, "6131001C1210", "アモキシシリン水和物", "2012-03-20", "active", "",
         f"AllergyIntolerance/{doc}-drug1"),
        ("infection", INFECTION, "5F016143002399", "HBs抗原", lab_date, "final", "陰性", f"Observation/{doc}-hbs"),
        ("lab", CORE, "3D046000001920402", "HbA1c（NGSP）", lab_date, "final", "7.2 %", f"Observation/{doc}-hba1c"),
        ("prescription", YJ, "3969010F1020", "メトホルミン塩酸塩錠250mg", lab_date, "active",
         "1回1錠 1日2回 朝夕食後 28日分", f"MedicationRequest/{doc}-rx1"),
    ]


EXPECTED = {
    "referral.json": six_of("referral", "2025-06-09"),
    "six_information.json": six_of("six", "2025-06-09"),
    "discharge.json": [*six_of("discharge", "2025-05-18")[:2],
                       ("diagnosis", ICD10, "J18.9", "肺炎", "2025-05-02", "resolved", "", "Condition/discharge-dx3"),
                       *six_of("discharge", "2025-05-18")[2:]],
    "checkup.json": [  # the BMI is an examination, not a lab result: left out
        ("lab", CORE, "3D010000001926101", "空腹時血糖", "2025-04-18", "final", "118 mg/dL", "Observation/checkup-fbg"),
        ("lab", CORE, "3D046000001920402", "HbA1c（NGSP）", "2025-04-18", "final", "6.9 %",
         "Observation/checkup-hba1c"),
        ("lab", CORE, "3F077000002327101", "LDLコレステロール", "2025-04-18", "final", "142 mg/dL",
         "Observation/checkup-ldl"),
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_extraction_of_each_sample(name: str) -> None:
    six = extract_six((SAMPLES / name).read_bytes())
    assert [tuple(vars(e).values()) for e in six.entries] == EXPECTED[name]
    assert six.patient.startswith("urn:uuid:")
    assert set(six.by_kind()) == set(KINDS)


def test_every_kind_is_in_the_referral_letter() -> None:
    six = extract_six(json.loads((SAMPLES / "referral.json").read_text(encoding="utf-8")))
    assert all(six.by_kind().values())
    with pytest.raises(KeyError):
        six.of("vaccination")


def test_entered_in_error_and_non_lab_observations_are_left_out() -> None:
    bundle = json.loads((SAMPLES / "referral.json").read_text(encoding="utf-8"))
    for entry in bundle["entry"]:
        if entry["resource"].get("id") == "referral-dx1":
            entry["resource"]["verificationStatus"]["coding"][0]["code"] = "entered-in-error"
        if entry["resource"].get("id") == "referral-hba1c":
            entry["resource"]["category"][0]["coding"][0]["code"] = "vital-signs"
    kinds = [e.kind for e in extract_six(bundle).entries]
    assert kinds == ["diagnosis", "allergy", "contraindication", "infection", "prescription"]


def test_a_prescription_of_a_medication_entry() -> None:
    bundle = json.loads((SAMPLES / "referral.json").read_text(encoding="utf-8"))
    rx = next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == "referral-rx1")
    concept = rx.pop("medicationCodeableConcept")
    rx["medicationReference"] = {"reference": "urn:uuid:4a1e0f3c-0000-4000-8000-00000000aaaa"}
    bundle["entry"].append({"fullUrl": "urn:uuid:4a1e0f3c-0000-4000-8000-00000000aaaa",
                            "resource": {"resourceType": "Medication", "code": concept}})
    [entry] = extract_six(bundle).of("prescription")
    assert (entry.code, entry.display) == ("3969010F1020", "メトホルミン塩酸塩錠250mg")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_summary_document_round_trips_and_is_byte_identical(name: str) -> None:
    entries = extract_six((SAMPLES / name).read_bytes()).entries
    first = six_information_bundle(PATIENT, entries, HOSPITAL)
    assert first == six_information_bundle(PATIENT, list(entries), HOSPITAL)
    assert validate_document(first) == []
    again = extract_six(first)
    unsourced = {k: [replace(e, source="") for e in v] for k, v in again.by_kind().items()}
    assert unsourced == {k: [replace(e, source="") for e in v] for k, v in extract_six(
        (SAMPLES / name).read_bytes()).by_kind().items()}
    assert six_information_bundle(PATIENT, [e for _, v in again.by_kind().items() for e in v], HOSPITAL) == first


def test_the_summary_changes_with_its_content_only() -> None:
    entries = list(extract_six((SAMPLES / "referral.json").read_bytes()).entries)
    base = six_information_bundle(PATIENT, entries, HOSPITAL)
    assert six_information_bundle(PATIENT, [replace(e, source="elsewhere") for e in entries], HOSPITAL) == base
    changed = six_information_bundle(PATIENT, [replace(entries[0], status="resolved"), *entries[1:]], HOSPITAL)
    assert changed != base and validate_document(changed) == []
    assert json.loads(changed)["identifier"]["value"] != json.loads(base)["identifier"]["value"]


def test_an_empty_summary_and_duplicate_entries_are_valid() -> None:
    assert validate_document(six_information_bundle(PATIENT, [], HOSPITAL)) == []
    twice = SixEntry("diagnosis", ICD10, "I10", "本態性高血圧症", "", "active", "", "")
    doc = six_information_bundle(PATIENT, [twice, twice], HOSPITAL, timestamp="2025-01-31T09:00:00+09:00")
    assert validate_document(doc) == []
    assert json.loads(doc)["timestamp"] == "2025-01-31T09:00:00+09:00"


def test_the_summary_needs_a_valid_institution_code() -> None:
    with pytest.raises(InvalidCode):
        six_information_bundle(PATIENT, [], SummaryInstitution("1311234560", "架空中央病院"))
