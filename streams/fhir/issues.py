"""What the FHIR validation reports: one :class:`FhirIssue` per fault, with a stable rule id (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Every rule id the validation uses -> what it checks (docs/fhir.md lists them the same way).
RULES: dict[str, str] = {
    "json": "the bytes are UTF-8 JSON: one object, no duplicate keys",
    "fhir-structure": "FHIR R4 structure: known resource types and elements, cardinality, data types",
    "fhir-code": "a code element with a required binding holds one of its codes",
    "bundle-type": "Bundle.type is document",
    "bundle-identifier": "Bundle.identifier: the JP-CLINS system and value <医療機関コード>^<year>^<id>",
    "bundle-timestamp": "Bundle.timestamp is present",
    "entry-fullurl": "every entry has a fullUrl, urn:uuid:, unique in the Bundle",
    "composition-first": "the first entry is a Composition",
    "composition-type": "Composition.type names a known document type (LOINC code)",
    "reference-resolves": "Composition.subject, author, custodian and every urn:uuid: reference resolve to an entry",
    "reference-target": "a reference resolves to an entry of the expected resource type",
    "subject-patient": "each clinical resource is about the document's Patient",
    "patient-identifier": "the Patient has its number at the institution (urn:oid:1.2.392.100495.20.3.51.1<code>)",
    "institution-code": "custodian and author Organizations carry a valid 10-digit 医療機関コード",
    "meta-profile": "Bundle.meta.profile and Composition.meta.profile name the document type's profiles",
}


@dataclass(frozen=True)
class FhirIssue:
    """One fault of a document: where (entry, element path), which rule, what is wrong.

    ``entry`` is the index in ``Bundle.entry`` (None for the Bundle itself), ``resource`` the entry's
    ``Type/id`` (or just its type, or empty), ``path`` a FHIRPath-like location such as
    ``Bundle.entry[0].resource.type.coding[0].code``.
    """

    entry: int | None
    resource: str
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"entry[{self.entry}] {self.resource}: " if self.entry is not None else ""
        return f"{where}{self.path}: {self.rule}: {self.message}"


def entry_path(index: int, rest: str = "") -> str:
    """``Bundle.entry[i].resource`` followed by ``rest`` (``.code``, ``[0]``, or empty)."""
    return f"Bundle.entry[{index}].resource{rest}"


def loc_path(prefix: str, loc: Sequence[str | int]) -> str:
    """A FHIRPath-like path from a prefix and a location tuple: ``('code', 'coding', 0)`` -> ``.code.coding[0]``."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def issue_sort_key(issue: FhirIssue) -> tuple[int, str, str]:
    """Bundle-level issues first, then by entry, then by path: a stable order for reports and tests."""
    return (-1 if issue.entry is None else issue.entry, issue.path, issue.rule)
