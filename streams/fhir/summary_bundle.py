"""A 6 information summary document, byte-for-byte reproducible (pure; docs/fhir.md).

The same patient, institution and entries always give the same bytes: keys are written in a fixed order
(FHIR's own element order), every ``urn:uuid:`` is a UUID 5 of the content it names, and the Bundle's
timestamp comes from the entries (the latest date) unless given. The document type is the
``six-information`` type of ``streams/fhir/documents.toml`` (PLAT Sync's own, not a JP-CLINS one).
"""

from __future__ import annotations

import hashlib
import html
import json
import uuid
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any

from streams.fhir.documents import DocumentTypes, load_document_types
from streams.fhir.six import KINDS, LABORATORY_CATEGORY, SixEntry
from streams.master.codes import parse_code

DOCUMENT_TYPE = "six-information"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:platsync:fhir:six-information")
#: Bundle timestamp when no entry has a date (the identifier's year must be 2020-2039).
DEFAULT_TIMESTAMP = "2020-01-01T00:00:00+09:00"
_CONDITION_CLINICAL = ("active", "recurrence", "relapse", "inactive", "remission", "resolved")
_ALLERGY_CLINICAL = ("active", "inactive", "resolved")
_OBSERVATION_STATUS = ("registered", "preliminary", "final", "amended", "corrected", "cancelled", "unknown")
_REQUEST_STATUS = ("active", "on-hold", "cancelled", "completed", "stopped", "draft", "unknown")
_GENDERS = ("male", "female", "other", "unknown")


@dataclass(frozen=True)
class SummaryPatient:
    """The patient of a summary: the number at the institution, and optional name, gender, birth date."""

    number: str
    name: str = ""
    gender: str = ""
    birth_date: str = ""


@dataclass(frozen=True)
class SummaryInstitution:
    """The institution the summary comes from (custodian and author): its 医療機関コード and name."""

    code: str
    name: str


