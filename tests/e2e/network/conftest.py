"""One running network for the network tests: the regional topology (infra/topologies/regional.toml).

Two hospitals under ``region-1`` under the cloud: it has everything the two-hospital topology has (two
home links straight to the cloud) plus a regional server, so the tests of home links, of the regional
server and the randomized convergence run share one network (started once: about a minute), which is
drained and stopped after the last test of this package.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.local.network import Network
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.topology.load import load_topology
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir

REPO = Path(__file__).resolve().parents[3]
TOPOLOGY = REPO / "infra" / "topologies" / "regional.toml"
HOSPITALS = ("hosp-a", "hosp-b")
REGION = "region-1"


@contextmanager
def running_network(topology: Path, prefix: str = "platsync-net-", **settings: Any) -> Iterator[Network]:
    """A network of ``topology`` up in a fresh data dir (``settings`` override the isolated defaults), drained
    and stopped, and its data dir removed, on exit."""
    data_dir = make_data_dir(prefix)
    net = Network(isolated_settings(data_dir, **settings), load_topology(topology))
    try:
        net.up(say=lambda m: print(f"[network] {m}"))
        yield net
    finally:
        net.down(say=lambda m: print(f"[network] {m}"), drain_timeout_s=0)
        remove_data_dir(data_dir)


@pytest.fixture(scope="package")
def network() -> Iterator[Network]:
    """The running regional network, on TLS + SASL (test_sasl_network.py); stopped after the package's last
    test."""
    with running_network(TOPOLOGY, broker_security_protocol="sasl_ssl") as net:
        yield net


def topic_values(settings: Settings, topics: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """Every message value of ``topics`` (partition 0, from the start), as ``(topic, value)``.

    The broker's high watermark is unreliable: every topic is read until no message of it came for
    ``IDLE_S`` seconds, or for ``SCAN_S`` seconds at most (the heartbeat topics never go quiet). One consumer
    reads all the topics at once, so a scan takes about ``SCAN_S``, not the sum over the topics."""
    wanted = list(topics)
    consumer = Consumer({**client_config(settings, "platsync-test-scan"),
                         "group.id": f"scan-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        starts = [TopicPartition(t, 0, consumer.get_watermark_offsets(TopicPartition(t, 0), timeout=10)[0])
                  for t in wanted]
        consumer.assign(starts)
        began = time.monotonic()
        last_seen = dict.fromkeys(wanted, began)
        while time.monotonic() - began < SCAN_S:
            msg = consumer.poll(0.5)
            now = time.monotonic()
            if msg is not None and msg.error() is None:
                last_seen[msg.topic()] = now
                if msg.value():
                    yield msg.topic(), msg.value()
            if all(now - seen >= IDLE_S for seen in last_seen.values()):
                break
    finally:
        consumer.close()


#: Seconds without a message after which a scanned topic counts as read to its end, and a scan's limit.
IDLE_S, SCAN_S = 3.0, 20.0
