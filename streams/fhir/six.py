"""The 6 information (6情報) as data: the kinds and one extracted entry (pure; docs/fhir.md)."""

from __future__ import annotations

from dataclasses import dataclass

#: Kind -> its Japanese name, in the order of the MHLW list.
KINDS: dict[str, str] = {
    "diagnosis": "傷病名", "allergy": "アレルギー", "infection": "感染症",
    "contraindication": "薬剤禁忌", "lab": "検査", "prescription": "処方",
}
#: Code systems of the JP-CLINS infection lab results (感染症): JLAC10 and JLAC11 variants.
INFECTION_SYSTEMS = frozenset({
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_InfectionLabo_CS",
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC11/JP_CLINS_ObsLabResult_InfectionLabo_CS",
})
LABORATORY_CATEGORY = "laboratory"
#: The local lab code system JP-CLINS requires beside the standard one (rule R6021): never the entry's code.
LOCAL_LAB_SYSTEM = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS"


@dataclass(frozen=True)
class SixEntry:
    """One piece of the 6 information, as stable fields.

    ``system``/``code``/``display``: the coded concept (the first coding of a standard system;
    ``display`` falls back to the text); ``date``: onset, effective or authored date as written;
    ``status``: clinical status (Condition, AllergyIntolerance) or the resource status; ``value``: a lab
    result as text (``6.8 %``) or a prescription's dosage text; ``source``: ``Type/id`` of the resource,
    or its fullUrl if it has no id.
    """

    kind: str
    system: str
    code: str
    display: str
    date: str
    status: str
    value: str
    source: str


@dataclass(frozen=True)
class SixInformation:
    """A Bundle's 6 information: the patient it is about (fullUrl, may be empty) and the entries per kind."""

    patient: str
    entries: tuple[SixEntry, ...]

    def of(self, kind: str) -> list[SixEntry]:
        """The entries of one kind (``diagnosis``, ...), in Bundle order."""
        if kind not in KINDS:
            raise KeyError(kind)
        return [e for e in self.entries if e.kind == kind]

    def by_kind(self) -> dict[str, list[SixEntry]]:
        """Every kind (all six, possibly empty) -> its entries."""
        return {kind: self.of(kind) for kind in KINDS}
