"""Offline validation of a JP-CLINS FHIR document (pure: no database, no network; docs/fhir.md).

:func:`validate_document` takes the document's bytes and returns every fault found, in one pass:

1. ``json``: UTF-8, one JSON object, no duplicate keys (FHIR JSON forbids them; a parser would keep
   either value silently);
2. ``fhir-structure`` and ``fhir-code``: FHIR R4 structure through ``fhir.resources``
   (``streams.fhir.structure``);
3. the JP-CLINS acceptance rules (``streams.fhir.rules``) with the document types of
   ``streams/fhir/documents.toml``.

An empty list means the document is accepted.
"""

from __future__ import annotations

import json
from typing import Any

from streams.core.errors import PlatSyncError
from streams.fhir.documents import DocumentTypes, load_document_types
from streams.fhir.issues import FhirIssue, issue_sort_key
from streams.fhir.rules import check_document
from streams.fhir.structure import check_structure


class InvalidDocumentError(PlatSyncError, ValueError):
    """A FHIR document that does not pass :func:`validate_document`; ``issues`` lists every fault."""

    def __init__(self, issues: list[FhirIssue]) -> None:
        self.issues = list(issues)
        first = str(self.issues[0]) if self.issues else "invalid"
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(f"invalid FHIR document: {first}{more}")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json(data: bytes) -> tuple[Any, list[FhirIssue]]:
    """The parsed JSON of a document, or None and its ``json`` issue."""
    def fail(message: str) -> tuple[Any, list[FhirIssue]]:
        return None, [FhirIssue(None, "", "$", "json", message)]

    if data.startswith(b"\xef\xbb\xbf"):
        return fail("starts with a UTF-8 byte order mark; FHIR JSON is UTF-8 without one")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return fail(f"not UTF-8: byte {exc.start} ({data[exc.start:exc.start + 1]!r}) {exc.reason}")
    try:
        parsed = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        return fail(f"duplicate key {exc.key!r} in one object (FHIR JSON forbids it)")
    except json.JSONDecodeError as exc:
        return fail(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return fail("not JSON that can be read: nested too deeply")
    if not isinstance(parsed, dict):
        return fail(f"expected a JSON object (a Bundle), got {type(parsed).__name__}")
    return parsed, []


def validate_bundle(bundle: dict[str, Any], types: DocumentTypes | None = None) -> list[FhirIssue]:
    """Every fault of an already parsed document Bundle, sorted: Bundle first, then by entry and path."""
    if bundle.get("resourceType") != "Bundle":
        return [FhirIssue(None, "", "resourceType", "fhir-structure",
                          f"a document is a Bundle, got resourceType {bundle.get('resourceType')!r}")]
    types = types or load_document_types()
    issues, _models = check_structure(bundle)
    issues += check_document(bundle, types)
    return sorted(issues, key=issue_sort_key)


def validate_document(data: bytes, types: DocumentTypes | None = None) -> list[FhirIssue]:
    """Every fault of a FHIR document given as bytes (empty: valid), in one pass.

    ``types`` defaults to the shipped ``streams/fhir/documents.toml`` (read on each call: pass a loaded
    table when validating many documents).
    """
    bundle, issues = parse_json(data)
    if issues:
        return issues
    return validate_bundle(bundle, types)


def require_valid(data: bytes, types: DocumentTypes | None = None) -> dict[str, Any]:
    """The parsed Bundle of a valid document; :class:`InvalidDocumentError` with every fault otherwise."""
    issues = validate_document(data, types)
    if issues:
        raise InvalidDocumentError(issues)
    bundle, _ = parse_json(data)
    return bundle  # type: ignore[no-any-return]
