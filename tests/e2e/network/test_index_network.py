"""The patient index across the regional network (issue 15, docs/sharing.md "The patient index").

Hospital A shares a document of a patient and keeps a private note; hospital B, written in the cloud for
it, shares one too. The cloud and region-1 both hold the shared ones, and both declare them, by
themselves: ``platsync index find`` (the real CLI) from hospital B lists A and B at the cloud and at the
regional server, never the note. A made private is withdrawn from the index at both servers. A node whose
link is cut cannot reach the index and is told so; every query is audited; no log names the patient.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from infra.local.link import set_link, wait_enforced
from infra.local.network import Network
from tests.e2e.network.conftest import HOSPITALS, REGION
from tests.e2e.network.test_regional import synced
from tests.e2e.network.test_sharing_network import register, share
from tests.support.helpers import eventually, platsync

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def find(network: Network, patient: str, *extra: str) -> set[tuple[Any, ...]]:
    """(server, institution, documents, doc types) of each location ``index find`` lists."""
    done = platsync(network.settings, "index", "find", "--patient", patient, "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return {(r["server"], r["institution"], r["documents"], tuple(r["doc_types"])) for r in json.loads(done.stdout)}


def audited(network: Network, patient: str) -> list[dict[str, Any]]:
    """The audit of the index queries about ``patient`` (``platsync index queries``)."""
    done = platsync(network.settings, "index", "queries", "--format", "json")
    assert done.returncode == 0, done.stderr
    return [q for q in json.loads(done.stdout) if q["patient_id"] == patient]


def test_the_index_finds_where_a_patients_shared_documents_are(network: Network) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    root = network.topology.root.id
    tag = uuid.uuid4().hex[:8]
    patient = f"p-idx-{tag}"
    shared = register(a, "local", f"idx-{tag}-1", patient_id=patient)
    register(a, "local", f"idx-{tag}-2", patient_id=patient, share_state="private", doc_type="private_note")
    register(b, "remote", f"idx-{tag}-3", patient_id=patient, doc_type="discharge_summary")
    synced(a)
    synced(b)
    expected = {(server, "hosp-a", 1, ("referral",)) for server in (root, REGION)} | {
        (server, "hosp-b", 1, ("discharge_summary",)) for server in (root, REGION)}
    eventually(lambda: find(network, patient, "--from", "hosp-b", "--by", "dr-b") == expected,
               "the cloud's and the region's declarations")

    share(a, "local", shared, "private")  # withdrawn from both servers' stores, and so from the index
    synced(a)
    eventually(lambda: find(network, patient) == {e for e in expected if e[1] == "hosp-b"},
               "the withdrawal from the index")

    asked = audited(network, patient)
    set_link(b, False, note="test")
    try:
        assert wait_enforced(b, False) is not None
        refused = platsync(network.settings, "index", "find", "--patient", patient, "--from", "hosp-b")
        assert refused.returncode == 4 and "link is down" in refused.stderr, refused.stderr
    finally:
        set_link(b, True, note="test")
    assert wait_enforced(b, True) is not None
    assert audited(network, patient) == asked  # the refused query reached nothing

    again = platsync(network.settings, "index", "declare", "--node", REGION)  # by command: idempotent
    assert again.returncode == 0 and "queued for declaration" in again.stdout, again.stderr
    bad = platsync(network.settings, "index", "declare", "--node", "hosp-a")
    assert bad.returncode == 2 and "common server" in bad.stderr
    eventually(lambda: find(network, patient) == {e for e in expected if e[1] == "hosp-b"}, "the re-declaration")

    audit = audited(network, patient)
    assert ("dr-b", "hosp-b") in {(q["asked_by"], q["asked_from"]) for q in audit}
    assert {q["asked_from"] for q in audit} == {root, "hosp-b"} and all(q["asked_at"] for q in audit)
    logs = network.settings.data_dir / "logs"
    for name in ("indexer", f"declarer-{root}", f"declarer-{REGION}"):
        text = (logs / f"{name}.log").read_text(encoding="utf-8")
        assert "declar" in text and patient not in text, f"{name}.log"
