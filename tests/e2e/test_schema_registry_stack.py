"""The whole engine with a schema registry, on a Kafka cluster of its own: a private stack configured with
``schema_registry_url`` pointing at a stand-in registry this test starts and ``broker_bootstrap_servers``
pointing at a broker it does not own. API calls sync both ways, every message on the
broker is in the Confluent wire format with a registered id, and a message written without the
registry (plain framing) is dead-lettered with a clear error while the route continues."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.reference_api.service import ReferenceApi
from infra.local.process import free_port, read_pid
from infra.local.stack import Stack, components
from streams.apply.barrier import wait_synced
from streams.core import codec as plain
from streams.core.codec import MessageCodec
from streams.core.model import ChangeEvent
from streams.core.modes import heartbeat_topic
from streams.runtime.confluent_wire import codec_for, header, register_contracts
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.schema_registry import SchemaRegistryClient
from streams.runtime.settings import Settings
from tests.support.helpers import platsync
from tests.support.schema_registry import running_registry_standin
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir, running_broker

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def registry_stack() -> Iterator[Stack]:
    """A private stack with a stand-in registry, on a broker it does not own (``broker_bootstrap_servers``:
    the broker binary started beside it, standing in for a Kafka cluster), so that one stack start covers
    both the registry and the external-cluster path."""
    data_dir = make_data_dir("platsync-e2e-registry-")
    cluster_dir = make_data_dir("platsync-e2e-cluster-")
    try:
        cluster = isolated_settings(cluster_dir, broker_port=free_port())
        with running_broker(cluster), \
                running_registry_standin(data_dir, state_file=data_dir / "schema-registry.json") as url:
            stack = Stack(isolated_settings(data_dir, schema_registry_url=url,
                                            broker_bootstrap_servers=cluster.broker_bootstrap))
            try:
                stack.up(say=lambda m: print(f"[registry stack] {m}"))
                yield stack
            finally:
                stack.down(say=lambda m: print(f"[registry stack] {m}"), drain_timeout_s=0)  # nothing to keep
    finally:
        remove_data_dir(data_dir)
        remove_data_dir(cluster_dir)


def test_a_stack_on_a_kafka_cluster_of_its_own_runs_no_broker_or_link(registry_stack: Stack) -> None:
    """``broker_bootstrap_servers`` replaces the embedded broker and the link: the stack starts neither,
    created its topics on the cluster, and ``platsync link`` says the link does not exist."""
    s = registry_stack.settings
    assert {c.kind for c in components(s)}.isdisjoint({"broker", "link"})
    assert read_pid(s.data_dir, "broker") is None and read_pid(s.data_dir, "link") is None
    assert set(registry_stack.topics()) <= set(AdminClient(client_config(s)).list_topics(timeout=10).topics)
    cut = platsync(s, "link", "down")
    assert cut.returncode == 2 and "only in front of the embedded broker" in cut.stderr


def read_topic(settings: Settings, topic: str, quiet_s: float = 1.5, limit: int = 10**9) -> list[bytes]:
    """The messages of a single-partition topic from the beginning, until quiet (or ``limit`` read)."""
    consumer = Consumer({"bootstrap.servers": settings.broker_bootstrap, "group.id": f"t-{time.time_ns()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline, last = time.monotonic() + 20, time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last < quiet_s and len(values) < limit:
            msg = consumer.poll(0.3)
            if msg is None or msg.error():
                continue
            values.append(msg.value())
            last = time.monotonic()
    finally:
        consumer.close()
    return values


def staff_count(settings: Settings, side: str, staff_id: str) -> int:
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        row = conn.execute("SELECT count(*) FROM staff WHERE id = %s", (staff_id,)).fetchone()
    return int(row[0]) if row else 0


def test_syncs_both_ways_in_the_confluent_wire_format(registry_stack: Stack) -> None:
    s = registry_stack.settings
    codec: MessageCodec = codec_for(s, register=False)
    staff = {}
    for side in ("local", "remote"):
        with ReferenceApi(s, side) as api:
            staff[side] = api.call("PRV_STF_001", {"staff_code": f"SR-{side}", "display_name": f"登録 {side}",
                                                   "role": "clerk"})["written"]["meta"]["staff"][0]
    assert wait_synced(s, 90) == []
    assert staff_count(s, "remote", staff["local"]) == 1 and staff_count(s, "local", staff["remote"]) == 1
    ids = register_contracts(SchemaRegistryClient(s.schema_registry_url), s.schema_registry_compatibility,
                             register=False)  # the ids the engine's processes registered at start
    for side in ("local", "remote"):
        values = read_topic(s, s.topic(side, "meta"))
        assert values and {v[:5] for v in values} <= {header(ids["change_event"]), header(ids["change_batch"])}, side
        keys = {e.key for v in values for e in codec.decode_changes(v)}
        assert staff[side] in keys
    beats = read_topic(s, heartbeat_topic(s), limit=4)  # heartbeats never go quiet
    assert beats and all(b[:5] == header(ids["heartbeat"]) for b in beats)


def test_a_plain_message_is_dead_lettered_with_a_clear_error(registry_stack: Stack) -> None:
    s = registry_stack.settings
    codec = codec_for(s, register=False)
    bad = plain.encode_change(ChangeEvent("local.meta:1:0", "local", "meta", "staff", "c", "plain-1", 1,
                                          {"id": "plain-1"}, "PRV_STF_001", None, "local", 1, 1, 1, 1))
    producer = Producer({"bootstrap.servers": s.broker_bootstrap})
    producer.produce(s.topic("local", "meta"), key=b"plain", value=bad)
    assert producer.flush(10) == 0
    with ReferenceApi(s, "local") as api:
        after = api.call("PRV_STF_001", {"staff_code": "SR-after", "display_name": "後続", "role": "clerk"})[
            "written"]["meta"]["staff"][0]
    assert wait_synced(s, 90) == []
    assert staff_count(s, "remote", after) == 1 and staff_count(s, "remote", "plain-1") == 0
    letters = read_topic(s, s.dead_letter_topic("local_to_remote"))
    assert letters and all(v[:1] == b"\x00" for v in letters)  # dead letters are in the wire format too
    mine = [d for d in (codec.decode("dead_letter", v) for v in letters) if d["original_key"] == b"plain"]
    assert len(mine) == 1 and mine[0]["original_value"] == bad and mine[0]["error_kind"] == "decode"
    assert "not in the Confluent wire format" in mine[0]["error"]
