"""The sharing processes' Kafka principals (streams/runtime/credentials.py; no broker).

Each sharing process of a network authenticates as its plan's principal (``platsync access --topology`` and
the Kubernetes KafkaUsers use those names): the network's settings name the fan-out, the indexer and each
declarer, a link's settings its hospital's subscriber, and the embedded stack generates a SASL user for each.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from infra.local.broker_secrets import ensure_broker_secrets
from infra.local.network import Network
from streams.ops.access_policy import plan_principals
from streams.runtime.credentials import kafka_principals, sharing_kafka_processes
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import load_settings
from streams.topology.load import load_topology
from tests.unit.test_network_layout import TOPOLOGIES, counter


@pytest.mark.parametrize("name", ["two_hospitals", "regional"])
def test_each_sharing_process_has_its_plans_principal(name: str, tmp_path: Path) -> None:
    net = Network(load_settings(env={}, data_dir=tmp_path), load_topology(TOPOLOGIES / f"{name}.toml"), port=counter())
    plan, prefix = net.plan, net.settings.topic_prefix
    assert net.settings.network_servers.split(",") == list(plan.common_servers())
    network = kafka_principals(net.settings)
    for process in ("fanout", "indexer", *(f"declarer-{s}" for s in plan.common_servers())):
        assert network[process] == plan.principal(prefix, process), process
    for hospital, link in net.links.items():
        assert sharing_kafka_processes(link) == ("subscriber",)
        assert kafka_principals(link)["subscriber"] == plan.principal(prefix, f"subscriber-{hospital}")
    running = {*network.values(), *(u for link in net.links.values() for u in kafka_principals(link).values())}
    assert {plan_principals(net.settings, plan)[p] for p in plan.subscription_processes()} <= running


def test_no_sharing_principal_without_sharing(tmp_path: Path) -> None:
    alone = Network(load_settings(env={}, data_dir=tmp_path), load_topology(TOPOLOGIES / "default.toml"),
                    port=counter())
    assert alone.settings.network_servers == "" and sharing_kafka_processes(alone.settings) == ()
    assert "fanout" not in kafka_principals(load_settings(env={}, data_dir=tmp_path))


def test_the_embedded_broker_gets_a_sasl_user_per_sharing_principal(tmp_path: Path) -> None:
    cloud = load_settings(env={}, data_dir=tmp_path, broker_security_protocol="sasl_ssl",
                          network_servers="remote,region-1")
    link = dataclasses.replace(cloud, topic_prefix="platsync.hosp-b", network_link="hosp-b")
    ensure_broker_secrets(cloud)
    ensure_broker_secrets(link)  # the same data dir here: one users file
    users = json.loads((tmp_path / "secrets" / "broker" / "users.json").read_text())
    for settings, principal, user in ((cloud, "fanout", "platsync-fanout"), (cloud, "indexer", "platsync-indexer"),
                                      (cloud, "declarer-region-1", "platsync-declarer-region-1"),
                                      (link, "subscriber", "platsync.hosp-b-subscriber")):
        config = client_config(settings, "platsync-test", principal)
        assert (config["sasl.username"], config["sasl.password"]) == (user, users[user])
    assert len({users[u] for u in users}) == len(users)  # a password of its own each
