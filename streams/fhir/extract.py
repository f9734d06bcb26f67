"""The 6 information (6情報) of a FHIR Bundle, extracted; and a 6 information summary document (pure).

Kinds, and how a resource is classified (JP-CLINS, clinical-core IG; docs/fhir.md):

========================  ==========================================================================
``diagnosis`` 傷病名       Condition
``allergy`` アレルギー      AllergyIntolerance that is not a drug contraindication
``contraindication`` 薬剤禁忌  AllergyIntolerance with category ``medication`` and criticality ``high``
                          (JP-CLINS rules R2011/R4011: that pair marks 薬剤アレルギー等)
``infection`` 感染症       Observation coded in a JP-CLINS infection lab code system (InfectionLabo)
``lab`` 検査               any other Observation with category ``laboratory``
``prescription`` 処方      MedicationRequest (its medication's code, inline or a Medication entry)
========================  ==========================================================================

Resources marked ``entered-in-error`` are left out. :func:`six_information_bundle` writes entries back
as a document Bundle that passes :func:`streams.fhir.validate.validate_document`
(``streams.fhir.summary_bundle``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from streams.fhir.six import (
    INFECTION_SYSTEMS,
    KINDS,
    LABORATORY_CATEGORY,
    LOCAL_LAB_SYSTEM,
    SixEntry,
    SixInformation,
)
from streams.fhir.summary_bundle import SummaryInstitution, SummaryPatient, six_information_bundle

__all__ = ["KINDS", "SixEntry", "SixInformation", "SummaryInstitution", "SummaryPatient", "extract_six",
           "six_information_bundle"]

def extract_six(bundle: Mapping[str, Any] | bytes) -> SixInformation:
    """The 6 information of a Bundle (parsed, or its JSON bytes); works on document and collection Bundles.

    Validation is not repeated here: run :func:`streams.fhir.validate.validate_document` first.
    """
    if isinstance(bundle, bytes | bytearray):
        bundle = json.loads(bytes(bundle).decode("utf-8"))
    assert isinstance(bundle, Mapping)
    resources = list(_resources(bundle))
    by_url = {url: res for url, res in resources if url}
    entries = [entry for url, res in resources for entry in _classify(res, url, by_url)]
    return SixInformation(_patient_url(bundle, resources), tuple(entries))


def _resources(bundle: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            url = entry.get("fullUrl")
            yield (url if isinstance(url, str) else ""), entry["resource"]


def _patient_url(bundle: Mapping[str, Any], resources: list[tuple[str, Mapping[str, Any]]]) -> str:
    if resources and resources[0][1].get("resourceType") == "Composition":
        subject = resources[0][1].get("subject")
        if isinstance(subject, dict) and isinstance(subject.get("reference"), str):
            return subject["reference"]
    return next((url for url, res in resources if res.get("resourceType") == "Patient"), "")


def _classify(res: Mapping[str, Any], url: str, by_url: Mapping[str, Any]) -> list[SixEntry]:
    rtype = res.get("resourceType")
    if _entered_in_error(res):
        return []
    source = f"{rtype}/{res['id']}" if isinstance(res.get("id"), str) and res["id"] else url
    if rtype == "Condition":
        return [_entry("diagnosis", res.get("code"), _first(res, "onsetDateTime", "recordedDate"),
                       _status(res.get("clinicalStatus")), "", source)]
    if rtype == "AllergyIntolerance":
        categories = res.get("category") if isinstance(res.get("category"), list) else []
        kind = "contraindication" if "medication" in categories and res.get("criticality") == "high" else "allergy"
        return [_entry(kind, res.get("code"), _first(res, "onsetDateTime", "recordedDate"),
                       _status(res.get("clinicalStatus")), "", source)]
    if rtype == "Observation":
        code = res.get("code")
        systems = {c.get("system") for c in _codings(code)}
        if systems & INFECTION_SYSTEMS:
            kind = "infection"
        elif LABORATORY_CATEGORY in {c.get("code") for cat in _list(res.get("category")) for c in _codings(cat)}:
            kind = "lab"
        else:
            return []
        return [_entry(kind, code, _first(res, "effectiveDateTime", "issued"), _text(res.get("status")),
                       _value(res), source)]
    if rtype == "MedicationRequest":
        code = res.get("medicationCodeableConcept")
        ref = res.get("medicationReference")
        if code is None and isinstance(ref, dict):
            medication = by_url.get(ref.get("reference"))
            code = medication.get("code") if isinstance(medication, dict) else None
        dosage = next((d.get("text") for d in _list(res.get("dosageInstruction"))
                       if isinstance(d, dict) and isinstance(d.get("text"), str)), "")
        return [_entry("prescription", code, _text(res.get("authoredOn")), _text(res.get("status")), dosage, source)]
    return []


def _entered_in_error(res: Mapping[str, Any]) -> bool:
    if res.get("status") == "entered-in-error":
        return True
    return "entered-in-error" in {c.get("code") for c in _codings(res.get("verificationStatus"))}


def _entry(kind: str, concept: Any, date: str, status: str, value: str, source: str) -> SixEntry:
    codings = [c for c in _codings(concept) if c.get("system") != LOCAL_LAB_SYSTEM] or _codings(concept)
    coding = codings[0] if codings else {}
    text = concept.get("text") if isinstance(concept, dict) else None
    display = _text(coding.get("display")) or _text(text)
    return SixEntry(kind, _text(coding.get("system")), _text(coding.get("code")), display, date, status, value,
                    source)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _codings(concept: Any) -> list[dict[str, Any]]:
    return [c for c in _list(concept.get("coding")) if isinstance(c, dict)] if isinstance(concept, dict) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _first(res: Mapping[str, Any], *names: str) -> str:
    return next((res[n] for n in names if isinstance(res.get(n), str)), "")


def _status(concept: Any) -> str:
    codings = _codings(concept)
    return _text(codings[0].get("code")) if codings else ""


def _value(res: Mapping[str, Any]) -> str:
    quantity = res.get("valueQuantity")
    if isinstance(quantity, dict) and "value" in quantity:
        unit = quantity.get("unit") or quantity.get("code") or ""
        return f"{json.dumps(quantity['value'])} {unit}".strip()
    if isinstance(res.get("valueString"), str):
        return res["valueString"]
    concept = res.get("valueCodeableConcept")
    if isinstance(concept, dict):
        return _text(concept.get("text")) or next((_text(c.get("display")) for c in _codings(concept)), "")
    return ""


