"""The sharing processes' Kafka principals (streams/runtime/credentials.py; no broker).

Each sharing process of a network authenticates as its plan's principal (``platsync access --topology`` and
the Kubernetes KafkaUsers use those names): the network's settings name the fan-out, the indexer and each
declarer, a link's settings its hospital's subscriber, and the embedded stack generates a SASL user for each,
in the one users file of the network's broker endpoint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from infra.local.broker_secrets import ensure_broker_secrets, share_with_links
from infra.local.link import LinkProxy, endpoint_security
from infra.local.network import Network
from streams.ops.access_policy import plan_principals
from streams.runtime.credentials import kafka_principals, sharing_kafka_processes
from streams.runtime.kafka_config import broker_secrets_dir, ca_file, client_config, generated_users
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


def test_a_network_shares_one_ca_and_users_file_with_its_links(tmp_path: Path) -> None:
    two = load_topology(TOPOLOGIES / "two_hospitals.toml")
    plain = Network(load_settings(env={}, data_dir=tmp_path / "plain"), two, port=counter())
    share_with_links(plain.settings, plain.links.values())
    assert not (tmp_path / "plain" / "secrets").exists()  # plaintext: nothing to share
    base = load_settings(env={}, data_dir=tmp_path / "net", broker_security_protocol="sasl_ssl")
    net = Network(base, two, port=counter(31000))
    (broker_secrets_dir(net.link("hosp-a")) / "users.json").parent.mkdir(parents=True)  # a set of its own, earlier
    (broker_secrets_dir(net.link("hosp-a")) / "users.json").write_text("{}")
    share_with_links(net.settings, net.links.values())
    share_with_links(net.settings, net.links.values())  # idempotent
    users = generated_users(net.settings)
    for hospital, link in net.links.items():
        assert broker_secrets_dir(link).is_symlink()
        assert ca_file(link).read_bytes() == ca_file(net.settings).read_bytes()
        assert generated_users(link) == users
        assert {f"platsync.{hospital}-subscriber", f"platsync.{hospital}-worker-remote_to_local"} <= set(users)
    assert {"platsync-fanout", "platsync-indexer", "platsync-operator"} <= set(users)


def test_the_proxy_accepts_the_users_of_a_hospital_that_joins_while_it_runs(tmp_path: Path) -> None:
    base = load_settings(env={}, data_dir=tmp_path, broker_security_protocol="sasl_ssl")
    net = Network(base, load_topology(TOPOLOGIES / "two_hospitals.toml"), port=counter(35000))
    a, b = net.link("hosp-a"), net.link("hosp-b")
    share_with_links(net.settings, [a])
    _, users = endpoint_security(net.settings)
    proxy = LinkProxy(net.settings, 1, users, ["hosp-a", "hosp-b"])
    assert proxy.reload_users() is False  # nothing new
    b_user = kafka_principals(b)["subscriber"]
    assert proxy.users is not None and proxy.users.scram(b_user, "SCRAM-SHA-512") is None
    share_with_links(net.settings, [a, b])  # hospital B joins
    assert proxy.reload_users() is True
    assert proxy.users.check_plain(b_user, generated_users(b)[b_user])
