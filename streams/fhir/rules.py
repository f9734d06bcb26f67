"""The JP-CLINS acceptance rules of a document Bundle (pure; rule ids in ``streams.fhir.issues.RULES``).

Each check appends every fault it finds; a check that needs something another check found missing (the
document type, a resolved custodian) skips only what it cannot check, so one pass reports everything
that can be known.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.fhir.documents import DocumentType, DocumentTypes
from streams.fhir.issues import FhirIssue, entry_path
from streams.fhir.structure import describe
from streams.master.codes import InvalidCode, parse_code

#: Bundle.identifier.value of JP-CLINS: 医療機関コード ^ year ^ id (JP_Bundle_CLINS, rule R2152).
BUNDLE_ID_PATTERN = re.compile(r"^(?P<code>[^^]*)\^(?P<year>20[2-3][0-9])\^(?P<id>[A-Za-z0-9-]{1,36})$")
#: Clinical resources -> the element naming their patient (the 6 information and their neighbours).
SUBJECT_ELEMENTS: dict[str, str] = {
    "Condition": "subject", "AllergyIntolerance": "patient", "Observation": "subject",
    "MedicationRequest": "subject", "DiagnosticReport": "subject", "Procedure": "subject",
    "Immunization": "patient", "Encounter": "subject",
}
AUTHOR_TYPES = ("Practitioner", "PractitionerRole", "Organization", "Device", "Patient", "RelatedPerson")


@dataclass
class _Doc:
    """What the checks share: the Bundle, its entries by fullUrl, and the issues found so far."""

    bundle: Mapping[str, Any]
    types: DocumentTypes
    entries: list[Any]
    by_url: dict[str, int] = field(default_factory=dict)
    issues: list[FhirIssue] = field(default_factory=list)

    def add(self, index: int | None, path: str, rule: str, message: str) -> None:
        where = describe(self.resource(index)) if index is not None else ""
        self.issues.append(FhirIssue(index, where, path, rule, message))

    def resource(self, index: int | None) -> Any:
        if index is None or not 0 <= index < len(self.entries) or not isinstance(self.entries[index], dict):
            return None
        return self.entries[index].get("resource")


def check_document(bundle: Mapping[str, Any], types: DocumentTypes) -> list[FhirIssue]:
    """Every JP-CLINS acceptance fault of a parsed Bundle (its FHIR structure is checked elsewhere)."""
    entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
    doc = _Doc(bundle, types, entries)
    _check_header(doc)
    _check_full_urls(doc)
    composition = doc.resource(0)
    if not isinstance(composition, dict) or composition.get("resourceType") != "Composition":
        found = describe(composition) or "no resource"
        doc.add(0 if entries else None, entry_path(0, ".resourceType") if entries else "Bundle.entry",
                "composition-first", f"a document's first entry must be its Composition, found {found}")
        composition = None
    kind = _check_type(doc, composition) if composition is not None else None
    if kind is not None:
        _check_profiles(doc, composition, kind)
    patient_url = custodian_code = None
    if composition is not None:
        patient_url = _check_subject(doc, composition)
        custodian_code = _check_custodian(doc, composition)
        _check_authors(doc, composition)
    _check_bundle_identifier(doc, custodian_code)
    if patient_url is not None:
        _check_patient_identifier(doc, patient_url, custodian_code)
        _check_subjects(doc, patient_url)
    _check_other_references(doc)
    return doc.issues


def _check_header(doc: _Doc) -> None:
    if doc.bundle.get("type") != "document":
        doc.add(None, "Bundle.type", "bundle-type", f"expected 'document', got {doc.bundle.get('type')!r}")
    if not doc.bundle.get("timestamp"):
        doc.add(None, "Bundle.timestamp", "bundle-timestamp", "required for a document: when it was assembled")


def _check_bundle_identifier(doc: _Doc, custodian_code: str | None) -> None:
    ident = doc.bundle.get("identifier")
    if not isinstance(ident, dict):
        doc.add(None, "Bundle.identifier", "bundle-identifier",
                f"required for a document: system {doc.types.bundle_system}, value <医療機関コード>^<year>^<id>")
        return
    if ident.get("system") != doc.types.bundle_system:
        doc.add(None, "Bundle.identifier.system", "bundle-identifier",
                f"expected {doc.types.bundle_system}, got {ident.get('system')!r}")
    value = ident.get("value")
    match = BUNDLE_ID_PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        doc.add(None, "Bundle.identifier.value", "bundle-identifier",
                "expected <10-digit 医療機関コード>^<year 2020-2039>^<1-36 of A-Z a-z 0-9 ->, "
                f"got {value!r}")
        return
    try:
        code = parse_code(match["code"]).code
    except InvalidCode as exc:
        doc.add(None, "Bundle.identifier.value", "bundle-identifier", f"its 医療機関コード is invalid: {exc}")
        return
    if custodian_code is not None and code != custodian_code:
        doc.add(None, "Bundle.identifier.value", "bundle-identifier",
                f"its 医療機関コード {code} is not the custodian's ({custodian_code})")


def _check_full_urls(doc: _Doc) -> None:
    for index, entry in enumerate(doc.entries):
        url = entry.get("fullUrl") if isinstance(entry, dict) else None
        path = f"Bundle.entry[{index}].fullUrl"
        if not isinstance(url, str) or not url:
            doc.add(index, path, "entry-fullurl", "required: urn:uuid:<uuid>, unique in the Bundle")
            continue
        if not _is_urn_uuid(url):
            doc.add(index, path, "entry-fullurl", f"expected urn:uuid:<uuid>, got {url!r}")
        if url in doc.by_url:
            doc.add(index, path, "entry-fullurl", f"duplicate fullUrl; entry[{doc.by_url[url]}] has it")
            continue
        doc.by_url[url] = index


def _is_urn_uuid(url: str) -> bool:
    if not url.startswith("urn:uuid:"):
        return False
    try:
        uuid.UUID(url[len("urn:uuid:"):])
    except ValueError:
        return False
    return len(url) == len("urn:uuid:") + 36


def _check_type(doc: _Doc, composition: Mapping[str, Any]) -> DocumentType | None:
    ctype = composition.get("type")
    codings = ctype.get("coding") if isinstance(ctype, dict) else None
    codings = codings if isinstance(codings, list) else []
    for coding in codings:
        if isinstance(coding, dict):
            kind = doc.types.by_code(coding.get("system"), coding.get("code"))
            if kind is not None:
                return kind
    for i, coding in enumerate(codings):
        if not isinstance(coding, dict):
            continue
        same_code = [d for d in doc.types.documents if d.type_code == coding.get("code")]
        if same_code:
            doc.add(0, entry_path(0, f".type.coding[{i}].system"), "composition-type",
                    f"code {coding.get('code')} ({same_code[0].title}) needs system "
                    f"{' or '.join(same_code[0].type_systems)}, got {coding.get('system')!r}")
            return None
    got = ", ".join(f"{c.get('system')}#{c.get('code')}" for c in codings if isinstance(c, dict)) or "none"
    doc.add(0, entry_path(0, ".type.coding"), "composition-type",
            f"no known document type code: expected one of {doc.types.codes()}, got {got}")
    return None


def _profiles(resource: Mapping[str, Any]) -> list[str]:
    meta = resource.get("meta")
    found = meta.get("profile") if isinstance(meta, dict) else None
    return [p.split("|", 1)[0] for p in found if isinstance(p, str)] if isinstance(found, list) else []


def _check_profiles(doc: _Doc, composition: Mapping[str, Any], kind: DocumentType) -> None:
    if not set(_profiles(doc.bundle)) & set(kind.bundle_profiles):
        doc.add(None, "Bundle.meta.profile", "meta-profile",
                f"a {kind.name} document ({kind.title}) names {' or '.join(kind.bundle_profiles)}")
    if not set(_profiles(composition)) & set(kind.composition_profiles):
        doc.add(0, entry_path(0, ".meta.profile"), "meta-profile",
                f"its Composition ({kind.title}) names {' or '.join(kind.composition_profiles)}")


def _resolve(doc: _Doc, ref: Any, path: str, expected: tuple[str, ...], owner: int) -> int | None:
    """The index of the entry a Reference points to, or None with its issue recorded."""
    target = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(target, str) or not target:
        doc.add(owner, path, "reference-resolves", "required: a reference to an entry of this Bundle (urn:uuid:)")
        return None
    index = doc.by_url.get(target)
    if index is None:
        doc.add(owner, f"{path}.reference", "reference-resolves", f"{target} is no entry's fullUrl in this Bundle")
        return None
    rtype = describe(doc.resource(index)).split("/")[0]
    if rtype not in expected:
        doc.add(owner, f"{path}.reference", "reference-target",
                f"{target} is entry[{index}] ({rtype or 'no resource'}); expected {' or '.join(expected)}")
        return None
    return index


def _check_subject(doc: _Doc, composition: Mapping[str, Any]) -> str | None:
    index = _resolve(doc, composition.get("subject"), entry_path(0, ".subject"), ("Patient",), 0)
    return composition["subject"]["reference"] if index is not None else None


def _check_custodian(doc: _Doc, composition: Mapping[str, Any]) -> str | None:
    index = _resolve(doc, composition.get("custodian"), entry_path(0, ".custodian"), ("Organization",), 0)
    return _institution_code(doc, index, "custodian") if index is not None else None


def _check_authors(doc: _Doc, composition: Mapping[str, Any]) -> None:
    authors = composition.get("author")
    if not isinstance(authors, list) or not authors:
        doc.add(0, entry_path(0, ".author"), "reference-resolves", "required: at least one author in this Bundle")
        return
    for i, ref in enumerate(authors):
        index = _resolve(doc, ref, entry_path(0, f".author[{i}]"), AUTHOR_TYPES, 0)
        resource = doc.resource(index)
        if index is not None and resource.get("resourceType") == "Organization" and "partOf" not in resource:
            _institution_code(doc, index, f"author[{i}]")


def _institution_code(doc: _Doc, index: int, role: str) -> str | None:
    """The valid 医療機関コード of the Organization at ``index``, or None with its issue recorded."""
    org = doc.resource(index)
    idents = org.get("identifier") if isinstance(org.get("identifier"), list) else []
    found = [(i, x) for i, x in enumerate(idents)
             if isinstance(x, dict) and x.get("system") == doc.types.institution_system]
    if len(found) != 1:
        doc.add(index, entry_path(index, ".identifier"), "institution-code",
                f"the {role} Organization needs exactly one identifier with system {doc.types.institution_system} "
                f"(the 10-digit 医療機関コード), found {len(found)}")
        return None
    i, ident = found[0]
    value = ident.get("value")
    try:
        return parse_code(value if isinstance(value, str) else "").code
    except InvalidCode as exc:
        doc.add(index, entry_path(index, f".identifier[{i}].value"), "institution-code",
                f"the {role} Organization's 医療機関コード is invalid: {exc}")
        return None


def _check_patient_identifier(doc: _Doc, patient_url: str, custodian_code: str | None) -> None:
    index = doc.by_url[patient_url]
    patient = doc.resource(index)
    prefix = doc.types.patient_system_prefix
    idents = patient.get("identifier") if isinstance(patient.get("identifier"), list) else []
    found = [(i, x) for i, x in enumerate(idents) if isinstance(x, dict) and isinstance(x.get("system"), str)
             and x["system"].startswith(prefix)]
    if len(found) != 1:
        doc.add(index, entry_path(index, ".identifier"), "patient-identifier",
                f"the Patient needs exactly one identifier with system {prefix}1<10-digit 医療機関コード> "
                f"(its number at the institution), found {len(found)}")
        return
    i, ident = found[0]
    rest = ident["system"][len(prefix):]
    if not rest.startswith("1"):
        doc.add(index, entry_path(index, f".identifier[{i}].system"), "patient-identifier",
                f"expected {prefix}1<10-digit 医療機関コード>, got {ident['system']!r}")
        return
    try:
        code = parse_code(rest[1:]).code
    except InvalidCode as exc:
        doc.add(index, entry_path(index, f".identifier[{i}].system"), "patient-identifier",
                f"the 医療機関コード in the system is invalid: {exc}")
        return
    if not isinstance(ident.get("value"), str) or not ident["value"].strip():
        doc.add(index, entry_path(index, f".identifier[{i}].value"), "patient-identifier",
                "required: the patient's number at the institution")
    if custodian_code is not None and code != custodian_code:
        doc.add(index, entry_path(index, f".identifier[{i}].system"), "patient-identifier",
                f"the patient number is issued by {code}, not by the custodian ({custodian_code})")


def _check_subjects(doc: _Doc, patient_url: str) -> None:
    for index in range(len(doc.entries)):
        resource = doc.resource(index)
        element = SUBJECT_ELEMENTS.get(describe(resource).split("/")[0])
        if element is None:
            continue
        ref = resource.get(element)
        target = ref.get("reference") if isinstance(ref, dict) else None
        if target != patient_url:
            got = f"{target!r}" if target else "nothing"
            doc.add(index, entry_path(index, f".{element}"), "subject-patient",
                    f"expected the document's Patient ({patient_url}), got {got}")


#: References the Composition checks itself (typed): not checked again by the generic walk.
_COMPOSITION_OWN = re.compile(r"^Bundle\.entry\[0\]\.resource\.(subject|custodian|author\[\d+\])\.reference$")


def _check_other_references(doc: _Doc) -> None:
    for index in range(len(doc.entries)):
        resource = doc.resource(index)
        if not isinstance(resource, dict):
            continue
        own_check = index == 0 and resource.get("resourceType") == "Composition"
        for path, target in _references(resource, entry_path(index)):
            if own_check and _COMPOSITION_OWN.match(path):
                continue
            if target.startswith("urn:uuid:") and target not in doc.by_url:
                doc.add(index, path, "reference-resolves", f"{target} is no entry's fullUrl in this Bundle")


def _references(data: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, target) of every Reference.reference inside ``data``."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "reference" and isinstance(value, str):
                yield f"{path}.reference", value
            else:
                yield from _references(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _references(item, f"{path}[{i}]")
