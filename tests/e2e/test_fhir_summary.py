"""The cloud's 6 information summary and the submissions to the sharing service, on the real stack (issue 17,
docs/fhir.md): documents registered and approved on the hospital reach the cloud's summary (written as a FHIR
Bundle that passes validation) and are submitted to the stand-in, which holds the same bytes with a receipt;
an update and a delete keep the summary right; a failing service is retried until it takes the document."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.apply.fhir_worker import submission_url
from streams.fhir.extract import extract_six
from streams.ops.fhir_summary_report import read_submissions, read_summary
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.support.helpers import eventually, platsync

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "streams" / "fhir" / "samples"
FHIR = "application/fhir+json"
KEY = ("kind", "system", "code", "display", "date", "status", "value")


def register(api: ReferenceApi, data: bytes, patient: str, doc_type: str) -> str:
    result = api.call("PRV_DOC_006", {"patient_id": patient, "doc_type": doc_type, "title": doc_type,
                                      "media_type": FHIR, "content_text": data.decode("utf-8"),
                                      "content_hash": hashlib.sha256(data).hexdigest(), "signed_by": "dr-fhir"})
    return result["written"]["meta"]["documents"][0]


def record_id(s: Settings, doc_id: str) -> str:
    with psycopg.connect(libpq_dsn(s, "local", "meta")) as conn:
        return conn.execute("SELECT record_id FROM documents WHERE id = %s", (doc_id,)).fetchone()[0]


def expected_entries(*contents: bytes) -> set[tuple[str, ...]]:
    """What the summary must hold: every document's 6 information, each distinct entry once."""
    return {tuple(getattr(e, k) for k in KEY) for data in contents for e in extract_six(data).entries}


def summary_entries(s: Settings, patient: str) -> set[tuple[str, ...]]:
    return {tuple(e[k] for k in KEY) for e in read_summary(s, patient).entries}


def submitted(s: Settings, patient: str) -> list[Any]:
    return read_submissions(s, patient_id=patient)[0]


def received(s: Settings, receipt: str) -> bytes:
    with urllib.request.urlopen(f"{submission_url(s)}/Bundle/{receipt}", timeout=10) as answer:
        return bytes(answer.read())


def with_hba1c(data: bytes, value: float) -> bytes:
    """The referral with another HbA1c result (a real clinical change of its 6 information)."""
    bundle = json.loads(data)
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation" and "valueQuantity" in res and res["valueQuantity"].get("unit") == "%":
            res["valueQuantity"]["value"] = value
    return (json.dumps(bundle, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def test_approved_documents_fill_the_summary_and_are_submitted_once_each(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    patient = "p-six-1"
    samples = {name: (SAMPLES / f"{name}.json").read_bytes()
               for name in ("referral", "discharge", "checkup", "six_information")}
    with ReferenceApi(s, "local") as local:
        docs = {name: register(local, data, patient, name) for name, data in samples.items()}
        local.call("PRV_DOC_009", {"documents": [{"id": d, "approved_by": "dr-chief"} for d in docs.values()]})
    assert wait_synced(s, 120) == []
    want = expected_entries(*samples.values())
    eventually(lambda: summary_entries(s, patient) == want, "the cloud's summary of the 4 documents")
    summary = read_summary(s, patient)
    assert sorted(d["doc_type"] for d in summary.documents) == ["checkup", "discharge", "referral",
                                                                "six-information"]
    assert all(d["problem"] is None and d["institution_code"] == "1311234569" for d in summary.documents)

    # The 3 documents are submitted; the 6 information Bundle is not one of them. Each is held byte-exact.
    eventually(lambda: sorted(x.status for x in submitted(s, patient)) == ["accepted"] * 3, "3 receipts")
    by_record = {x.record_id: x for x in submitted(s, patient)}
    for name in ("referral", "discharge", "checkup"):
        sub = by_record[record_id(s, docs[name])]
        assert sub.doc_type == name and sub.attempts == 1 and sub.receipt
        assert received(s, sub.receipt) == samples[name]

    # The summary as FHIR: a 6 information Bundle that passes the same validation, with every entry.
    out = tmp_path / "summary.json"
    written = platsync(s, "fhir", "summary", "--patient", patient, "--format", "fhir", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert platsync(s, "fhir", "validate", str(out)).returncode == 0
    assert {tuple(getattr(e, k) for k in KEY) for e in extract_six(out.read_bytes()).entries} == want
    text = platsync(s, "fhir", "summary", "--patient", patient)
    assert text.returncode == 0 and "4 document(s) summarized" in text.stdout and "本態性高血圧症" in text.stdout
    listing = platsync(s, "fhir", "submissions", "--patient", patient)
    assert listing.returncode == 0 and "submissions: 3 accepted" in listing.stdout, listing.stdout

    # An update changes the summary and submits the new content; a delete removes the document's entries.
    changed = with_hba1c(samples["referral"], 8.1)
    with ReferenceApi(s, "local") as local:
        local.call("PRV_DOC_007", {"documents": [{"id": docs["referral"], "content_text": changed.decode("utf-8"),
                                                  "signed_by": "dr-fhir"}]})
        local.call("PRV_DOC_008", {"ids": [docs["discharge"]]})
    assert wait_synced(s, 120) == []
    want = expected_entries(changed, samples["checkup"], samples["six_information"])
    eventually(lambda: summary_entries(s, patient) == want, "the summary after the update and the delete")
    assert ("lab", "8.1 %") in {(e[0], e[6]) for e in want}
    eventually(lambda: sorted(x.status for x in submitted(s, patient)) == ["accepted"] * 4, "a 4th receipt")
    newest = submitted(s, patient)[-1]
    assert newest.record_id == record_id(s, docs["referral"]) and received(s, newest.receipt) == changed
    status = platsync(s, "status")
    assert re.search(r"fhir +summary: \d+ document\(s\) waiting.*submissions: .*\d+ accepted", status.stdout), \
        status.stdout


def test_a_failing_service_is_retried_until_it_takes_the_document(stack: Stack) -> None:
    s = stack.settings
    patient = "p-six-retry"
    fail = urllib.request.Request(f"http://{s.host}:{s.fhir_standin_port}/_standin/fail?count=2&status=503",
                                  method="POST")
    with urllib.request.urlopen(fail, timeout=10) as answer:
        assert answer.status in (200, 204)
    data = (SAMPLES / "checkup.json").read_bytes()
    with ReferenceApi(s, "local") as local:
        doc = register(local, data, patient, "checkup")
        local.call("PRV_DOC_009", {"documents": [{"id": doc, "approved_by": "dr-chief"}]})
    assert wait_synced(s, 120) == []
    eventually(lambda: [x.status for x in submitted(s, patient)] == ["retrying"], "a first failed attempt")
    assert "503" in (submitted(s, patient)[0].detail or "")
    eventually(lambda: [x.status for x in submitted(s, patient)] == ["accepted"], "the retried submission",
               timeout_s=60)
    sub = submitted(s, patient)[0]
    assert sub.attempts == 3 and received(s, sub.receipt) == data
