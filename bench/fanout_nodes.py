"""Simulated subscribing hospitals for the fan-out benchmark (bench/fanout_bench.py).

A simulated hospital runs only what a subscription reaches: its own PostgreSQL with ``fructos_subscribed``
and the real subscriber process (``python -m streams.apply.subscriber``, with its notifier thread), on the
settings of a link named after it. It reaches the broker through the network's link proxy like a real
hospital's processes. No capture, worker, Keycloak or mode server runs for it: nothing it does is synced.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine

from connectors.stores.notifications import set_webhook
from connectors.stores.subscribed import SUBSCRIBED_STORE, create_subscribed_schema
from infra.local.databases import postgres_instance
from infra.local.network import Network
from infra.local.process import ProcessSpec, free_port, read_pid, start_process, stop_process
from infra.local.sharing_roles import grant_sharing_database
from infra.local.stack import write_settings_file
from streams.runtime.connections import dsn
from streams.runtime.kafka_config import client_config
from streams.runtime.node_settings import NodeSettings
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics

Say = Callable[[str], None]
HOSPITAL_SIDE = "local"
PROCESS = "subscriber"


def simulated_link(network: Network, node: str, data_dir: Path) -> Settings:
    """Link settings of a simulated hospital ``node``: a real hospital's, renamed, with a PostgreSQL of its own."""
    template = network.link(network.topology.hospitals[-1].id)
    local = NodeSettings(pg_port=free_port(), keycloak_port=0, mode_port=0, metrics_capture_port=0,
                         metrics_mode_port=0)
    return dataclasses.replace(template, data_dir=data_dir, topic_prefix=f"{network.settings.topic_prefix}.{node}",
                               network_link=node, nodes={**template.nodes, HOSPITAL_SIDE: local})


class SimulatedHospital:
    """One simulated subscribing hospital: its PostgreSQL and its subscriber process."""

    def __init__(self, network: Network, node: str, data_dir: Path) -> None:
        self.node = node
        self.settings = simulated_link(network, node, data_dir)
        self.pg = postgres_instance(self.settings, HOSPITAL_SIDE)

    def start(self, webhook_url: str) -> None:
        """Initialise and start its PostgreSQL, create its store and topics, set its webhook, start its subscriber."""
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.pg.initialised():
            self.pg.init()
        self.pg.start(s.ready_timeout_s)
        self.pg.ensure_databases((SUBSCRIBED_STORE,))
        engine = create_engine(dsn(s, HOSPITAL_SIDE, SUBSCRIBED_STORE))
        try:
            with engine.begin() as conn:
                create_subscribed_schema(conn)
                set_webhook(conn, webhook_url, "bench")
        finally:
            engine.dispose()
        grant_sharing_database(s, HOSPITAL_SIDE, SUBSCRIBED_STORE)  # its subscriber's own role, as on a hospital
        ensure_topics(client_config(s, "platsync-operator-bench"),
                      [f"{s.topic_prefix}.sub", f"{s.topic_prefix}.dlq.subscriber", self.notification_topic],
                      real_cluster=False)
        config = write_settings_file(s)
        start_process(s.data_dir, ProcessSpec(name=PROCESS, argv=[
            sys.executable, "-m", "streams.apply.subscriber", "--node", self.node, "--config", str(config),
            "--data-dir", str(s.data_dir)], env={"PGAPPNAME": f"{PROCESS}-{self.node}"}))

    @property
    def notification_topic(self) -> str:
        """Where its notifier publishes: ``<link prefix>.notifications`` (streams/apply/subscriber.py)."""
        return f"{self.settings.topic_prefix}.notifications"

    def pids(self) -> dict[str, int | None]:
        """Its processes by name, for the CPU and memory readings."""
        return {f"subscriber-{self.node}": read_pid(self.settings.data_dir, PROCESS),
                f"pg-{self.node}": read_pid(self.settings.data_dir, self.pg.name)}

    def stop(self) -> None:
        """Stop its subscriber, then its PostgreSQL."""
        stop_process(self.settings.data_dir, PROCESS, 30)
        stop_process(self.settings.data_dir, self.pg.name, 60, self.pg.stop_signal())
