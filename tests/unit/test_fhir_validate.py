"""Offline validation of JP-CLINS FHIR documents (streams/fhir/validate.py; issue 17, docs/fhir.md).

Every sample is valid; each broken variant, built here from a sample, is refused with its own rule id at
its own path.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.cli.main import main
from streams.fhir.documents import DocumentTypesError, load_document_types, parse_document_types
from streams.fhir.issues import RULES, FhirIssue
from streams.fhir.validate import InvalidDocumentError, require_valid, validate_document

SAMPLES = Path(__file__).resolve().parents[2] / "streams" / "fhir" / "samples"
SAMPLE_FILES = sorted(p.name for p in SAMPLES.glob("*.json"))
TYPES = load_document_types()


def sample(name: str = "referral.json") -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def encode(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, ensure_ascii=False).encode("utf-8")


def url_of(bundle: dict[str, Any], resource_id: str) -> str:
    return next(e["fullUrl"] for e in bundle["entry"] if e["resource"].get("id") == resource_id)


def index_of(bundle: dict[str, Any], resource_id: str) -> int:
    return next(i for i, e in enumerate(bundle["entry"]) if e["resource"].get("id") == resource_id)


def test_there_is_a_sample_of_each_document_type() -> None:
    assert SAMPLE_FILES == ["checkup.json", "discharge.json", "referral.json", "six_information.json"]


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_every_sample_is_valid(name: str) -> None:
    assert validate_document((SAMPLES / name).read_bytes(), TYPES) == []


def _rename_url(b: dict[str, Any], old_id: str, new_url: str) -> None:
    """Give an entry a new fullUrl and point every reference at it."""
    renamed = json.loads(json.dumps(b).replace(url_of(b, old_id), new_url))
    b.clear()
    b.update(renamed)


#: name -> (change to the referral sample, expected (rule, path)); each variant breaks one rule.
VARIANTS: dict[str, tuple[Callable[[dict[str, Any]], Any], str, str]] = {
    "unknown element": (lambda b: b["entry"][index_of(b, "referral-dx1")]["resource"].update(severity_text="重い"),
                        "fhir-structure", "Bundle.entry[{dx1}].resource.severity_text"),
    "bad date": (lambda b: b["entry"][index_of(b, "referral-dx1")]["resource"].update(onsetDateTime="2019-02-30"),
                 "fhir-structure", "Bundle.entry[{dx1}].resource.onsetDateTime"),
    "missing required": (lambda b: b["entry"][index_of(b, "referral-rx1")]["resource"].pop("intent"),
                         "fhir-structure", "Bundle.entry[{rx1}].resource.intent"),
    "bundle element": (lambda b: b.update(total="many"), "fhir-structure", "Bundle.total"),
    "code outside its value set": (lambda b: b["entry"][index_of(b, "referral-patient")]["resource"].update(
        gender="女性"), "fhir-code", "Bundle.entry[{patient}].resource.gender"),
    "collection": (lambda b: b.update(type="collection"), "bundle-type", "Bundle.type"),
    "no identifier": (lambda b: b.pop("identifier"), "bundle-identifier", "Bundle.identifier"),
    "identifier with a wrong check digit": (lambda b: b["identifier"].update(value="1311234560^2025^A-1"),
                                            "bundle-identifier", "Bundle.identifier.value"),
    "no timestamp": (lambda b: b.pop("timestamp"), "bundle-timestamp", "Bundle.timestamp"),
    "fullUrl not a uuid": (lambda b: _rename_url(b, "referral-clinic", "urn:uuid:clinic-1"),
                           "entry-fullurl", "Bundle.entry[{clinic}].fullUrl"),
    "patient first": (lambda b: b["entry"].insert(0, b["entry"].pop(1)), "composition-first",
                      "Bundle.entry[0].resource.resourceType"),
    "progress note": (lambda b: b["entry"][0]["resource"]["type"]["coding"][0].update(code="11506-3"),
                      "composition-type", "Bundle.entry[0].resource.type.coding"),
    "custodian outside": (lambda b: b["entry"][0]["resource"]["custodian"].update(
        reference="urn:uuid:0f0f0f0f-0000-4000-8000-000000000000"),
        "reference-resolves", "Bundle.entry[0].resource.custodian.reference"),
    "section entry outside": (lambda b: b["entry"][0]["resource"]["section"][1]["entry"].append(
        {"reference": "urn:uuid:0f0f0f0f-0000-4000-8000-000000000001"}),
        "reference-resolves", "Bundle.entry[0].resource.section[1].entry[0].reference"),
    "subject is an Organization": (lambda b: b["entry"][0]["resource"]["subject"].update(
        reference=url_of(b, "referral-clinic")), "reference-target", "Bundle.entry[0].resource.subject.reference"),
    "condition of someone else": (lambda b: b["entry"][index_of(b, "referral-dx1")]["resource"]["subject"].update(
        reference=url_of(b, "referral-clinic")), "subject-patient", "Bundle.entry[{dx1}].resource.subject"),
    "patient number of another institution": (
        lambda b: b["entry"][index_of(b, "referral-patient")]["resource"]["identifier"][0].update(
            system="urn:oid:1.2.392.100495.20.3.51.12710512340"),
        "patient-identifier", "Bundle.entry[{patient}].resource.identifier[0].system"),
    "custodian code invalid": (lambda b: b["entry"][index_of(b, "referral-hospital")]["resource"]["identifier"][0]
                               .update(value="1391234569"),
                               "institution-code", "Bundle.entry[{hospital}].resource.identifier[0].value"),
    "bundle profile": (lambda b: b["meta"].update(profile=["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Bundle"]),
                       "meta-profile", "Bundle.meta.profile"),
    "composition profile": (lambda b: b["entry"][0]["resource"].pop("meta"), "meta-profile",
                            "Bundle.entry[0].resource.meta.profile"),
}


def test_every_rule_has_a_variant() -> None:
    assert {rule for _, rule, _ in VARIANTS.values()} | {"json"} == set(RULES)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_broken_variant_is_refused_with_its_rule_and_path(name: str) -> None:
    change, rule, path = VARIANTS[name]
    bundle = sample()
    indexes = {key: index_of(bundle, f"referral-{key}") for key in ("dx1", "rx1", "patient", "clinic", "hospital")}
    change(bundle)
    issues = validate_document(encode(bundle), TYPES)
    expected_path = path.format(**indexes)
    assert {i.rule for i in issues} == {rule}, [str(i) for i in issues]
    assert expected_path in [i.path for i in issues], [str(i) for i in issues]
    for issue in issues:
        assert issue.message and str(issue).endswith(issue.message)


def test_an_entry_issue_says_which_entry_and_resource() -> None:
    bundle = sample()
    dx1 = index_of(bundle, "referral-dx1")
    bundle["entry"][dx1]["resource"]["code"]["coding"] = {"code": "E11.9"}
    [issue] = validate_document(encode(bundle), TYPES)
    assert (issue.entry, issue.resource, issue.rule) == (dx1, "Condition/referral-dx1", "fhir-structure")
    assert str(issue).startswith(f"entry[{dx1}] Condition/referral-dx1: Bundle.entry[{dx1}].resource.code.coding: ")


def test_all_issues_of_a_document_come_in_one_pass() -> None:
    bundle = sample("discharge.json")
    bundle["type"] = "collection"
    bundle.pop("timestamp")
    bundle["entry"][0]["resource"]["type"]["coding"][0]["code"] = "00000-0"
    bundle["entry"][-1]["resource"]["status"] = "given"
    rules = [i.rule for i in validate_document(encode(bundle), TYPES)]
    assert rules == ["bundle-timestamp", "bundle-type", "composition-type", "fhir-code"]


@pytest.mark.parametrize(("data", "message"), [
    (b"\xef\xbb\xbf{}", "byte order mark"),
    (b"{\"resourceType\": \"Bundle\"", "not JSON"),
    ("{\"a\": \"\u8a3a\"}".encode("cp932", errors="ignore") + b"\x82\xa0", "not UTF-8"),
    (b"[]", "expected a JSON object"),
    (b'{"resourceType": "Bundle", "type": "document", "type": "collection"}', "duplicate key 'type'"),
])
def test_json_faults(data: bytes, message: str) -> None:
    [issue] = validate_document(data, TYPES)
    assert (issue.rule, issue.path) == ("json", "$") and message in issue.message


def test_a_resource_type_r4_does_not_have_is_refused() -> None:
    bundle = sample()
    dx1 = index_of(bundle, "referral-dx1")
    bundle["entry"][dx1]["resource"]["resourceType"] = "SubscriptionStatus"  # R4B only
    bundle["entry"][dx1 + 1]["resource"]["extension"] = [{"url": "http://example.org/x", "valueRatioRange": {}}]
    issues = validate_document(encode(bundle), TYPES)
    assert [(i.rule, i.path) for i in issues if i.rule == "fhir-structure"] == [
        ("fhir-structure", f"Bundle.entry[{dx1}].resource.resourceType"),
        ("fhir-structure", f"Bundle.entry[{dx1 + 1}].resource.extension[0].valueRatioRange")]


def test_an_r4_extension_value_absent_from_r4b_is_accepted() -> None:
    bundle = sample()
    bundle["entry"][1]["resource"]["extension"] = [{"url": "http://example.org/x", "valueMeta": {"versionId": "1"}}]
    assert validate_document(encode(bundle), TYPES) == []


def test_require_valid_raises_a_platsync_error_with_every_issue() -> None:
    bundle = sample()
    bundle.pop("timestamp")
    bundle["type"] = "batch"
    with pytest.raises(InvalidDocumentError) as caught:
        require_valid(encode(bundle), TYPES)
    assert [i.rule for i in caught.value.issues] == ["bundle-timestamp", "bundle-type"]
    assert "and 1 more" in str(caught.value)
    assert require_valid((SAMPLES / "referral.json").read_bytes(), TYPES)["type"] == "document"


def test_the_document_types_file_reports_every_fault_with_its_path(tmp_path: Path) -> None:
    data = {"identifiers": {"bundle_system": "not a uri", "patient_system_prefix": "urn:oid:1.2.",
                            "institution_system": "http://x", "extra": 1},
            "documents": [{"name": "a", "title": "A", "type_code": "1-1", "type_systems": ["http://loinc.org"],
                           "bundle_profiles": ["http://x/B|1"], "composition_profiles": ["http://x/C"],
                           "jp_clins": "yes"},
                          {"name": "a", "title": "", "type_code": "1-1", "type_systems": [],
                           "bundle_profiles": ["http://x/B"], "composition_profiles": ["http://x/C"],
                           "jp_clins": True}]}
    with pytest.raises(DocumentTypesError) as caught:
        parse_document_types(data, "documents.toml")
    assert [(f.path, f.message.split(",")[0]) for f in caught.value.faults] == [
        ("identifiers.extra", "unknown key; expected one of bundle_system"),
        ("identifiers.bundle_system", "expected a URI (http://"),
        ("documents[0].bundle_profiles[0]", "expected a profile URL without a '|version' suffix"),
        ("documents[0].jp_clins", "expected true or false"),
        ("documents[1].title", "expected a non-empty string"),
        ("documents[1].type_systems", "expected a non-empty list of URIs"),
    ]
    bad = tmp_path / "documents.toml"
    bad.write_text("documents = [", encoding="utf-8")
    with pytest.raises(DocumentTypesError, match="not valid TOML"):
        load_document_types(bad)


def test_the_shipped_document_types() -> None:
    assert [(d.name, d.type_code, d.jp_clins) for d in TYPES.documents] == [
        ("referral", "57133-1", True), ("discharge", "18842-5", True), ("checkup", "53576-5", True),
        ("six-information", "60591-5", False)]


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(SAMPLES / name) for name in SAMPLE_FILES]
    assert main(["fhir", "validate", *files]) == 0
    assert capsys.readouterr().out.count(": valid (") == len(files)
    bundle = sample()
    bundle["type"] = "collection"
    broken = tmp_path / "broken.json"
    broken.write_bytes(encode(bundle))
    assert main(["fhir", "validate", files[0], str(broken)]) == 1
    out = capsys.readouterr()
    assert f"{broken}: Bundle.type: bundle-type: expected 'document', got 'collection'" in out.out
    assert "1 of 2 file(s) invalid" in out.err
    assert main(["fhir", "validate", str(tmp_path / "absent.json")]) == 2


def test_issue_text() -> None:
    issue = FhirIssue(3, "Condition/abc", "Bundle.entry[3].resource.code", "fhir-structure", "required element missing")
    assert str(issue) == ("entry[3] Condition/abc: Bundle.entry[3].resource.code: fhir-structure: "
                          "required element missing")
    assert copy.copy(issue) == issue
