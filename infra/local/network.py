"""A network on the embedded stack: one cloud, several hospitals (issue 14, docs/topology.md).

Each hospital's **home link** runs as a two-party stack of its own (:class:`infra.local.stack.Stack`)
in ``<data_dir>/links/<hospital>/``: the hospital plays ``local``; that institution's stores in the
cloud play ``remote``. So the matrix, version guard, conflict rule, modes and recovery report of a
home link are exactly today's. What the links share runs here, in ``<data_dir>``:

- the **cloud's PostgreSQL server** (``pg-remote``): every institution's databases on it, suffixed
  (``meta_hosp_a``), with roles of their own, plus the shared ``fructos_patient``;
- the **broker** and the **link proxy** in front of it, which cuts each link alone
  (``platsync link down --node <hospital>``): a link's client ids name it (``platsync-<link>.local-...``).

A **regional server** runs its own PostgreSQL (``pg-<region>``, in ``<data_dir>/pg/<region>``) holding its
read-only ``fructos_patient``; for each hospital below it, a replica worker (``worker-local_to_<region>``, run
with that hospital's link, in its data dir) reads the link's ``fructos_own`` topics of both sides and writes the
copy (streams/routing/replica.py). The region is a process set of its own: stopping it (``stop_region``)
leaves every home link running.

Each link's topics, consumer groups, principals and heartbeats carry its own prefix
(``platsync.<hospital>.local.meta``), so no process of one link ever subscribes to another
institution's topic. Ports: the network's own settings give the shared ones (``broker_port``,
``broker_listen_port``, ``nodes.remote.pg_port``); each link's are allocated once, at the first
``up``, and kept in ``<data_dir>/network.json``.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from infra.local.broker import Broker
from infra.local.broker_secrets import share_with_links
from infra.local.databases import postgres_instance, provision_side
from infra.local.fhir_runtime import fhir_up, provision_network_fhir, stop_fhir, worker_spec
from infra.local.link import link_data_dir
from infra.local.process import (
    ProcessError,
    ProcessSpec,
    free_port,
    log_path,
    read_pid,
    start_process,
    stop_process,
    wait_until,
)
from infra.local.recovery import resync_side
from infra.local.sharing_runtime import start_sharing, stop_sharing
from infra.local.stack import Stack, write_settings_file
from streams.apply.barrier import wait_synced
from streams.core.model import REPLICA_STORE, SIDES, replica_route
from streams.routing.matrix_model import load_matrix
from streams.runtime.connections import database_name
from streams.runtime.jsonfile import read_json, write_json
from streams.runtime.kafka_config import client_config
from streams.runtime.node_settings import NodeSettings
from streams.runtime.settings import LOOPBACK, Settings
from streams.topology.load import load_topology
from streams.topology.model import Topology
from streams.topology.plan import NetworkPlan, build_plan

Say = Callable[[str], None]
CLOUD_SIDE = "remote"  # the cloud plays the remote side of every home link
#: Per-link ports, allocated once: where each goes in the link's settings.
LINK_PORTS = ("pg_local", "keycloak_local", "mode_local", "api_local", "metrics_capture_local", "metrics_mode_local",
              "keycloak_remote", "mode_remote", "api_remote", "metrics_capture_remote", "metrics_mode_remote",
              "metrics_worker_local_to_remote", "metrics_worker_remote_to_local")


def network_file(data_dir: Path) -> Path:
    """The network's record in its data dir: topology file, links, each link's ports."""
    return data_dir / "network.json"


def is_network(data_dir: Path) -> bool:
    """True if ``data_dir`` holds a network (``platsync up --topology`` ran there)."""
    return network_file(data_dir).exists()


def tenant_suffix(hospital: str) -> str:
    """The suffix of a hospital's databases and roles on the cloud's server (``hosp-a`` -> ``_hosp_a``)."""
    return "_" + hospital.replace("-", "_")


def replica_metrics_port(region: str) -> str:
    """The name, in a link's recorded ports, of the metrics port of its replica worker feeding ``region``."""
    return f"metrics_worker_{replica_route(region)}"


def region_node(base: Settings, pg_port: int, db_suffix: str = "") -> NodeSettings:
    """A regional server's node settings: its PostgreSQL only (no Keycloak, no mode server, nothing captured),
    run by the network, not by a link's stack. In a link's settings ``db_suffix`` gives that link's replica
    worker database roles of its own there (``platsync_apply_hosp_a``); the replica store keeps its name."""
    return NodeSettings(pg_port=pg_port, pg_host=base.host, keycloak_port=0, mode_port=0, metrics_capture_port=0,
                        metrics_mode_port=0, pg_managed=False, db_suffix=db_suffix)


