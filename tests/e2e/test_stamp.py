"""The Kubernetes stamper (connectors/capture/stamp.py) against the real broker binary.

Real captured Debezium envelopes (tests/fixtures/debezium, what the embedded engine and Kafka
Connect's JsonConverter without schemas both produce) are written to the raw topics the
KafkaConnectors write (infra/k8s); the stamper must publish exactly the change events the
embedded runner's TransactionStamper yields for them, dead-letter a malformed record with its
bytes, commit offsets only for what was acknowledged, and resume inside a transaction after a
restart from its saved markers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from connectors.capture.envelope import EnvelopeError, TransactionStamper
from connectors.capture.stamp import MALFORMED, SideStamper, raw_topic, stamp_group
from streams.core.codec import decode, decode_changes
from streams.core.model import ChangeEvent
from streams.runtime.settings import Settings
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir, running_broker, running_postgres

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
STORES = ("meta", "fructos_own")
META = ("meta_insert", "meta_update", "heartbeat", "meta_logical_delete", "echo", "probe", "heartbeat_message",
        "unmarked", "meta_hard_delete")
MALFORMED_VALUE = b'{"before":null,"after":{"id":"x"'  # cut off: not JSON


def records(name: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of one captured fixture scenario, as Kafka Connect writes them to the raw topic."""
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return [(None if r["key"] is None else r["key"].encode(), None if r["value"] is None else r["value"].encode())
            for r in data["records"]]


@pytest.fixture()
def settings() -> Iterator[Settings]:
    """A private data dir and the real broker with the topics the stamper of ``local`` uses."""
    data_dir = make_data_dir("platsync-stamp-")
    s = isolated_settings(data_dir)
    try:
        with running_broker(s) as broker:
            broker.ensure_topics([*(raw_topic(s, "local", st) for st in STORES),
                                  *(s.topic("local", st) for st in STORES), s.dead_letter_topic("local_to_remote")])
            yield s
    finally:
        remove_data_dir(data_dir)


def produce(s: Settings, topic: str, items: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": s.broker_bootstrap, "acks": "all"})
    for key, value in items:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0


def read_all(s: Settings, topic: str) -> list[Any]:
    """Every message of partition 0 of ``topic`` (no group), until a quiet second."""
    consumer = Consumer({"bootstrap.servers": s.broker_bootstrap, "group.id": "test-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out, quiet_until = [], time.monotonic() + 2.0
    while time.monotonic() < quiet_until:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            out.append(msg)
            quiet_until = time.monotonic() + 1.0
    consumer.close()
    return out


def drain(stamper: SideStamper, expected_records: int, timeout_s: float = 30.0) -> int:
    """Poll until ``expected_records`` raw records were handled; return the dead letters written."""
    seen = dead = 0
    deadline = time.monotonic() + timeout_s
    while seen < expected_records:
        assert time.monotonic() < deadline, f"stamper handled {seen} of {expected_records} raw records"
        report = stamper.poll_once(0.5)
        seen += report.records
        dead += report.dead_letters
    return dead


def expected(store: str, items: list[tuple[bytes | None, bytes | None]]) -> list[ChangeEvent]:
    """What the embedded runner's stamper yields for the same records (malformed ones raise there)."""
    st = TransactionStamper("local", store)
    out: list[ChangeEvent] = []
    for _key, value in items:
        try:
            out.extend(st.convert(None, None if value is None else value.decode()))
        except EnvelopeError:
            pass
    return out


def published(s: Settings, store: str) -> list[ChangeEvent]:
    return [e for m in read_all(s, s.topic("local", store)) for e in decode_changes(m.value())]


def same(events: list[ChangeEvent]) -> list[ChangeEvent]:
    return [dataclasses.replace(e, captured_ts_ms=0) for e in events]  # the capture clock differs


def committed(s: Settings, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": s.broker_bootstrap, "group.id": stamp_group(s, "local")})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        consumer.close()


def test_stamper_publishes_what_the_embedded_stamper_yields_and_dead_letters_bad_records(settings: Settings) -> None:
    meta = [rec for name in META for rec in records(name)]
    meta.insert(5, (b'{"id":"x"}', MALFORMED_VALUE))
    fructos = records("fructos_signed_insert")
    produce(settings, raw_topic(settings, "local", "meta"), meta)
    produce(settings, raw_topic(settings, "local", "fructos_own"), fructos)

    # The "unmarked" scenario's rows make the stamper look for their marker in the store (none there: they
    # stay unmarked, as the embedded stamper yields them).
    with running_postgres(settings):
        stamper = SideStamper(settings, "local", stores=STORES)
        try:
            assert drain(stamper, len(meta) + len(fructos)) == 1
        finally:
            stamper.close()

    for store, items in (("meta", meta), ("fructos_own", fructos)):
        want = same(expected(store, items))
        assert want, f"the fixtures of {store} yield events"
        assert same(published(settings, store)) == want
        assert committed(settings, raw_topic(settings, "local", store)) == len(items)
    dlq = settings.dead_letter_topic("local_to_remote")
    letters = [decode("dead_letter", m.value()) for m in read_all(settings, dlq)]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["source_topic"], letter["source_offset"], letter["original_value"], letter["error_kind"]) == (
        raw_topic(settings, "local", "meta"), 5, MALFORMED_VALUE, MALFORMED)
    assert letter["route"] == "local_to_remote" and "not valid JSON" in letter["error"]


def test_stamper_resumes_inside_a_transaction_after_a_restart(settings: Settings) -> None:
    marker, *rows = records("meta_insert")
    topic = raw_topic(settings, "local", "meta")
    produce(settings, topic, [marker])
    first = SideStamper(settings, "local", stores=("meta",))
    try:
        drain(first, 1)
    finally:
        first.close()
    produce(settings, topic, rows)
    second = SideStamper(settings, "local", stores=("meta",))  # a new pod: only the saved markers survive
    try:
        drain(second, len(rows))
    finally:
        second.close()
    events = published(settings, "meta")
    assert [e.key for e in events] == ["pat-0001", "doc-0001"]
    assert {e.api_id for e in events} == {"PRV_PAT_001"}, "the rows after the restart are stamped with the marker"
    assert same(events) == same(expected("meta", [marker, *rows]))


def test_platsync_stamp_process_serves_health_and_metrics_and_stops_cleanly(settings: Settings) -> None:
    from infra.local.broker import Broker

    Broker(settings.host, settings.broker_port).ensure_topics(
        [raw_topic(settings, "local", "keycloak"), settings.topic("local", "keycloak")])
    port = settings.metrics_port("capture-local")
    env = {**os.environ, "PLATSYNC_DATA_DIR": str(settings.data_dir), "PLATSYNC_BROKER_PORT": str(settings.broker_port),
           "PLATSYNC_METRICS_CAPTURE_LOCAL_PORT": str(port), "PLATSYNC_PG_LOCAL_PORT": str(settings.pg_port("local"))}
    env.pop("PLATSYNC_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "stamp", "--side", "local"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        produce(settings, raw_topic(settings, "local", "meta"), records("meta_insert"))
        deadline = time.monotonic() + 30
        metrics = ""
        while 'platsync_captured_events_total{side="local",store="meta"} 2.0' not in metrics:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, metrics[-2000:]
            time.sleep(0.5)
            try:
                metrics = urlopen(f"http://{settings.host}:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
        assert urlopen(f"http://{settings.host}:{port}/readyz", timeout=2).status == 200
        assert [e.key for e in published(settings, "meta")] == ["pat-0001", "doc-0001"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
