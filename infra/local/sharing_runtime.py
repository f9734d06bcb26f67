"""Subscriptions on the embedded network: the stores, the feed topics and the processes (docs/sharing.md).

- the cloud's ``sharing`` database and its ``fanout`` process (in the network's data dir), reading every
  home link's ``fructos_own`` topics;
- each hospital's ``fructos_subscribed`` store and its ``subscriber`` process (in its link's data dir),
  reading only its own feed topic; its client id names its link, so cutting the link cuts it too;
- the patient index: the cloud's ``patient_index`` database and its ``indexer``, and one ``declarer-<server>``
  per common server (the cloud and each regional server, all in the network's data dir; a regional server's
  client id names the region's gate, so cutting the region cuts its declarations too).

The admin creates the databases and their schemas here, at provisioning; each process connects with its own
least-privilege role (:mod:`infra.local.sharing_roles`, docs/security.md), which can create nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from connectors.stores.fanout_state import SHARING_DATABASE, create_sharing_schema
from connectors.stores.patient_index import INDEX_DATABASE, create_index_schema
from connectors.stores.subscribed import SUBSCRIBED_STORE, create_subscribed_schema
from infra.local.databases import postgres_instance
from infra.local.process import ProcessSpec, read_pid, run_dir, start_process, stop_process
from infra.local.sharing_roles import grant_sharing_database
from infra.local.stack import settings_file
from streams.core.model import REPLICA_STORE
from streams.runtime.connections import dsn
from streams.runtime.credentials import APP, role_name
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from streams.sharing.feed import feed_topic

Say = Callable[[str], None]
CLOUD_SIDE, HOSPITAL_SIDE = "remote", "local"
FANOUT, SUBSCRIBER, INDEXER = "fanout", "subscriber", "indexer"


def _create(settings: Settings, side: str, database: str, create: Callable[[Connection], None]) -> None:
    postgres_instance(settings, side).ensure_databases((database,))
    engine = create_engine(dsn(settings, side, database))
    try:
        with engine.begin() as conn:
            create(conn)
    finally:
        engine.dispose()


def provision_sharing(base: Settings, links: Mapping[str, Settings], topics: Sequence[str],
                      servers: Mapping[str, str]) -> None:
    """Create the cloud's ``sharing`` and ``patient_index`` databases, every hospital's ``fructos_subscribed``
    and the subscriptions' ``topics`` (NetworkPlan.subscription_topics), then the sharing processes' database
    roles and grants there and on each common server's shared store (``servers``: server -> the settings node
    of its PostgreSQL). As the admin, idempotent; the servers and the broker must run, and each link's stores
    be provisioned (its API role gets the subscription APIs' grants on ``sharing``)."""
    _create(base, CLOUD_SIDE, SHARING_DATABASE, create_sharing_schema)
    _create(base, CLOUD_SIDE, INDEX_DATABASE, create_index_schema)
    for link in links.values():
        _create(link, HOSPITAL_SIDE, SUBSCRIBED_STORE, create_subscribed_schema)
    provision_sharing_roles(base, links, servers)
    ensure_topics(client_config(base, "platsync-operator-feeds"), topics,
                  real_cluster=bool(base.broker_bootstrap_servers))


def provision_sharing_roles(base: Settings, links: Mapping[str, Settings], servers: Mapping[str, str]) -> None:
    """The sharing processes' roles and grants (:mod:`infra.local.sharing_roles`): the fan-out's and the
    subscription APIs' on ``sharing``, the indexer's on ``patient_index``, each subscriber's on its hospital's
    ``fructos_subscribed`` and each declarer's on its server's shared store."""
    grant_sharing_database(base, CLOUD_SIDE, SHARING_DATABASE,
                           app_roles=[role_name(link, CLOUD_SIDE, APP) for link in links.values()])
    grant_sharing_database(base, CLOUD_SIDE, INDEX_DATABASE)
    for link in links.values():
        grant_sharing_database(link, HOSPITAL_SIDE, SUBSCRIBED_STORE)
    for pg_node in dict.fromkeys(servers.values()):
        grant_sharing_database(base, pg_node, REPLICA_STORE)


def _spec(name: str, module: str, settings: Settings, *args: str) -> ProcessSpec:
    return ProcessSpec(name=name, argv=[sys.executable, "-m", module, *args, "--config", str(settings_file(settings)),
                                        "--data-dir", str(settings.data_dir)], env={"PGAPPNAME": name})


def start_sharing(base: Settings, links: Mapping[str, Settings], topics: Sequence[str], servers: Mapping[str, str],
                  say: Say) -> None:
    """Provision, then start the fan-out and each hospital's subscriber, the indexer and the declarers of
    ``servers`` (:func:`start_index`), those not running."""
    provision_sharing(base, links, topics, servers)
    homes = ",".join(sorted(links))
    record = base.data_dir / "fanout-homes"
    if read_pid(base.data_dir, FANOUT) is not None and record.exists() and record.read_text() != homes:
        stop_process(base.data_dir, FANOUT, 30)  # a hospital joined or left: read the new set of home links
    if read_pid(base.data_dir, FANOUT) is None:
        start_process(base.data_dir, _spec(FANOUT, "streams.apply.fanout", base, "--homes", homes))
        record.write_text(homes)
    for hospital, link in links.items():
        if read_pid(link.data_dir, SUBSCRIBER) is None:
            start_process(link.data_dir, _spec(SUBSCRIBER, "streams.apply.subscriber", link, "--node", hospital))
    say(f"subscriptions: fan-out started; subscribers of {', '.join(links)} started "
        f"(feeds {feed_topic(base.topic_prefix, '<node>')})")
    start_index(base, servers, say)


def declarer_name(server: str) -> str:
    """The process name of a common server's declarer (NetworkPlan.subscription_processes)."""
    return f"declarer-{server}"


def start_index(base: Settings, servers: Mapping[str, str], say: Say) -> None:
    """Start the indexer and each common server's declarer (``servers``: server -> the settings node of its
    PostgreSQL), those not running; the indexer is restarted if the set of servers changed."""
    names = ",".join(servers)
    record = base.data_dir / "indexer-servers"
    if read_pid(base.data_dir, INDEXER) is not None and record.exists() and record.read_text() != names:
        stop_process(base.data_dir, INDEXER, 30)
    if read_pid(base.data_dir, INDEXER) is None:
        start_process(base.data_dir, _spec(INDEXER, "streams.apply.indexer", base, "--servers", names))
        record.write_text(names)
    for server, pg_node in servers.items():
        if read_pid(base.data_dir, declarer_name(server)) is None:
            start_process(base.data_dir, _spec(declarer_name(server), "streams.apply.declarer", base,
                                               "--server", server, "--pg-node", pg_node))
    say(f"patient index: indexer and declarers of {', '.join(servers)} started")


def stop_sharing(base: Settings, link_dirs: Mapping[str, Path], say: Say, fanout: bool = True) -> None:
    """Stop the subscribers of ``link_dirs`` and (unless ``fanout`` is False) the fan-out; each commits what
    it applied, the rest is consumed again at the next start."""
    for hospital, data_dir in link_dirs.items():
        if stop_process(data_dir, SUBSCRIBER, 30):
            say(f"[{hospital}] stopped {SUBSCRIBER}")
    if not fanout:
        return
    declarers = sorted(p.stem for p in run_dir(base.data_dir).glob(f"{declarer_name('*')}.pid"))
    for name in (FANOUT, INDEXER, *declarers):
        if stop_process(base.data_dir, name, 30):
            say(f"stopped {name}")
