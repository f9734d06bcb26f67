"""The patient index on the real PostgreSQL and broker (issue 15, docs/sharing.md "The patient index").

A shared store's trigger queues one declaration per change of a document, whoever writes it (here the
store API the cloud's reference API uses: copy and withdraw); the declarer publishes them to the server's
index topic and forgets them; the indexer records them, keeping per server and record the greatest seq, so
a redelivered older declaration changes nothing; ``find`` answers by server and institution and audits
every query; bad declarations end in the indexer's dead letters.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from connectors.stores.fructos import PostgresSignedRecordStore, SignedRecord
from connectors.stores.index_outbox import backlog, pending, redeclare_all
from connectors.stores.patient_index import INDEX_DATABASE, create_index_schema, find, queries
from connectors.stores.tables import create_schema
from infra.local.databases import postgres_instance
from infra.local.process import free_port
from infra.local.sharing_roles import grant_sharing_database
from infra.local.stack import write_settings_file
from streams.apply.declarer import build_declarer
from streams.apply.indexer import build_indexer
from streams.core.codec import decode
from streams.runtime.connections import dsn
from streams.runtime.credentials import DECLARER, INDEXER, role_credentials
from streams.runtime.deadletter import IncomingMessage
from streams.runtime.kafka_config import client_config
from streams.runtime.metrics import Health
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from streams.sharing.index import Declaration, decode_declaration, encode_declaration, index_topic
from tests.e2e.test_feed_processes import read_all
from tests.support.stack import running_broker

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
STORE_DB = "fructos_patient"  # the cloud's shared store: the trigger is created for it


@pytest.fixture(scope="module")
def settings(pg_settings: Settings) -> Iterator[Settings]:
    """The session's PostgreSQL with an emptied shared store and index, and a broker of this module's own."""
    s = dataclasses.replace(pg_settings, topic_prefix=f"idxtest{uuid.uuid4().hex[:6]}")
    postgres_instance(s, "remote").ensure_databases((STORE_DB, INDEX_DATABASE))
    for database, create in ((STORE_DB, lambda c: create_schema(c, "fructos_patient", "remote", STORE_DB, s)),
                             (INDEX_DATABASE, create_index_schema)):
        engine = create_engine(dsn(s, "remote", database))
        with engine.begin() as conn:
            create(conn)
        engine.dispose()
        grant_sharing_database(s, "remote", database)  # the declarer's and the indexer's own roles
    with running_broker(s):
        yield s


@pytest.fixture()
def store(settings: Settings) -> Iterator[Engine]:
    engine = create_engine(dsn(settings, "remote", STORE_DB))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE signed_records, platsync_index_outbox, platsync_tombstone"))
    yield engine
    engine.dispose()


@pytest.fixture()
def index(settings: Settings) -> Iterator[Engine]:
    engine = create_engine(dsn(settings, "remote", INDEX_DATABASE))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE index_entries, index_queries"))
    yield engine
    engine.dispose()


def approved(record_id: str, patient: str = "p-1", home: str = "hosp-a", doc_type: str = "referral",
             entity: str = "document") -> SignedRecord:
    record = SignedRecord.new(record_id, entity, f"doc-{record_id}", "application/json", b'{"x": 1}', "dr-a",
                              patient_id=patient, doc_type=doc_type, home_node=home)
    return dataclasses.replace(record, version=3, approved=True)


def test_the_trigger_queues_a_declaration_per_change_of_a_document(store: Engine) -> None:
    with store.begin() as conn:
        records = PostgresSignedRecordStore(conn)
        assert records.copy(approved("d1"))
        assert records.copy(approved("pt", entity="patient"))  # a patient's own record: not a document
        held = records.get("d1")
        assert held is not None
        assert records.withdraw(dataclasses.replace(held, version=4, shared=False))  # made private
    with store.begin() as conn:
        due = pending(conn, "cloud")
        assert [(d.record_id, d.version, d.present) for d in due] == [("d1", 3, True), ("d1", 3, False)]
        assert (due[0].patient_id, due[0].home_node, due[0].doc_type) == ("p-1", "hosp-a", "referral")
        assert due[0].document_ts_ms is not None and due[0].seq < due[1].seq
        assert backlog(conn)[0] == 2
        records = PostgresSignedRecordStore(conn)
        assert records.copy(approved("d2", patient="p-2"))
        assert redeclare_all(conn) == 1  # by command: every document the store holds (d2; d1 was withdrawn)
        assert [(d.record_id, d.present) for d in pending(conn, "cloud")][-2:] == [("d2", True), ("d2", True)]


def test_declarations_reach_the_index_once_and_in_order(settings: Settings, store: Engine, index: Engine) -> None:
    topic = index_topic(settings.topic_prefix, "cloud")
    ensure_topics(client_config(settings, "platsync-test-admin"), [topic], real_cluster=False)
    with store.begin() as conn:
        records = PostgresSignedRecordStore(conn)
        records.copy(approved("d1"))
        records.copy(approved("d2", doc_type="discharge_summary"))
        records.copy(approved("d3", home="hosp-c"))
        records.copy(approved("other", patient="p-2"))
    declarer = build_declarer(settings, "cloud", "remote")
    try:
        assert declarer.run_once() == 4 and declarer.run_once() == 0  # published, then forgotten
    finally:
        declarer.close()
    published = [decode_declaration(v) for v in read_all(settings, topic, 4)]
    with store.begin() as conn:
        held = PostgresSignedRecordStore(conn).get("d3")
        assert held is not None
        PostgresSignedRecordStore(conn).withdraw(dataclasses.replace(held, version=4, shared=False))
        (withdrawal,) = pending(conn, "cloud")
    indexer = build_indexer(settings, ["cloud"])
    try:
        messages = [IncomingMessage(topic, 0, i, None, encode_declaration(d))
                    for i, d in enumerate([*published, withdrawal])]
        indexer.apply(messages)
        indexer.apply(messages[:4])  # a redelivery of the older declarations: d3 stays withdrawn
    finally:
        indexer.close()
    with index.begin() as conn:
        found = find(conn, "p-1", "dr-b", "hosp-b")
        assert [(loc.server, loc.institution, loc.documents, loc.doc_types) for loc in found] == [
            ("cloud", "hosp-a", 2, ("discharge_summary", "referral"))]  # not d3 (withdrawn), not p-2's
        assert find(conn, "p-404", "dr-b", "hosp-b") == []
        audit = queries(conn)
    assert [(q["asked_by"], q["asked_from"], q["patient_id"], q["locations"]) for q in audit] == [
        ("dr-b", "hosp-b", "p-1", 1), ("dr-b", "hosp-b", "p-404", 0)]


def test_the_indexer_dead_letters_what_is_not_the_topics_servers_declaration(settings: Settings,
                                                                              index: Engine) -> None:
    topic = index_topic(settings.topic_prefix, "region-1")
    ensure_topics(client_config(settings, "platsync-test-admin"), [f"{settings.topic_prefix}.dlq.indexer"],
                  real_cluster=False)
    good = Declaration("region-1", 1, "d1", "p-1", "hosp-a", "referral", 2, True, 1_700_000_000_000)
    forged = dataclasses.replace(good, server="cloud", record_id="d9")  # region-1 declaring for the cloud
    indexer = build_indexer(settings, ["cloud", "region-1"])
    try:
        indexer.apply([IncomingMessage(topic, 0, 0, None, b"junk"),
                       IncomingMessage(topic, 0, 1, None, encode_declaration(forged)),
                       IncomingMessage(topic, 0, 2, None, encode_declaration(good))])
    finally:
        indexer.close()
    with index.begin() as conn:
        assert [(loc.server, loc.documents) for loc in find(conn, "p-1", "op", "cloud")] == [("region-1", 1)]
    letters = [decode("dead_letter", v) for v in read_all(settings, f"{settings.topic_prefix}.dlq.indexer", 2)]
    assert sorted((d["error_kind"], d["source_offset"]) for d in letters) == [("decode", 0), ("wrong_server", 1)]


def probe(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.parametrize("module", ["streams.apply.declarer", "streams.apply.indexer"])
def test_the_index_processes_serve_their_health_for_kubernetes_probes(settings: Settings, tmp_path: Path,
                                                                      module: str) -> None:
    """Run as processes with --metrics-port (as the Kubernetes Deployments do): live and ready once their
    loop runs against a reachable store and broker; SIGTERM stops them cleanly."""
    ensure_topics(client_config(settings, "platsync-test-admin"), [index_topic(settings.topic_prefix, "cloud")],
                  real_cluster=False)
    config = write_settings_file(settings, tmp_path / "platsync.toml")
    port = free_port()
    args = ["--server", "cloud", "--pg-node", "remote"] if module.endswith("declarer") else ["--servers", "cloud"]
    # Its role's password from the environment, as a Kubernetes Deployment gives it (its data dir has none).
    role = DECLARER if module.endswith("declarer") else INDEXER
    password = {f"PLATSYNC_PG_{role.upper()}_PASSWORD": role_credentials(settings, "remote", role)[1]}
    proc = subprocess.Popen([sys.executable, "-m", module, *args, "--metrics-port", str(port), "--config", str(config),
                             "--data-dir", str(tmp_path)], cwd="/",
                            env={**os.environ, "PYTHONPATH": str(REPO), **password},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                return probe(port, "/readyz")[0] == 200
            except OSError:  # not listening yet
                return False

        wait_for(ready, f"{module} ready")
        status, body = probe(port, "/healthz")
        assert status == 200 and body["status"] == "ok" and body["loops_age_s"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_a_declarer_whose_store_is_unreachable_is_live_but_not_ready(settings: Settings) -> None:
    """A real PostgreSQL client against a port nothing listens on: the declarer keeps retrying (live) and its
    readiness says why it is not ready."""
    down = dataclasses.replace(settings, nodes={**settings.nodes, "remote": dataclasses.replace(
        settings.node("remote"), pg_port=free_port())})
    declarer = build_declarer(down, "cloud", "remote")
    health, stop = Health(stall_after_s=30), threading.Event()
    runner = threading.Thread(target=declarer.run, args=(stop,), kwargs={"health": health}, daemon=True)
    runner.start()
    try:
        wait_for(lambda: health.readiness()[1].get("reason", "").endswith("unreachable"), "not ready", 30)
        assert health.liveness()[0] and not health.readiness()[0]
    finally:
        stop.set()
        runner.join(10)
        declarer.close()
