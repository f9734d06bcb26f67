"""The cloud's FHIR worker on a network (docs/fhir.md): documents approved at two hospitals about one patient
meet in the cloud's 6 information summary, and each is submitted to the stand-in once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.network import Network
from streams.apply.barrier import wait_synced
from streams.fhir.extract import extract_six
from tests.support.helpers import eventually, platsync

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[3] / "streams" / "fhir" / "samples"
PATIENT = "p-net-six"


def register_and_approve(network: Network, hospital: str, name: str) -> None:
    link = network.link(hospital)
    data = (SAMPLES / f"{name}.json").read_bytes()
    with ReferenceApi(link, "local") as api:
        doc = api.call("PRV_DOC_006", {"patient_id": PATIENT, "doc_type": name, "title": name,
                                       "media_type": "application/fhir+json", "content_text": data.decode("utf-8"),
                                       "content_hash": hashlib.sha256(data).hexdigest(),
                                       "signed_by": "dr-fhir"})["written"]["meta"]["documents"][0]
        api.call("PRV_DOC_009", {"documents": [{"id": doc, "approved_by": "dr-chief"}]})
    assert wait_synced(link, 120) == []


def test_two_hospitals_documents_meet_in_the_cloud_summary_and_are_submitted(network: Network) -> None:
    register_and_approve(network, "hosp-a", "referral")
    register_and_approve(network, "hosp-b", "checkup")
    want = {(e.kind, e.code, e.value) for name in ("referral", "checkup")
            for e in extract_six((SAMPLES / f"{name}.json").read_bytes()).entries}

    def summary() -> set[tuple[str, str, str]]:
        shown = platsync(network.settings, "fhir", "summary", "--patient", PATIENT, "--format", "json")
        assert shown.returncode == 0, shown.stderr
        return {(e["kind"], e["code"], e["value"]) for e in json.loads(shown.stdout)["entries"]}

    eventually(lambda: summary() == want, "both hospitals' documents in the cloud's summary")

    def accepted() -> list[str]:
        listed = platsync(network.settings, "fhir", "submissions", "--patient", PATIENT, "--format", "json")
        assert listed.returncode == 0, listed.stderr
        return sorted(s["doc_type"] for s in json.loads(listed.stdout)["submissions"] if s["status"] == "accepted")

    eventually(lambda: accepted() == ["checkup", "referral"], "a receipt for each hospital's document")
    status = platsync(network.settings, "status", "--json")
    cloud = json.loads(status.stdout)["nodes"][network.topology.root.id]
    assert {"fhir-remote", "fhir-standin"} <= set(cloud["running"]), cloud