def link_settings(base: Settings, hospital: str, ports: dict[str, int], regions: tuple[str, ...] = (),
                  numbers: dict[str, dict[str, tuple[int, int]]] | None = None) -> Settings:
    """The two-party settings of one home link: the hospital as ``local``, its cloud stores as ``remote``,
    and the regional servers above the hospital (``regions``, nodes of ``base``) that its replica workers feed.
    ``numbers`` gives each side's patient and document number ranges (:meth:`Topology.home_link_numbers`).

    The broker (through the shared link proxy) is given as a cluster of its own, so the link's stack
    runs no broker; the cloud's and the regions' PostgreSQL servers are shared and not managed by it."""
    cloud = base.node(CLOUD_SIDE)
    local = NodeSettings(pg_port=ports["pg_local"], keycloak_port=ports["keycloak_local"],
                         mode_port=ports["mode_local"], api_port=ports.get("api_local", 0),
                         metrics_capture_port=ports["metrics_capture_local"],
                         metrics_mode_port=ports["metrics_mode_local"], **(numbers or {}).get("local", {}))
    remote = NodeSettings(pg_port=cloud.pg_port, pg_host=cloud.pg_host, keycloak_port=ports["keycloak_remote"],
                          mode_port=ports["mode_remote"], api_port=ports.get("api_remote", 0),
                          metrics_capture_port=ports["metrics_capture_remote"],
                          metrics_mode_port=ports["metrics_mode_remote"], db_suffix=tenant_suffix(hospital),
                          pg_managed=False, **(numbers or {}).get(CLOUD_SIDE, {}))
    return dataclasses.replace(
        base, data_dir=link_data_dir(base.data_dir, hospital), topic_prefix=f"{base.topic_prefix}.{hospital}",
        network_link=hospital, broker_bootstrap_servers=f"{base.host}:{base.broker_port}",
        nodes={"local": local, CLOUD_SIDE: remote,
               **{r: dataclasses.replace(base.node(r), db_suffix=tenant_suffix(hospital)) for r in regions}},
        metrics_worker_ports={"local_to_remote": ports["metrics_worker_local_to_remote"],
                              "remote_to_local": ports["metrics_worker_remote_to_local"],
                              **{replica_route(r): ports[replica_metrics_port(r)] for r in regions}})


