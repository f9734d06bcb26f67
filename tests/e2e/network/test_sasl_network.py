"""A network on TLS + SASL (``broker_security_protocol = "sasl_ssl"``): every process, sharing ones included,
authenticates at the one broker endpoint as its own principal.

The package's network (tests/e2e/network/conftest.py) runs on TLS + SASL, so every network test proves that too.
Started by ``Network.up`` as ``platsync up --topology`` does, its links share the network's CA and users file
(infra/local/broker_secrets.py ``share_with_links``), so the link proxy accepts each process's own user, and no
other: hospital B subscribes to a patient through its API, hospital A registers and approves a document of that
patient, B's subscriber holds the copy, the index finds it in the cloud and the region, and the proxy refused no
connection along the way.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from connectors.reference_api.subscriptions_api import SubscriptionsApi
from infra.local.link import enforced_state
from infra.local.network import Network
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import broker_secrets_dir, generated_users
from tests.e2e.network.conftest import REGION
from tests.e2e.network.test_index_network import find
from tests.e2e.network.test_regional import synced
from tests.e2e.network.test_sharing_network import register
from tests.support.helpers import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def held_copies(network: Network, hospital: str, patient: str) -> int:
    with psycopg.connect(libpq_dsn(network.link(hospital), "local", "fructos_subscribed")) as conn:
        row = conn.execute("SELECT count(*) FROM signed_records WHERE patient_id = %s", (patient,)).fetchone()
    return int(row[0]) if row else 0


def test_a_sasl_network_shares_with_each_process_as_its_own_user(network: Network) -> None:
    assert network.settings.broker_security_protocol == "sasl_ssl"
    a, b = network.link("hosp-a"), network.link("hosp-b")
    users = generated_users(network.settings)
    for link in (a, b):
        assert broker_secrets_dir(link).resolve() == broker_secrets_dir(network.settings).resolve()
        assert f"{link.topic_prefix}-subscriber" in users and f"{link.topic_prefix}-capture-local" in users
    assert {"platsync-fanout", "platsync-indexer", "platsync-declarer-remote"} <= set(users)

    # The shared network's earlier tests kill processes mid-handshake: only refusals during this test count.
    refused_before = {id(link): enforced_state(link)["auth_failed"] for link in (a, b)}
    tag = uuid.uuid4().hex[:8]
    patient = f"p-sasl-{tag}"
    api = SubscriptionsApi(b, "local")
    try:
        assert api.call("PLAT_SUB_001", {"patient_id": patient, "requested_by": "dr-b"})["subscribed"] is True
    finally:
        api.close()
    register(a, "local", f"sasl-{tag}", patient_id=patient)
    synced(a)
    eventually(lambda: held_copies(network, "hosp-b", patient) == 1, "hospital B's copy (fan-out -> subscriber)")
    eventually(lambda: find(network, patient) == {(server, "hosp-a", 1, ("referral",))
                                                  for server in (network.topology.root.id, REGION)},
               "the index (declarers -> indexer)")
    for link in (a, b):
        state = enforced_state(link)
        assert state["connections"] > 0 and state["auth_failed"] == refused_before[id(link)], state
