"""The FHIR document types as data (``streams/fhir/documents.toml``), loaded and validated.

Pure core: reads one TOML file. Every fault of the file is reported in one :class:`DocumentTypesError`,
each with the file, a dotted path (``documents[2].type_code``) and what was expected, like the share rules
and the routing matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.core.errors import FileFault, FileFaultsError, read_toml

_TOP_KEYS: tuple[str, ...] = ("identifiers", "documents")
_IDENTIFIER_KEYS: tuple[str, ...] = ("bundle_system", "patient_system_prefix", "institution_system")
_DOCUMENT_KEYS: tuple[str, ...] = ("name", "title", "type_code", "type_systems", "bundle_profiles",
                                   "composition_profiles", "jp_clins")
_URI_SCHEMES: tuple[str, ...] = ("http://", "https://", "urn:")


def default_document_types_path() -> Path:
    """The document types shipped with the engine (``streams/fhir/documents.toml``)."""
    return Path(__file__).with_name("documents.toml")


class DocumentTypesError(FileFaultsError):
    """The document types file is invalid; ``faults`` lists every problem found."""


@dataclass(frozen=True)
class DocumentType:
    """One document type: the Composition.type code that identifies it and the profiles it must name."""

    name: str
    title: str
    type_code: str
    type_systems: tuple[str, ...]
    bundle_profiles: tuple[str, ...]
    composition_profiles: tuple[str, ...]
    jp_clins: bool


@dataclass(frozen=True)
class DocumentTypes:
    """The validated table: the identifier systems and the document types, in file order."""

    bundle_system: str
    patient_system_prefix: str
    institution_system: str
    documents: tuple[DocumentType, ...]
    path: str = ""

    def by_code(self, system: str | None, code: str | None) -> DocumentType | None:
        """The document type whose type code and one of whose systems match, or None."""
        for doc in self.documents:
            if code == doc.type_code and system in doc.type_systems:
                return doc
        return None

    def by_name(self, name: str) -> DocumentType:
        """The document type called ``name``; ``KeyError`` if there is none."""
        for doc in self.documents:
            if doc.name == name:
                return doc
        raise KeyError(name)

    def codes(self) -> str:
        """The accepted type codes, for messages: ``57133-1 (referral), ...``."""
        return ", ".join(f"{d.type_code} ({d.name})" for d in self.documents)


def load_document_types(path: Path | None = None) -> DocumentTypes:
    """Load and validate a document types file (the shipped one by default).

    Raises :class:`DocumentTypesError` with every fault, or with the TOML syntax error and its position.
    """
    path = path or default_document_types_path()
    data = read_toml(path, DocumentTypesError)
    return parse_document_types(data, str(path))


def parse_document_types(data: Mapping[str, Any], file: str = "<documents>") -> DocumentTypes:
    """Validate already-parsed document types (``load_document_types`` without the file)."""
    faults: list[FileFault] = []

    def fault(where: str, message: str) -> None:
        faults.append(FileFault(file, where, message))

    for key in data:
        if key not in _TOP_KEYS:
            fault(key, "unknown key; expected [identifiers] and [[documents]]")
    identifiers = data.get("identifiers")
    ids: dict[str, str] = {}
    if not isinstance(identifiers, dict):
        fault("identifiers", f"expected a table with {', '.join(_IDENTIFIER_KEYS)}")
    else:
        for key in identifiers:
            if key not in _IDENTIFIER_KEYS:
                fault(f"identifiers.{key}", f"unknown key; expected one of {', '.join(_IDENTIFIER_KEYS)}")
        for key in _IDENTIFIER_KEYS:
            value = _uri(identifiers.get(key), f"identifiers.{key}", fault)
            if value is not None:
                ids[key] = value
    raw = data.get("documents")
    if not isinstance(raw, list) or not raw:
        fault("documents", "expected a non-empty array of tables ([[documents]])")
        raw = []
    documents: list[DocumentType] = []
    seen_names: dict[str, int] = {}
    seen_codes: dict[str, int] = {}
    for i, entry in enumerate(raw):
        doc = _document(f"documents[{i}]", entry, fault)
        if doc is None:
            continue
        if doc.name in seen_names:
            fault(f"documents[{i}].name", f"duplicate name {doc.name!r}; documents[{seen_names[doc.name]}] has it")
        if doc.type_code in seen_codes:
            fault(f"documents[{i}].type_code",
                  f"duplicate type code {doc.type_code!r}; documents[{seen_codes[doc.type_code]}] has it")
        seen_names.setdefault(doc.name, i)
        seen_codes.setdefault(doc.type_code, i)
        documents.append(doc)
    if faults:
        raise DocumentTypesError(faults)
    return DocumentTypes(ids["bundle_system"], ids["patient_system_prefix"], ids["institution_system"],
                         tuple(documents), file)


def _uri(value: Any, where: str, fault: Callable[[str, str], None]) -> str | None:
    if not isinstance(value, str) or not value.startswith(_URI_SCHEMES) or any(c.isspace() for c in value):
        fault(where, f"expected a URI (http://, https:// or urn:) without spaces, got {value!r}")
        return None
    return value


def _text(value: Any, where: str, fault: Callable[[str, str], None]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        fault(where, f"expected a non-empty string, got {value!r}")
        return None
    return value


def _uris(value: Any, where: str, fault: Callable[[str, str], None]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value:
        fault(where, f"expected a non-empty list of URIs, got {value!r}")
        return None
    found = [_uri(v, f"{where}[{i}]", fault) for i, v in enumerate(value)]
    if any(v is None for v in found):
        return None
    for i, v in enumerate(value):
        if "|" in v:
            fault(f"{where}[{i}]", f"expected a profile URL without a '|version' suffix, got {v!r}")
            return None
    return tuple(v for v in found if v is not None)


def _document(where: str, entry: Any, fault: Callable[[str, str], None]) -> DocumentType | None:
    if not isinstance(entry, dict):
        fault(where, f"expected a table with {', '.join(_DOCUMENT_KEYS)}")
        return None
    ok = True
    for key in entry:
        if key not in _DOCUMENT_KEYS:
            fault(f"{where}.{key}", f"unknown key; expected one of {', '.join(_DOCUMENT_KEYS)}")
            ok = False
    name = _text(entry.get("name"), f"{where}.name", fault)
    title = _text(entry.get("title"), f"{where}.title", fault)
    code = _text(entry.get("type_code"), f"{where}.type_code", fault)
    if code is not None and (any(c.isspace() for c in code) or not code.isascii()):
        fault(f"{where}.type_code", f"expected a code without spaces (e.g. 57133-1), got {code!r}")
        code = None
    systems = _uris(entry.get("type_systems"), f"{where}.type_systems", fault)
    bundle_profiles = _uris(entry.get("bundle_profiles"), f"{where}.bundle_profiles", fault)
    composition_profiles = _uris(entry.get("composition_profiles"), f"{where}.composition_profiles", fault)
    jp_clins = entry.get("jp_clins")
    if not isinstance(jp_clins, bool):
        fault(f"{where}.jp_clins", f"expected true or false, got {jp_clins!r}")
        ok = False
    if (not ok or name is None or title is None or code is None or systems is None or bundle_profiles is None
            or composition_profiles is None):
        return None
    return DocumentType(name, title, code, systems, bundle_profiles, composition_profiles, bool(jp_clins))