class Network:
    """The embedded network of a topology: shared cloud server, broker and link proxy; one stack per link."""

    def __init__(self, settings: Settings, topology: Topology, port: Callable[[], int] = free_port) -> None:
        self.topology = topology
        self.plan: NetworkPlan = build_plan(topology, load_matrix())
        record = read_json(network_file(settings.data_dir))
        hospitals = [h.id for h in topology.hospitals]
        #: The regional servers (common nodes under the cloud), each with its PostgreSQL port, kept once chosen.
        self.regions = {n.id: record.get("regions", {}).get(n.id) or {"pg": port()}
                        for n in topology.nodes if n.kind == "common" and n.parent is not None}
        # The common servers declaring to the index name the sharing processes' Kafka principals (SASL users).
        servers = ",".join(self.plan.common_servers()) if self.plan.subscription_processes() else ""
        self.settings = dataclasses.replace(settings, network_servers=servers, nodes={
            **settings.nodes, **{r: region_node(settings, ports["pg"]) for r, ports in self.regions.items()}})
        #: Hospitals that left: their links stay stopped, the cloud keeps their stores (readable).
        self.left = [h for h in record.get("left", []) if h in hospitals]
        # A hospital keeps its ports for as long as the data dir lives, whatever file names the topology.
        known: dict[str, dict[str, int]] = record.get("links", {})
        self.ports: dict[str, dict[str, int]] = {}
        self.all_links: dict[str, Settings] = {}
        for h in hospitals:
            regions = self.regions_above(h)
            wanted = (*LINK_PORTS, *(replica_metrics_port(r) for r in regions))
            ports = dict(known.get(h, {}))
            ports.update({name: port() for name in wanted if name not in ports})
            self.ports[h] = ports
            self.all_links[h] = link_settings(self.settings, h, ports, regions, topology.home_link_numbers(h))
        self.broker = Broker(settings.host, settings.broker_port, settings.broker_listen_port)

    def region_gate(self, region: str) -> Settings:
        """The settings addressing a regional server's gate in the link proxy (``platsync link down --node``):
        cutting it cuts the region's replica workers off the broker, and nothing else."""
        if region not in self.regions:
            raise ProcessError(f"no regional server {region!r} in this network; known: {', '.join(self.regions)}")
        return dataclasses.replace(self.settings, data_dir=link_data_dir(self.settings.data_dir, region),
                                   network_link=region)

    def index_servers(self) -> dict[str, str]:
        """The common servers declaring to the patient index, each with the settings node of its PostgreSQL."""
        return {self.topology.root.id: CLOUD_SIDE, **{r: r for r in self.regions}}

    def regions_above(self, hospital: str) -> tuple[str, ...]:
        """The regional servers holding ``hospital``'s replicas, nearest first (its ancestors but the cloud)."""
        return tuple(n.id for n in self.topology.ancestors(hospital)[:-1])

    @classmethod
    def load(cls, settings: Settings) -> Network:
        """The network recorded in ``settings.data_dir`` (``platsync up --topology`` wrote it)."""
        record = read_json(network_file(settings.data_dir))
        if not record:
            raise ProcessError(f"no network in {settings.data_dir}: start one with 'platsync up --topology FILE'")
        return cls(settings, load_topology(Path(record["topology"])))

    @property
    def links(self) -> dict[str, Settings]:
        """The home links of the hospitals in the network (not those that left), by hospital."""
        return {h: s for h, s in self.all_links.items() if h not in self.left}

    def stacks(self) -> dict[str, Stack]:
        """Each home link's two-party stack, by hospital."""
        return {hospital: Stack(s) for hospital, s in self.links.items()}

    def link(self, hospital: str) -> Settings:
        """The settings of a hospital's home link (one that left included); a clear error naming the known ones."""
        if hospital not in self.all_links:
            raise ProcessError(f"no hospital {hospital!r} in this network; known: {', '.join(self.all_links)}")
        return self.all_links[hospital]

    def _record(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        earlier = read_json(network_file(self.settings.data_dir)).get("links", {})
        write_json(network_file(self.settings.data_dir), {
            "topology": self.topology.path, "root": self.topology.root.id,
            "hospitals": [h.id for h in self.topology.hospitals], "links": {**earlier, **self.ports},
            "regions": self.regions, "left": self.left})

    def _proxy_spec(self) -> ProcessSpec:
        s = self.settings
        return ProcessSpec(name="link", argv=[
            sys.executable, "-m", "infra.local.link", "--config", str(s.data_dir / "platsync.toml"),
            "--data-dir", str(s.data_dir), "--links", ",".join([*self.links, *self.regions])])

    def up(self, say: Say = print) -> None:
        """Start the shared parts, then every home link's stack; wait until all are ready."""
        s = self.settings
        self._record()
        write_settings_file(s)
        timeout = s.ready_timeout_s
        cloud = postgres_instance(s, CLOUD_SIDE)
        if not cloud.initialised():
            say(f"initialising the cloud's PostgreSQL in {cloud.pgdata}")
            cloud.init()
        cloud.start(timeout, say=say)
        say(f"cloud PostgreSQL ready on {s.host}:{cloud.port} (one database set per institution)")
        share_with_links(s, self.links.values())  # TLS/SASL: one CA and users file, read by the proxy at its start
        if s.broker_security_protocol != "plaintext":
            self.broker = dataclasses.replace(self.broker, client_options=client_config(s))
        if read_pid(s.data_dir, self.broker.name) is None:
            start_process(s.data_dir, self.broker.spec())
        if read_pid(s.data_dir, "link") is None:
            start_process(s.data_dir, self._proxy_spec())
        wait_until(self.broker.ready, timeout, "broker behind the link proxy",
                   alive=lambda: read_pid(s.data_dir, "link") is not None, log=log_path(s.data_dir, "link"))
        say(f"broker and link proxy ready on {LOOPBACK}:{s.broker_port} (links: {', '.join(self.links)})")
        for region in self.regions:
            self.start_region(region, say)
        for hospital, stack in self.stacks().items():
            say(f"--- home link {hospital}: {hospital} <-> {self.topology.root.id} "
                f"({stack.settings.data_dir})")
            stack.up(say=lambda m, h=hospital: say(f"[{h}] {m}"))
        if self.plan.subscription_processes():  # not with a single hospital: nobody to share with
            start_sharing(s, self.links, self.plan.subscription_topics(s.topic_prefix), self.index_servers(), say)
        if self.links:  # the cloud's FHIR worker: its shared store exists once a home link provisioned it
            provision_network_fhir(s)
            fhir_up(s, worker_spec(s), say)

    def down(self, say: Say = print, drain_timeout_s: float = 60.0) -> None:
        """Stop the subscriptions' processes, every link's stack (each drains first), then the proxy, the broker
        and the cloud's server."""
        stop_sharing(self.settings, {h: link.data_dir for h, link in self.all_links.items()}, say)
        stop_fhir(self.settings, say)
        for hospital, stack in self.stacks().items():
            stack.down(say=lambda m, h=hospital: say(f"[{h}] {m}"), drain_timeout_s=drain_timeout_s)
        for region in self.regions:
            self.stop_region(region, say)
        cloud = postgres_instance(self.settings, CLOUD_SIDE)
        for name, timeout_s, sig in (("link", 30, signal.SIGTERM), (self.broker.name, 30, signal.SIGTERM),
                                     (cloud.name, 60, cloud.stop_signal())):
            if stop_process(self.settings.data_dir, name, timeout_s, sig):
                say(f"stopped {name}")

    def start_region(self, region: str, say: Say = print) -> None:
        """Start (initialising it the first time) and provision a regional server's PostgreSQL: its read-only
        ``fructos_patient``. Its replica workers, run with each hospital's link, resume by themselves."""
        s = self.settings
        pg = postgres_instance(s, region)
        if not pg.initialised():
            say(f"initialising the PostgreSQL of regional server {region} in {pg.pgdata}")
            pg.init()
        pg.start(s.ready_timeout_s, say=say)
        feeding = [h for h, link in self.links.items() if region in link.replica_nodes]
        for hospital in feeding:  # the store, and each feeding link's own roles there (their secrets: the link's)
            provision_side(self.links[hospital], region)
        say(f"regional server {region}: PostgreSQL ready on {s.host}:{pg.port} (read-only {REPLICA_STORE} of "
            f"{', '.join(feeding) or 'no hospital yet'})")

    def stop_region(self, region: str, say: Say = print) -> bool:
        """Stop a regional server's PostgreSQL (a regional server down): the hospitals keep syncing with the
        cloud; the replica workers feeding it retry until it is back. True if it was running."""
        pg = postgres_instance(self.settings, region)
        stopped = stop_process(self.settings.data_dir, pg.name, 60, pg.stop_signal())
        if stopped:
            say(f"stopped {pg.name}")
        return stopped

    def join(self, hospital: str, say: Say = print, timeout_s: float = 300.0) -> list[str]:
        """Add ``hospital`` (listed in the topology) to the running network: start its home link, then load
        the records its stores already hold into the cloud. Returns what is still not synced (empty: done).

        Snapshot then streaming, with no gap and no duplicate: the link's captures stream from their new
        replication slots before the snapshot reads the stores, so a change made meanwhile is in the
        stream if not in the snapshot; a record in both is applied once (the sinks are version-guarded).
        """
        if hospital not in self.all_links:
            raise ProcessError(f"{hospital!r} is not a hospital of {self.topology.path or 'the topology'}: add it "
                               f"to the file first (known: {', '.join(self.all_links)})")
        if hospital in self.links and read_pid(self.links[hospital].data_dir, "capture-local") is not None:
            raise ProcessError(f"{hospital} is already in the network (its home link runs)")
        self.left = [h for h in self.left if h != hospital]
        self.up(say)
        link = self.links[hospital]
        say(f"[{hospital}] loading the records its stores already hold (snapshot; later changes stream)")
        for side in SIDES:  # the cloud's side too: a hospital that left and comes back may have records there
            resync_side(link, side, lambda m: say(f"[{hospital}] {m}"))
        pending = [f"{p.route}/{p.source_store}" for p in wait_synced(link, timeout_s)]
        say(f"[{hospital}] joined: " + ("every record is in the cloud" if not pending
                                         else "NOT synced yet: " + ", ".join(pending)))
        return pending

    def leave(self, hospital: str, say: Say = print, drain_timeout_s: float = 60.0) -> None:
        """Stop ``hospital``'s home link (after draining) and keep it stopped; the cloud keeps its stores."""
        link = self.link(hospital)
        if hospital in self.left:
            raise ProcessError(f"{hospital} already left the network")
        stop_sharing(self.settings, {hospital: link.data_dir}, say, fanout=False)
        Stack(link).down(say=lambda m: say(f"[{hospital}] {m}"), drain_timeout_s=drain_timeout_s)
        self.left.append(hospital)
        self._record()
        say(f"{hospital} left the network: its routes are stopped; the cloud keeps its stores "
            f"({', '.join(database_name(link, 'remote', s) for s in ('meta', 'fructos_own'))}, ...); "
            f"'platsync network join --node {hospital}' brings it back")