def six_information_bundle(patient: SummaryPatient, entries: Sequence[SixEntry], institution: SummaryInstitution,
                           *, timestamp: str | None = None, types: DocumentTypes | None = None) -> bytes:
    """The 6 information of one patient as a document Bundle (UTF-8 JSON) that passes validation.

    ``InvalidCode`` if the institution code is not valid. Entries are grouped by kind (in
    :data:`~streams.fhir.six.KINDS` order), keeping their order within a kind; their ``source`` is not
    written. An ``infection`` entry keeps its kind only if coded in a JP-CLINS infection code system.
    """
    code = parse_code(institution.code).code
    types = types or load_document_types()
    doc_type = types.by_name(DOCUMENT_TYPE)
    ordered = [e for kind in KINDS for e in entries if e.kind == kind]
    stamp = timestamp or _timestamp(ordered)
    content = json.dumps([astuple(patient), astuple(institution), [astuple(e)[:-1] for e in ordered], stamp],
                         ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    patient_url = _urn(f"patient|{code}|{patient.number}")
    org_url = _urn(f"organization|{code}")
    seen: dict[str, int] = {}
    built: list[tuple[str, SixEntry, dict[str, Any]]] = []
    for entry in ordered:
        key = json.dumps([code, patient.number, *astuple(entry)[:-1]], ensure_ascii=False)
        seen[key] = seen.get(key, 0) + 1
        built.append((_urn(f"entry|{key}|{seen[key]}"), entry, _resource(entry, patient_url)))
    composition = {
        "resourceType": "Composition",
        "meta": {"profile": [doc_type.composition_profiles[0]]},
        "status": "final",
        "type": {"coding": [{"system": doc_type.type_systems[0], "code": doc_type.type_code,
                             "display": "Patient summary Document"}], "text": doc_type.title},
        "subject": {"reference": patient_url},
        "date": stamp,
        "author": [{"reference": org_url}],
        "title": doc_type.title,
        "custodian": {"reference": org_url},
        "section": [_section(kind, [(url, e) for url, e, _ in built if e.kind == kind])
                    for kind in KINDS if any(e.kind == kind for _, e, _ in built)],
    }
    if not composition["section"]:
        del composition["section"]
    year = min(max(int(stamp[:4]), 2020), 2039)
    bundle = {
        "resourceType": "Bundle",
        "meta": {"profile": [doc_type.bundle_profiles[0]]},
        "identifier": {"system": types.bundle_system, "value": f"{code}^{year}^{digest[:32]}"},
        "type": "document",
        "timestamp": stamp,
        "entry": [
            {"fullUrl": _urn(f"composition|{digest}"), "resource": composition},
            {"fullUrl": patient_url, "resource": _patient(patient, code, types)},
            {"fullUrl": org_url, "resource": _organization(institution, code, types)},
            *({"fullUrl": url, "resource": resource} for url, _, resource in built),
        ],
    }
    return (json.dumps(bundle, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _urn(seed: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, seed)}"


def _timestamp(entries: Sequence[SixEntry]) -> str:
    dates = sorted(e.date[:10] for e in entries if len(e.date) >= 10)
    return f"{dates[-1]}T00:00:00+09:00" if dates else DEFAULT_TIMESTAMP


def _section(kind: str, items: list[tuple[str, SixEntry]]) -> dict[str, Any]:
    lines = "".join(f"<li>{html.escape(_line(e))}</li>" for _, e in items)
    return {
        "title": KINDS[kind],
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><ul>{lines}</ul></div>'},
        "entry": [{"reference": url} for url, _ in items],
    }


def _line(entry: SixEntry) -> str:
    parts = [entry.display or entry.code or KINDS[entry.kind], entry.value, entry.date]
    return " ".join(p for p in parts if p)


def _concept(entry: SixEntry) -> dict[str, Any]:
    coding = {k: v for k, v in (("system", entry.system), ("code", entry.code), ("display", entry.display)) if v}
    concept: dict[str, Any] = {"coding": [coding]} if entry.system or entry.code else {}
    concept["text"] = entry.display or entry.code or KINDS[entry.kind]
    return concept


def _status(system: str, code: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
    return {"coding": [{"system": system, "code": code}]} if code in allowed else None


def _resource(entry: SixEntry, patient_url: str) -> dict[str, Any]:
    """The FHIR resource of one entry, keys in FHIR element order."""
    subject = {"reference": patient_url}
    if entry.kind == "diagnosis":
        res: dict[str, Any] = {"resourceType": "Condition", "clinicalStatus": _status(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", entry.status, _CONDITION_CLINICAL),
            "code": _concept(entry), "subject": subject, "onsetDateTime": entry.date or None}
    elif entry.kind in ("allergy", "contraindication"):
        drug = entry.kind == "contraindication"
        res = {"resourceType": "AllergyIntolerance", "clinicalStatus": _status(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", entry.status, _ALLERGY_CLINICAL),
            "category": ["medication"] if drug else None, "criticality": "high" if drug else None,
            "code": _concept(entry), "patient": subject, "onsetDateTime": entry.date or None}
    elif entry.kind in ("infection", "lab"):
        res = {"resourceType": "Observation",
               "status": entry.status if entry.status in _OBSERVATION_STATUS else "unknown",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                         "code": LABORATORY_CATEGORY}]}],
               "code": _concept(entry), "subject": subject, "effectiveDateTime": entry.date or None,
               "valueString": entry.value or None}
    else:
        res = {"resourceType": "MedicationRequest",
               "status": entry.status if entry.status in _REQUEST_STATUS else "unknown",
               "intent": "order", "medicationCodeableConcept": _concept(entry), "subject": subject,
               "authoredOn": entry.date or None,
               "dosageInstruction": [{"text": entry.value}] if entry.value else None}
    return {k: v for k, v in res.items() if v is not None}


def _patient(patient: SummaryPatient, code: str, types: DocumentTypes) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": f"{types.patient_system_prefix}1{code}", "value": patient.number}],
        "name": [{"text": patient.name}] if patient.name else None,
        "gender": patient.gender if patient.gender in _GENDERS else None,
        "birthDate": patient.birth_date or None,
    }
    return {k: v for k, v in res.items() if v is not None}


def _organization(institution: SummaryInstitution, code: str, types: DocumentTypes) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": types.institution_system, "value": code}],
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        "name": institution.name,
    }
