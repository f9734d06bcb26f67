"""JP-CLINS FHIR documents through the real stack (issue 17, docs/fhir.md): each document type registered on the
hospital as ``application/fhir+json``, approved, and found byte-exact (same bytes, same hash) in the cloud's own
store and its patient-management store; an invalid Bundle refused with nothing written, on registration and on
update; a registration made while the link is down reaching everything after it, the cloud's summary too."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
import pytest

from connectors.reference_api.errors import PayloadError
from connectors.reference_api.payloads import DocumentsPayload, NewDocument
from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.fhir.extract import extract_six
from streams.ops.fhir_summary_report import read_summary
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import eventually, platsync

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "streams" / "fhir" / "samples"
DOCUMENTS = {"referral.json": "referral", "discharge.json": "discharge_summary", "checkup.json": "checkup"}
FHIR = "application/fhir+json; fhirVersion=4.0"


def synced(s: Settings) -> None:
    assert wait_synced(s, 120) == []


def content(s: Settings, side: str, store: str, doc_id: str) -> tuple[bytes, str, bool] | None:
    with psycopg.connect(libpq_dsn(s, side, store)) as conn:
        row = conn.execute("SELECT content, content_hash, approved FROM signed_records WHERE subject_id = %s",
                           (doc_id,)).fetchone()
    return None if row is None else (bytes(row[0]), row[1], row[2])


def documents_of(s: Settings, side: str, patient: str) -> int:
    with psycopg.connect(libpq_dsn(s, side, "meta")) as conn:
        return conn.execute("SELECT count(*) FROM documents WHERE patient_id = %s", (patient,)).fetchone()[0]


def register(api: ReferenceApi, name: str, patient: str) -> str:
    data = (SAMPLES / name).read_bytes()
    result = api.call("PRV_DOC_006", {"patient_id": patient, "doc_type": DOCUMENTS.get(name, "fhir"),
                                      "title": name, "media_type": FHIR, "content_text": data.decode("utf-8"),
                                      "content_hash": hashlib.sha256(data).hexdigest(), "signed_by": "dr-fhir"})
    return result["written"]["meta"]["documents"][0]


def test_each_document_type_arrives_byte_exact_in_the_cloud_and_the_patient_store(stack: Stack) -> None:
    s = stack.settings
    with ReferenceApi(s, "local") as local:
        docs = {name: register(local, name, "p-fhir-1") for name in DOCUMENTS}
        local.call("PRV_DOC_009", {"documents": [{"id": d, "approved_by": "dr-chief"} for d in docs.values()]})
    synced(s)
    for name, doc_id in docs.items():
        sent = (SAMPLES / name).read_bytes()
        digest = hashlib.sha256(sent).hexdigest()
        for side, store in (("local", "fructos_own"), ("remote", "fructos_own"), ("remote", "fructos_patient")):
            assert content(s, side, store, doc_id) == (sent, digest, True), (name, side, store)


def test_an_invalid_bundle_is_refused_with_nothing_written(stack: Stack) -> None:
    s = stack.settings
    bundle = json.loads((SAMPLES / "referral.json").read_bytes())
    bundle["type"] = "collection"
    del bundle["entry"][0]["resource"]["meta"]
    patient = "p-fhir-refused"
    with ReferenceApi(s, "local") as local:
        with pytest.raises(PayloadError) as refused:
            local.call("PRV_DOC_006", {"patient_id": patient, "doc_type": "referral", "title": "bad",
                                       "media_type": FHIR, "content_text": json.dumps(bundle, ensure_ascii=False),
                                       "signed_by": "dr-fhir"})
    message = str(refused.value)
    assert "content_text" in message and "bundle-type" in message and "meta-profile" in message, message
    assert "collection" not in message  # the refusal names rules and paths, never the content's values
    assert documents_of(s, "local", patient) == 0
    with ReferenceApi(s, "local") as local, pytest.raises(PayloadError, match="bundle-type"):  # typed, not JSON
        local.register_documents(DocumentsPayload((NewDocument(patient, "referral", "bad", FHIR,
                                                               json.dumps(bundle).encode(), "dr-fhir"),)))
    assert documents_of(s, "local", patient) == 0
    # An update that would make a valid document invalid is refused too, and the document keeps its content.
    with ReferenceApi(s, "local") as local:
        doc_id = register(local, "discharge.json", patient)
        with pytest.raises(PayloadError, match="bundle-type"):
            local.call("PRV_DOC_007", {"documents": [{"id": doc_id, "content_text": json.dumps(bundle),
                                                      "signed_by": "dr-fhir"}]})
        plain = local.call("PRV_DOC_006", {"patient_id": patient, "doc_type": "note", "title": "plain",
                                           "media_type": "text/plain", "content_text": "所見なし",
                                           "signed_by": "dr-fhir"})["written"]["meta"]["documents"][0]
        with pytest.raises(PayloadError, match=r"documents\[0\]"):  # a text document turned FHIR by its type
            local.call("PRV_DOC_007", {"documents": [{"id": plain, "media_type": FHIR, "signed_by": "dr-fhir"}]})
    assert content(s, "local", "fructos_own", doc_id)[0] == (SAMPLES / "discharge.json").read_bytes()


@pytest.mark.embedded_broker
def test_a_document_registered_offline_reaches_every_store_after_the_link_returns(stack: Stack) -> None:
    s = stack.settings
    assert platsync(s, "link", "down").returncode == 0
    try:
        with ReferenceApi(s, "local") as local:
            doc_id = register(local, "six_information.json", "p-fhir-offline")
            local.call("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "dr-chief"}]})
    finally:
        assert platsync(s, "link", "up").returncode == 0
    synced(s)
    sent = (SAMPLES / "six_information.json").read_bytes()
    for store in ("fructos_own", "fructos_patient"):
        assert content(s, "remote", store, doc_id) == (sent, hashlib.sha256(sent).hexdigest(), True), store
    # ... and the cloud's 6 information summary (docs/fhir.md).
    want = {(e.kind, e.code, e.value) for e in extract_six(sent).entries}
    eventually(lambda: {(e["kind"], e["code"], e["value"]) for e in read_summary(s, "p-fhir-offline").entries}
               == want, "the offline document's 6 information in the cloud's summary")


def test_export_import_export_gives_identical_files(stack: Stack, tmp_path: Path) -> None:
    """The vendors' phase-1 connection test, offline: a patient's documents written out, read in for another
    patient, written out again, byte-identical; a tampered file is refused with nothing registered."""
    s = stack.settings
    with ReferenceApi(s, "local") as local:
        for name in ("referral.json", "checkup.json"):
            register(local, name, "p-fhir-export")
        local.call("PRV_DOC_006", {"patient_id": "p-fhir-export", "doc_type": "note", "title": "plain",
                                   "media_type": "text/plain", "content_text": "所見なし", "signed_by": "dr-fhir"})
    first, second = tmp_path / "first", tmp_path / "second"
    out = platsync(s, "fhir", "export", "--patient", "p-fhir-export", str(first))
    assert out.returncode == 0 and "exported 2 FHIR document(s)" in out.stdout, out.stdout + out.stderr
    imported = platsync(s, "fhir", "import", "--patient", "p-fhir-copy", str(first))
    assert imported.returncode == 0 and "imported 2" in imported.stdout, imported.stdout + imported.stderr
    again = platsync(s, "fhir", "import", "--patient", "p-fhir-copy", str(first))  # idempotent
    assert again.returncode == 0 and "imported 0" in again.stdout and "2 already held" in again.stdout
    assert platsync(s, "fhir", "export", "--patient", "p-fhir-copy", str(second)).returncode == 0
    files = sorted(p.name for p in first.iterdir())
    assert len(files) == 3 and files == sorted(p.name for p in second.iterdir())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    tampered = next(f for f in files if f.startswith("referral"))
    (first / tampered).write_bytes((first / tampered).read_bytes().replace(b'"document"', b'"collection"'))
    refused = platsync(s, "fhir", "import", "--patient", "p-fhir-tampered", str(first))
    assert refused.returncode == 1 and "sha256 differs" in refused.stderr, refused.stderr
    assert documents_of(s, "local", "p-fhir-tampered") == 0
