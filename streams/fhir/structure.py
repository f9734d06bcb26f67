"""FHIR R4 structure of a Bundle, checked with the ``fhir.resources`` models (pure; docs/fhir.md).

``fhir.resources`` 8.x ships R5 (default), R4B (4.3.0) and STU3 model sets, no R4 (4.0.1) one: the R4
models (6.x) need pydantic 1, which is end of life. R4B is R4 plus a few resources and data types; for
every resource and data type a JP-CLINS document uses, the element names, cardinalities, types and
required codes of the two are identical (compared field by field, docs/fhir.md), except these, which
this module corrects for:

- ``Extension.value[x]``: R4B adds ``valueCodeableReference`` and ``valueRatioRange`` (refused here as
  not R4) and drops R4's ``valueMeta`` (the models refuse it; that refusal is dropped here);
- resource types: R4B adds 13 (refused here as not R4); R4 has 18 that R4B dropped (medicinal product
  and evidence synthesis resources, never in a JP-CLINS document): accepted without a structure check;
- ``Observation.subject`` and ``DiagnosticReport.subject`` may reference more types in R4B: the rule
  ``subject-patient`` requires the document's Patient anyway.

The models check element names, cardinality (1..1, 0..*), data types and formats (dates, ids, uris),
and choice types; they do not check a code against its required value set, which
:func:`check_codes` does for the codes the models list (``enum_values``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from streams.fhir.issues import FhirIssue, entry_path, loc_path

#: Resource types of R4B (4.3.0) that R4 (4.0.1) does not have.
R4B_ONLY_RESOURCES = frozenset({
    "AdministrableProductDefinition", "Citation", "ClinicalUseDefinition", "EvidenceReport", "Ingredient",
    "ManufacturedItemDefinition", "MedicinalProductDefinition", "NutritionProduct", "PackagedProductDefinition",
    "RegulatedAuthorization", "SubscriptionStatus", "SubscriptionTopic", "SubstanceDefinition",
})
#: Resource types of R4 that R4B dropped: valid R4, but the R4B models cannot check them.
R4_ONLY_RESOURCES = frozenset({
    "EffectEvidenceSynthesis", "MedicinalProduct", "MedicinalProductAuthorization",
    "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient",
    "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "RiskEvidenceSynthesis",
    "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
    "SubstanceSourceMaterial", "SubstanceSpecification",
})
_R4B_ONLY_EXTENSION_VALUES = ("valueCodeableReference", "valueRatioRange")
_R4_ONLY_EXTENSION_VALUES = ("valueMeta",)
_EXTENSION_KEYS = ("extension", "modifierExtension")


def describe(resource: Any) -> str:
    """``Type/id`` of a resource (or its type, or empty), for issue locations."""
    if not isinstance(resource, dict):
        return ""
    rtype = resource.get("resourceType")
    rtype = rtype if isinstance(rtype, str) else "?"
    rid = resource.get("id")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else rtype


def check_structure(bundle: Mapping[str, Any]) -> tuple[list[FhirIssue], dict[int, FHIRAbstractModel]]:
    """Structure issues of a Bundle (already parsed JSON), and the model of each entry resource that passed.

    The Bundle's own elements are checked without the entries' resources; each resource is then checked
    on its own, so that one broken resource neither hides another's faults nor loses its paths.
    """
    issues: list[FhirIssue] = []
    shell = dict(bundle)
    entries = bundle.get("entry")
    if isinstance(entries, list):
        shell["entry"] = [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                          for e in entries]
    bundle_model = _validate("Bundle", shell, None, "", "Bundle", issues)
    if bundle_model is not None:
        issues += check_codes(bundle_model, "Bundle", None, "")
    models: dict[int, FHIRAbstractModel] = {}
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue  # Bundle.entry.resource is 0..1 in FHIR; the document rules ask for what they need
        where = describe(resource)
        if not isinstance(resource, dict):
            issues.append(FhirIssue(index, where, entry_path(index), "fhir-structure", "expected a resource (object)"))
            continue
        issues += _extension_issues(resource, index, where, entry_path(index))
        unknown = _unknown_types(resource, entry_path(index))
        if unknown:
            issues += [FhirIssue(index, where, path, "fhir-structure", message) for path, message in unknown]
            continue
        if resource["resourceType"] in R4_ONLY_RESOURCES:
            continue
        model = _validate(resource["resourceType"], resource, index, where, entry_path(index), issues)
        if model is not None:
            models[index] = model
            issues += check_codes(model, entry_path(index), index, where)
    return issues, models


def _validate(rtype: str, data: Mapping[str, Any], index: int | None, where: str, prefix: str,
              issues: list[FhirIssue]) -> FHIRAbstractModel | None:
    """The model of ``data``, or None with its structure issues appended."""
    try:
        return get_fhir_model_class(rtype).model_validate(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if error["type"] == "extra_forbidden" and loc and loc[-1] in _R4_ONLY_EXTENSION_VALUES:
                continue  # valid R4 (Extension.valueMeta), absent from R4B
            entry, loc_prefix = index, prefix
            if index is None and len(loc) >= 2 and loc[0] == "entry" and isinstance(loc[1], int):
                entry, loc_prefix, loc = loc[1], f"Bundle.entry[{loc[1]}]", loc[2:]
            issues.append(FhirIssue(entry, where, loc_path(loc_prefix, loc), "fhir-structure", _message(error)))
    except (KeyError, TypeError, ValueError) as exc:  # the models' own failures on odd input
        issues.append(FhirIssue(index, where, prefix, "fhir-structure", f"not a valid R4 {rtype}: {exc}"))
    return None


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown element: not defined here in FHIR R4"
    if kind == "missing":
        return "required element missing"
    text = str(error["msg"]).removeprefix("Value error, ")
    return text.replace("Any of one field value is expected from this list",
                        "exactly one of the choice elements is expected, from")


def _unknown_types(resource: Mapping[str, Any], prefix: str) -> list[tuple[str, str]]:
    """(path, message) of every resourceType, the resource's own and its contained ones', that is not R4."""
    found: list[tuple[str, str]] = []
    checks = [(resource, prefix)]
    contained = resource.get("contained")
    if isinstance(contained, list):
        checks += [(c, f"{prefix}.contained[{i}]") for i, c in enumerate(contained)]
    for item, path in checks:
        rtype = item.get("resourceType") if isinstance(item, dict) else None
        if not isinstance(rtype, str) or not rtype:
            found.append((f"{path}.resourceType", "required element missing: a resource names its resourceType"))
        elif rtype in R4B_ONLY_RESOURCES:
            found.append((f"{path}.resourceType", f"{rtype} is not an R4 (4.0.1) resource type"))
        elif rtype not in R4_ONLY_RESOURCES and not _known(rtype):
            found.append((f"{path}.resourceType", f"unknown resource type {rtype!r}"))
    return found


def _known(rtype: str) -> bool:
    if not rtype.isidentifier() or not rtype[0].isupper():
        return False
    try:
        return issubclass(get_fhir_model_class(rtype), Resource)
    except (KeyError, ValueError, ImportError):
        return False


def _extension_issues(data: Any, index: int, where: str, path: str) -> list[FhirIssue]:
    """Extensions anywhere in ``data`` using a value type R4 does not have."""
    return [FhirIssue(index, where, p, "fhir-structure", f"{key} is not an R4 (4.0.1) Extension value type")
            for p, key in _walk_extensions(data, path)]


def _walk_extensions(data: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _EXTENSION_KEYS and isinstance(value, list):
                for i, ext in enumerate(value):
                    if isinstance(ext, dict):
                        for bad in _R4B_ONLY_EXTENSION_VALUES:
                            if bad in ext:
                                yield f"{path}.{key}[{i}].{bad}", bad
            yield from _walk_extensions(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _walk_extensions(item, f"{path}[{i}]")


def check_codes(model: FHIRAbstractModel, prefix: str, index: int | None, where: str) -> list[FhirIssue]:
    """``fhir-code`` issues: code elements whose required value set (as the models list it) lacks their value.

    A list ending in ``+`` is one the models abbreviate: it is not checked.
    """
    issues: list[FhirIssue] = []
    for path, value, allowed in _walk_codes(model, prefix):
        entry, rest = index, path
        if index is None and path.startswith("Bundle.entry["):  # a Bundle's own entry-level codes
            entry = int(path[len("Bundle.entry["):path.index("]")])
        issues.append(FhirIssue(entry, where, rest, "fhir-code",
                                f"{value!r} is not one of the required codes: {', '.join(allowed)}"))
    return issues


def _walk_codes(model: FHIRAbstractModel, path: str) -> Iterator[tuple[str, Any, list[str]]]:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        alias = field.alias or name
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        allowed = extra.get("enum_values")
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            here = f"{path}.{alias}[{i}]" if isinstance(value, list) else f"{path}.{alias}"
            if isinstance(item, FHIRAbstractModel):
                yield from _walk_codes(item, here)
            elif allowed and "+" not in allowed and isinstance(item, str) and item not in allowed:
                yield here, item, list(allowed)
