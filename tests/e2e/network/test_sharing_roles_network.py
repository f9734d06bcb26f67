"""The sharing processes of the running regional network hold their database sessions as their own roles.

``platsync up --topology`` provisions the roles (infra/local/sharing_roles.py) and starts each process with
``PGAPPNAME`` set to its name, so ``pg_stat_activity`` tells who connects as whom: the fan-out and the indexer
on the cloud, each common server's declarer on its own server, each hospital's subscriber (with its notifier)
on the hospital, and none of them as the admin (docs/security.md).
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from infra.local.network import Network
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.e2e.network.conftest import HOSPITALS, REGION
from tests.e2e.network.test_index_network import find
from tests.e2e.network.test_regional import synced
from tests.e2e.network.test_sharing_network import register
from tests.support.helpers import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def sessions(settings: Settings, node: str) -> set[tuple[str, str]]:
    """(application name, role) of every client session on ``node``'s PostgreSQL server (asked as the admin)."""
    with psycopg.connect(libpq_dsn(settings, node, "postgres") + " connect_timeout=5") as conn:
        rows = conn.execute("SELECT application_name, usename FROM pg_stat_activity "
                            "WHERE usename IS NOT NULL AND application_name <> ''").fetchall()
    return {(str(app), str(user)) for app, user in rows}


def test_the_sharing_processes_connect_with_their_own_roles(network: Network) -> None:
    base, root = network.settings, network.topology.root.id
    a = network.link(HOSPITALS[0])
    tag = uuid.uuid4().hex[:8]
    register(a, "local", f"roles-{tag}", patient_id=f"p-roles-{tag}")  # the indexer gets something to record
    synced(a)
    eventually(lambda: find(network, f"p-roles-{tag}") != set(), "the index to record the new document")

    wanted = {"remote": {("fanout", "platsync_fanout"), ("indexer", "platsync_indexer"),
                         (f"declarer-{root}", "platsync_declarer")},
              REGION: {(f"declarer-{REGION}", "platsync_declarer")}}
    for node, expected in wanted.items():
        eventually(lambda node=node, expected=expected: expected <= sessions(base, node), f"sessions on {node}")
    for hospital in HOSPITALS:
        link = network.link(hospital)
        eventually(lambda link=link: ("subscriber", "platsync_subscriber") in sessions(link, "local"),
                   f"the subscriber's session on {hospital}")

    names = {"fanout", "indexer", "subscriber", f"declarer-{root}", f"declarer-{REGION}"}
    for settings, node in ((base, "remote"), (base, REGION), *((network.link(h), "local") for h in HOSPITALS)):
        admin = {app for app, user in sessions(settings, node) if app in names and user == base.pg_user}
        assert not admin, f"sharing processes connected as the admin on {node}: {admin}"
