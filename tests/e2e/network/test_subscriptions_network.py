"""Patient subscriptions across the regional network (issue 15, docs/sharing.md).

Hospital A shares some documents of a patient and keeps a private note; hospital B subscribes to that
patient (the real CLI) and receives exactly A's shared documents of that patient in its
``fructos_subscribed``, marked with their source; a share change withdraws, a new document arrives,
B cut off catches up at the next connection, and unsubscribing removes every copy. B's feed topic
never carries the private note or another patient's document. B's webhook gets one notification per
change of its copies, each once (by idempotency key), through a refused first attempt.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer

from bench.fanout_receiver import WebhookReceiver
from infra.local.link import set_link, wait_enforced
from infra.local.network import Network
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.sharing.feed import FeedMessage, decode_feed_message, feed_topic
from tests.e2e.network.conftest import HOSPITALS
from tests.e2e.network.test_regional import synced
from tests.e2e.network.test_sharing_network import register, share
from tests.support.helpers import eventually, platsync

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def copies(link: Settings) -> dict[str, tuple[Any, ...]]:
    """The subscriber's copies: record id -> (patient, source node, version, content)."""
    with psycopg.connect(libpq_dsn(link, "local", "fructos_subscribed")) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT id, patient_id, source_node, version, content FROM signed_records")}


