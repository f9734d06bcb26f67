"""FHIR documents as signed content (issue 17, docs/fhir.md): validated on registration and update.

A document whose media type is ``application/fhir+json`` (parameters such as ``; fhirVersion=4.0`` allowed)
must be a valid JP-CLINS document Bundle (:func:`streams.fhir.validate.validate_document`); otherwise the
call is refused and writes nothing. The refusal names each fault by entry, element path and rule, never by
value: an API error never echoes payload content (``platsync fhir validate FILE`` shows the full messages
offline).
"""

from __future__ import annotations

from streams.fhir.issues import RULES, FhirIssue
from streams.fhir.validate import validate_document

FHIR_MEDIA_TYPE = "application/fhir+json"
#: Faults named in one refusal; the rest are counted.
SHOWN = 5


def is_fhir(media_type: str | None) -> bool:
    """Whether ``media_type`` is FHIR JSON (``application/fhir+json``, any parameters)."""
    return media_type is not None and media_type.split(";", 1)[0].strip().lower() == FHIR_MEDIA_TYPE


def _describe(issue: FhirIssue) -> str:
    where = "" if issue.entry is None else f"entry[{issue.entry}] {issue.resource.split('/', 1)[0]}: "
    return f"{where}{issue.path}: {issue.rule} ({RULES.get(issue.rule, 'see docs/fhir.md')})"


def fhir_refusal(content: bytes) -> str | None:
    """None if ``content`` is a valid JP-CLINS document; else what is wrong, without any value of it."""
    issues = validate_document(content)
    if not issues:
        return None
    shown = "; ".join(_describe(i) for i in issues[:SHOWN])
    more = f"; and {len(issues) - SHOWN} more" if len(issues) > SHOWN else ""
    return (f"not a valid JP-CLINS FHIR document ({len(issues)} fault(s); 'platsync fhir validate' shows them "
            f"in full): {shown}{more}")
