"""Who a FHIR document is about and who holds it: its patient and custodian, read from the Bundle (pure).

The cloud's summary (docs/fhir.md, "The 6 information in the cloud") keeps them per document, so that a
patient's summary can be written as a 6 information Bundle naming the patient's number and an institution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.fhir.documents import DocumentType, DocumentTypes
from streams.fhir.summary_bundle import SummaryInstitution, SummaryPatient


def _resource_at(bundle: Mapping[str, Any], reference: Any) -> Mapping[str, Any]:
    url = reference.get("reference") if isinstance(reference, dict) else None
    for entry in bundle.get("entry") or []:
        if isinstance(entry, dict) and entry.get("fullUrl") == url and isinstance(entry.get("resource"), dict):
            return entry["resource"]
    return {}


def _composition(bundle: Mapping[str, Any]) -> Mapping[str, Any]:
    entries = bundle.get("entry") or [{}]
    first = entries[0] if isinstance(entries[0], dict) else {}
    resource = first.get("resource")
    return resource if isinstance(resource, dict) else {}


def _identifier(resource: Mapping[str, Any], accept: Any) -> str:
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and accept(str(identifier.get("system", ""))):
            return str(identifier.get("value", ""))
    return ""


def _name(patient: Mapping[str, Any]) -> str:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    for name in names:  # the ideographic (kanji) name first, as JP Core writes it
        if any(e.get("valueCode") == "IDE" for e in name.get("extension") or [] if isinstance(e, dict)):
            return str(name.get("text", ""))
    return str(names[0].get("text", "")) if names else ""


def document_parties(bundle: Mapping[str, Any], types: DocumentTypes) -> tuple[SummaryPatient, SummaryInstitution]:
    """The patient (number at the institution, name, gender, birth date) and the custodian institution
    (医療機関コード, name) of a valid document Bundle; empty fields where the Bundle has none."""
    composition = _composition(bundle)
    patient = _resource_at(bundle, composition.get("subject"))
    custodian = _resource_at(bundle, composition.get("custodian"))
    number = _identifier(patient, lambda system: system.startswith(types.patient_system_prefix))
    code = _identifier(custodian, lambda system: system == types.institution_system)
    return (SummaryPatient(number=number, name=_name(patient), gender=str(patient.get("gender", "")),
                           birth_date=str(patient.get("birthDate", ""))),
            SummaryInstitution(code=code, name=str(custodian.get("name", ""))))


def document_type(bundle: Mapping[str, Any], types: DocumentTypes) -> DocumentType | None:
    """The document type of a Bundle, by its Composition's type code (None if not a known one)."""
    codings = _composition(bundle).get("type", {}).get("coding") or []
    return next((kind for c in codings if isinstance(c, dict)
                 and (kind := types.by_code(c.get("system"), c.get("code")))), None)