class FeedReader:
    """Reads a feed topic from its start in a thread for the whole test (the embedded broker may not hand a
    new consumer the newest message of a quiet topic; a consumer already waiting at the end gets it)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.messages: list[FeedMessage] = []
        self._stop = threading.Event()
        self._consumer = Consumer({**client_config(settings, "platsync-test-scan"),
                                   "group.id": f"scan-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                   "auto.offset.reset": "earliest"})
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(100, 0.5):
                if msg.error() is None and msg.value():
                    self.messages.append(decode_feed_message(msg.value()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def subscriptions(network: Network, *args: str) -> str:
    done = platsync(network.settings, "subscriptions", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def notifications(network: Network, node: str) -> list[dict[str, Any]]:
    done = platsync(network.settings, "notifications", "list", "--node", node, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_subscriber_holds_exactly_the_shared_documents_of_its_patients(network: Network) -> None:
    with WebhookReceiver(fail_first=1) as hook:
        subscribe_share_withdraw_catch_up_and_unsubscribe(network, hook)


def subscribe_share_withdraw_catch_up_and_unsubscribe(network: Network, hook: WebhookReceiver) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    tag = uuid.uuid4().hex[:8]
    patient = f"p-sub-{tag}"
    shared = register(a, "local", f"sub-{tag}-1", patient_id=patient)
    private = register(a, "local", f"sub-{tag}-2", patient_id=patient, share_state="private")
    other = register(a, "local", f"sub-{tag}-3")  # another patient (p-sub-...-3)
    own = register(b, "local", f"sub-{tag}-4", patient_id=patient)  # B's own document of the patient
    synced(a)
    synced(b)

    feed = FeedReader(b, feed_topic(network.settings.topic_prefix, "hosp-b"))
    set_hook = platsync(network.settings, "notifications", "webhook", "--node", "hosp-b", "--url", hook.url)
    assert set_hook.returncode == 0, set_hook.stderr
    assert f"hosp-b subscribed to patient {patient}" in subscriptions(network, "add", "--node", "hosp-b",
                                                                     "--patient", patient)
    eventually(lambda: set(copies(b)) >= {shared[1]}, "the snapshot at hospital B")
    held = copies(b)
    assert {k for k, v in held.items() if v[0] == patient} == {shared[1]}  # not the note, not its own
    assert held[shared[1]][:2] == (patient, "hosp-a")
    listed = json.loads(subscriptions(network, "list", "--node", "hosp-b", "--format", "json"))
    assert [(r["patient_id"], r["documents"]) for r in listed if r["patient_id"] == patient] == [(patient, 1)]
    assert "already subscribes" in subscriptions(network, "add", "--node", "hosp-b", "--patient", patient)
    status = json.loads(platsync(network.settings, "status", "--json").stdout)["subscriptions"]["hosp-b"]
    asked = json.loads(subscriptions(network, "list", "--node", "hosp-b", "--format", "json"))
    assert status["fanout"] == {"asked": len(asked), "open": len(asked)}
    assert (status["subscriber"]["patients"], status["subscriber"]["copies"]) == (len(asked), len(copies(b)))
    assert "subscriptions hosp-b" in platsync(network.settings, "status").stdout

    share(a, "local", shared, "private")  # withdrawn from B
    eventually(lambda: shared[1] not in copies(b), "the withdrawal at hospital B")
    set_link(b, False, note="test")  # B offline: what A publishes waits in B's feed
    try:
        assert wait_enforced(b, False) is not None
        later = register(a, "local", f"sub-{tag}-5", patient_id=patient)
        synced(a)
        time.sleep(3)
        assert later[1] not in copies(b), "a copy crossed a cut link"
    finally:
        set_link(b, True, note="test")
    assert wait_enforced(b, True) is not None
    eventually(lambda: later[1] in copies(b), "hospital B's catch-up")

    subscriptions(network, "remove", "--node", "hosp-b", "--patient", patient)
    eventually(lambda: not any(v[0] == patient for v in copies(b).values()), "the removal at hospital B")
    assert "does not subscribe" in subscriptions(network, "remove", "--node", "hosp-b", "--patient", patient)

    eventually(lambda: any(m.kind == "unsubscribe" and m.patient_id == patient for m in feed.messages),
               "the unsubscription on hospital B's feed")
    feed.close()
    mine = [m for m in feed.messages if m.patient_id in (patient, f"p-sub-{tag}-3")]
    named = {m.record_id for m in mine}
    assert private[1] not in named and other[1] not in named and own[1] not in named
    assert {m.kind for m in mine} == {"subscribe", "copy", "withdraw", "unsubscribe"}
    assert all(m.row is None for m in mine if m.kind == "withdraw")
    assert not any(patient == c[0] for c in copies(network.link("hosp-a")).values())  # A subscribed to nothing

    # One notification per change of B's copies: snapshot copy, withdrawal, the copy caught up after the cut;
    # each delivered once to B's webhook (the first attempt refused: retried), none about the note.
    mine = [n for n in notifications(network, "hosp-b") if n["patient_id"] == patient]
    assert sorted((n["kind"], n["record_id"]) for n in mine) == sorted(
        [("new", shared[1]), ("withdrawn", shared[1]), ("new", later[1])])
    eventually(lambda: {n["message_id"] for n in mine} <= set(hook.acknowledged()), "the webhook's deliveries")
    assert hook.duplicates() == [], hook.duplicates()
    assert not any(b_["record_id"] in (private[1], other[1], own[1]) for _, b_, _ in hook.requests)


def call_api(network: Network, node: str, api: str, payload: dict[str, Any], tmp_path: Path) -> Any:
    """``platsync call`` on ``node``: (exit code, the printed result or the error line)."""
    file = tmp_path / f"{api}-{uuid.uuid4().hex[:6]}.json"
    file.write_text(json.dumps(payload), encoding="utf-8")
    done = platsync(network.settings, "call", api, "--node", node, "--file", str(file))
    return done.returncode, (json.loads(done.stdout) if done.returncode == 0 else done.stderr)


def test_a_hospital_subscribes_through_its_api(network: Network, tmp_path: Path) -> None:
    a, b = (network.link(h) for h in HOSPITALS)
    tag = uuid.uuid4().hex[:8]
    patient = f"p-api-{tag}"
    shared = register(a, "local", f"api-{tag}-1", patient_id=patient)
    synced(a)
    code, result = call_api(network, "hosp-b", "SUB_001", {"patient_id": patient, "requested_by": "dr-b"}, tmp_path)
    assert code == 0 and (result["api"], result["node"], result["subscribed"]) == ("PLAT_SUB_001", "hosp-b", True)
    eventually(lambda: shared[1] in copies(b), "the copy at hospital B")
    code, result = call_api(network, f"{network.topology.root.id}.hosp-b", "PLAT_SUB_003", {}, tmp_path)
    assert code == 0  # the cloud's side of B's link serves B's subscriptions too
    mine = [r for r in result["subscriptions"] if r["patient_id"] == patient]
    assert [(r["node"], r["subscribed_by"], r["documents"]) for r in mine] == [("hosp-b", "hosp-b:dr-b", 1)]
    code, error = call_api(network, "hosp-b", "SUB_002", {"patient_id": patient}, tmp_path)
    assert code == 1 and "requested_by: missing" in error and patient not in error  # nothing recorded
    code, error = call_api(network, "hosp-b", "SUB_001", {"patient_id": patient, "requested_by": "x",
                                                           "node": "hosp-a"}, tmp_path)
    assert code == 1 and "node: unexpected key" in error  # a hospital subscribes itself only
    code, result = call_api(network, "hosp-b", "SUB_002", {"patient_id": patient, "requested_by": "dr-b"}, tmp_path)
    assert code == 0 and result["unsubscribed"] is True
    eventually(lambda: shared[1] not in copies(b), "the removal at hospital B")
