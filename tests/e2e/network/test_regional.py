"""A regional common server on the embedded stack (the package's network: infra/topologies/regional.toml).

Two hospitals under ``region-1`` under the cloud: each hospital's home link goes straight to the cloud;
``region-1`` keeps read-only copies of what the cloud's shared 患者管理FRUCtoS holds of its hospitals,
whichever party wrote it. The region going down stops neither hospital's sync with the cloud and catches
up when it is back; no capture topic carries an echo, and nothing is captured from the region.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from connectors.reference_api.service import ReferenceApi
from infra.local.network import Network
from infra.local.process import read_pid
from streams.apply.barrier import wait_synced
from streams.core.codec import decode_changes
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from tests.e2e.network.conftest import HOSPITALS, REGION, topic_values
from tests.support.helpers import platsync

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]
COLUMNS = "id, version, deleted, entity, subject_id, content, content_hash, signed_by, approved, updated_at"


def call(link: Settings, side: str, api_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    with ReferenceApi(link, side) as api:
        return api.call(api_id, payload)


def new_documents(link: Settings, side: str, marker: str, count: int) -> list[tuple[str, str]]:
    """(META document id, FRUCtoS signed record id) of ``count`` new documents."""
    result = call(link, side, "PRV_DOC_006", {"documents": [
        {"patient_id": f"p-{marker}", "doc_type": "note", "title": f"{marker}-{i}", "media_type": "text/plain",
         "content_text": f"{marker} {i}", "signed_by": "dr"} for i in range(count)]})
    written = result["written"]
    return list(zip(map(str, written["meta"]["documents"]), map(str, written["fructos_own"]["signed_records"]),
                    strict=True))


def approve(link: Settings, side: str, doc: tuple[str, str]) -> str:
    """Approve a document (PRV_DOC_009: its record enters the shared store); its signed record's id."""
    call(link, side, "PRV_DOC_009", {"documents": [{"id": doc[0], "approved_by": f"chief-{side}"}]})
    return doc[1]


def new_user(link: Settings, side: str, marker: str) -> str:
    result = call(link, side, "PRV_USR_001", {"login_id": f"u{marker[:12]}", "display_name": marker,
                                              "institution_code": "1310000001"})
    return str(result["written"]["fructos_own"]["signed_records"][0])


def rows(settings: Settings, node: str, ids: list[str] | None = None) -> dict[str, tuple[Any, ...]]:
    """The shared store's signed records on ``node`` (``remote``: the cloud's; a region: its copy)."""
    with psycopg.connect(libpq_dsn(settings, node, "fructos_patient")) as conn:
        where, args = ("WHERE id = ANY(%s)", (ids,)) if ids is not None else ("", ())
        return {r[0]: r for r in conn.execute(f"SELECT {COLUMNS} FROM signed_records {where}", args)}


def synced(link: Settings, replicas: bool = True) -> None:
    pending = wait_synced(link, 120, replicas=replicas)
    assert pending == [], f"link {link.network_link} did not sync: {pending}"


def test_the_region_keeps_what_the_cloud_shares_of_its_hospitals(network: Network) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    tag = uuid.uuid4().hex[:10]
    a_docs = new_documents(a, "local", f"A-{tag}", 3)  # written at hospital A
    b_docs = new_documents(b, "remote", f"B-{tag}", 2)  # written in the cloud, for hospital B
    shared = [approve(a, "local", a_docs[0]), approve(b, "remote", b_docs[1]),
              new_user(a, "remote", f"UA-{tag}"), new_user(b, "local", f"UB-{tag}")]
    synced(a)
    synced(b)
    cloud, region = rows(a, "remote"), rows(a, REGION)
    assert set(shared) <= set(cloud), "the cloud's shared store misses records (home links broken?)"
    # The region holds exactly what the cloud's shared store holds of its two hospitals, state for state.
    assert region == cloud
    unapproved = [a_docs[1][1], a_docs[2][1], b_docs[0][1]]
    assert not rows(a, REGION, unapproved), "an unapproved document reached the region"


def test_a_hospital_syncs_with_the_cloud_while_its_region_is_down(network: Network) -> None:
    a = network.link("hosp-a")
    tag = uuid.uuid4().hex[:10]
    assert network.stop_region(REGION, say=print)
    try:
        docs = [approve(a, "local", new_documents(a, "local", f"A-down-{tag}", 1)[0])]
        synced(a, replicas=False)  # the home link does not wait for the region
        assert docs[0] in rows(a, "remote", docs)
        assert read_pid(a.data_dir, "worker-local_to_region-1") is not None  # it waits for its store
        pending = wait_synced(a, 3)
        assert any(p.route == "hosp-a_to_region-1" for p in pending), pending  # the region is behind
    finally:
        network.start_region(REGION, say=print)
    synced(a)  # and catches up by itself
    assert rows(a, REGION, docs) == rows(a, "remote", docs)


def test_no_capture_topic_carries_an_echo_and_nothing_is_captured_from_the_region(network: Network) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    tag = uuid.uuid4().hex[:10]
    doc = new_documents(a, "local", f"A-echo-{tag}", 1)[0]
    synced(a)
    approve(a, "remote", doc)  # made at the hospital, approved in the cloud: it crosses the home link both ways
    synced(a)
    synced(b)
    admin = AdminClient(client_config(network.settings, "platsync-test-admin"))
    topics = sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith("platsync."))
    captured = [t for t in topics if t.rsplit(".", 2)[-2] in ("local", "remote")]
    # The region's only topic of its own: its declarations to the patient index (nothing captured there).
    own = {network.plan.index_topic("platsync", REGION)}
    assert captured and not [t for t in topics if REGION in t and ".dlq." not in t and t not in own], topics
    events, echoes = 0, []
    for topic, value in topic_values(network.settings, captured):
        for change in decode_changes(value):
            events += 1
            if change.origin_side != change.source_side:
                echoes.append((topic, change.event_id, change.origin_side))
    assert events > 0 and echoes == [], echoes[:5]


def test_the_region_is_cut_alone_and_shows_in_status(network: Network) -> None:
    a = network.link("hosp-a")
    down = platsync(network.settings, "link", "down", "--node", REGION)
    assert down.returncode == 0 and "DOWN" in down.stdout, down.stdout + down.stderr
    try:
        docs = [approve(a, "local", new_documents(a, "local", f"A-cut-{uuid.uuid4().hex[:10]}", 1)[0])]
        synced(a, replicas=False)  # the hospital and the cloud go on
        time.sleep(3)
        assert not rows(a, REGION, docs), "a record reached a regional server cut off the broker"
        listed = platsync(network.settings, "link", "status")
        assert listed.returncode == 0 and f"{REGION}: link DOWN" in listed.stdout, listed.stdout
    finally:
        up = platsync(network.settings, "link", "up", "--node", REGION)
        assert up.returncode == 0, up.stdout + up.stderr
    synced(a)
    assert rows(a, REGION, docs) == rows(a, "remote", docs)
    status = platsync(network.settings, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "worker-local_to_region-1:up" in status.stdout
    # a row per node and per link, above each home link's own block
    for row in ("node region-1 ", "node hosp-a ", "node remote ", "link home.hosp-b ", "link replica.hosp-a.region-1 "):
        assert row in status.stdout, status.stdout
    assert "local_to_region-1  local/fructos_own" in status.stdout, status.stdout
    assert "local_to_region-1  remote/fructos_own" in status.stdout, status.stdout
