"""Export and import of a patient's FHIR documents as files (issue 17's offline connection test, docs/fhir.md).

The directory shape (``platsync-fhir-export/1``), one directory per patient:

- one file per live FHIR document of the patient: its signed content, byte for byte, named
  ``<doc_type>-<first 16 hex digits of its sha256>.json`` (a name from the content, not from ids or numbers,
  which differ between nodes), so the same documents always give the same files;
- ``manifest.json``: ``{"format": "platsync-fhir-export/1", "documents": [{"file", "doc_type", "title",
  "media_type", "sha256", "bytes"}, ...]}`` sorted by file name, UTF-8, two-space indented, ending with a
  newline. The patient is not in it: the directory is the patient's, and an import may name another one.

An import checks every file against the manifest (size, sha256) and validates it as a JP-CLINS document before
it registers anything, then registers the documents not already held for the patient (same sha256) with
PRV_DOC_006 in one call: all or nothing, and safe to repeat. So export -> import -> export gives identical
files, which the test suite checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from connectors.reference_api.fhir_content import fhir_refusal, is_fhir
from connectors.reference_api.service import ReferenceApi
from streams.core.errors import PlatSyncError
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

FORMAT = "platsync-fhir-export/1"
MANIFEST = "manifest.json"


class ExchangeError(PlatSyncError):
    """An export directory cannot be imported (manifest, a file's size or hash, an invalid document)."""


@dataclass(frozen=True)
class ExportedDocument:
    """One document of an export: its file and what the manifest says of it."""

    file: str
    doc_type: str
    title: str
    media_type: str
    sha256: str
    bytes: int


def _documents(settings: Settings, side: str, patient: str) -> list[tuple[ExportedDocument, bytes]]:
    """The patient's live FHIR documents on ``side``: META's rows joined to their signed records."""
    with psycopg.connect(libpq_dsn(settings, side, "meta", "operator")) as meta:
        rows = meta.execute("SELECT record_id, doc_type, title FROM documents WHERE patient_id = %s AND NOT deleted",
                            (patient,)).fetchall()
    if not rows:
        return []
    with psycopg.connect(libpq_dsn(settings, side, "fructos_own", "operator")) as own:
        records = {r[0]: r[1:] for r in own.execute(
            "SELECT id, media_type, content, content_hash FROM signed_records WHERE id = ANY(%s) AND NOT deleted",
            ([r[0] for r in rows],))}
    out = []
    for record_id, doc_type, title in rows:
        record = records.get(record_id)
        if record is None or not is_fhir(record[0]):
            continue
        media_type, content, digest = record[0], bytes(record[1]), record[2]
        name = f"{doc_type}-{digest[:16]}.json"
        out.append((ExportedDocument(name, doc_type, title, media_type, digest, len(content)), content))
    return sorted(out, key=lambda d: d[0].file)


def manifest_bytes(documents: list[ExportedDocument]) -> bytes:
    """The manifest of ``documents`` (sorted by file), in its one byte form."""
    body = {"format": FORMAT, "documents": [d.__dict__ for d in sorted(documents, key=lambda d: d.file)]}
    return (json.dumps(body, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def export_patient(settings: Settings, side: str, patient: str, directory: Path) -> list[ExportedDocument]:
    """Write the patient's FHIR documents on ``side`` and the manifest into ``directory`` (created; files of an
    earlier export that are no longer documents are removed, so the directory equals the export)."""
    documents = _documents(settings, side, patient)
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {d.file for d, _ in documents} | {MANIFEST}
    for stale in directory.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    for doc, content in documents:
        (directory / doc.file).write_bytes(content)
    (directory / MANIFEST).write_bytes(manifest_bytes([d for d, _ in documents]))
    return [d for d, _ in documents]


def read_export(directory: Path) -> list[tuple[ExportedDocument, bytes]]:
    """The documents of an export directory, each checked (size, sha256, JP-CLINS validity);
    :class:`ExchangeError` naming the first file that fails."""
    try:
        manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_bytes())
    except (OSError, ValueError) as exc:
        raise ExchangeError(f"{directory / MANIFEST}: not a readable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExchangeError(f"{directory / MANIFEST}: expected format {FORMAT!r}")
    out = []
    for i, item in enumerate(manifest.get("documents") or []):
        try:
            doc = ExportedDocument(**item)
        except TypeError as exc:
            raise ExchangeError(f"{directory / MANIFEST}: documents[{i}]: {exc}") from exc
        path = directory / doc.file
        if path.parent != directory:
            raise ExchangeError(f"{directory / MANIFEST}: documents[{i}].file must be a plain file name")
        content = path.read_bytes()
        if len(content) != doc.bytes or hashlib.sha256(content).hexdigest() != doc.sha256:
            raise ExchangeError(f"{path}: its size or sha256 differs from the manifest's")
        if is_fhir(doc.media_type) and (refusal := fhir_refusal(content)) is not None:
            raise ExchangeError(f"{path}: {refusal}")
        out.append((doc, content))
    return out


def import_patient(settings: Settings, side: str, patient: str, directory: Path, signed_by: str) -> tuple[int, int]:
    """Register the export's documents for ``patient`` on ``side`` (PRV_DOC_006, one call); those the patient
    already has (same sha256) are skipped. Returns (registered, skipped)."""
    documents = read_export(directory)
    held = {d.sha256 for d, _ in _documents(settings, side, patient)}
    new = [(d, c) for d, c in documents if d.sha256 not in held]
    if new:
        with ReferenceApi(settings, side) as api:
            api.call("PRV_DOC_006", {"documents": [
                {"patient_id": patient, "doc_type": d.doc_type, "title": d.title, "media_type": d.media_type,
                 "content_base64": base64.b64encode(c).decode("ascii"), "content_hash": d.sha256,
                 "signed_by": signed_by} for d, c in new]})
    return len(new), len(documents) - len(new)
