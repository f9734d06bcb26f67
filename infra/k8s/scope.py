"""What one rendering covers: a deployment, a network plan, and the names of their resources.

The generator (``kafka.py``, ``workloads.py``, ``netpol.py``) takes every Kafka name from the plan
(:class:`streams.topology.plan.NetworkPlan`: topics, dead letters, groups, principals, the node of
each process) and every Kubernetes name from a :class:`Scope`:

- without a topology the plan is the default topology's (hospital ``local``, cloud ``remote``),
  whose names are today's two-party names, so the rendering is exactly today's;
- with a topology, every resource of an endpoint, route or node carries it in its name
  (``platsync-stamper-remote-hosp-a``, ``platsync-worker-hosp-a-to-region-1``) and its pods the
  labels ``platsync.io/node``, ``platsync.io/side`` (the endpoint's role) and ``platsync.io/link``
  (the hospital whose link it belongs to). Each pod reads its link's settings: the two-party
  settings of that hospital's home link (``topic_prefix = "<prefix>.<hospital>"``,
  ``network_link``, the cloud's databases with the tenant's ``db_suffix``), plus, on a regional
  server, the ``[nodes.<region>]`` table of the server it writes.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from infra.k8s.config import Deployment, DeploymentError, NodeConfig
from streams.ops.access_policy import default_plan
from streams.routing.matrix_model import load_matrix
from streams.runtime.node_settings import NodeSettings, alias_names
from streams.runtime.settings import Settings
from streams.topology.model import Topology
from streams.topology.plan import Endpoint, NetworkPlan, PlannedRoute, build_plan

CONFIG_PATH = "/etc/platsync/platsync.toml"
DATA_DIR = "/var/lib/platsync"
#: Broker client settings of every pod (streams/runtime/kafka_config.py): TLS + SCRAM-SHA-512 to Strimzi's
#: listener, the cluster CA from Strimzi's Secret. User and password: per pod (its KafkaUser).
BROKER_SECURITY = {"broker_security_protocol": "sasl_ssl", "broker_sasl_mechanism": "SCRAM-SHA-512",
                   "broker_ca_file": "/etc/kafka-ca/ca.crt"}
_DNS = re.compile(r"[^a-z0-9.-]")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def k8s_name(name: str) -> str:
    """A DNS-1123 resource name for ``name`` (``_`` -> ``-``, lower case)."""
    return _DNS.sub("-", name.lower()).strip("-.")


def res(name: str) -> str:
    """``name`` (an endpoint, route or node id) as part of a resource name: also without dots."""
    return k8s_name(name).replace(".", "-")


def toml_value(value: Any) -> str:
    """One TOML value (strings quoted and escaped)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_text(table: dict[str, Any], tables: dict[str, dict[str, Any]] | None = None) -> str:
    """Sorted ``key = value`` lines, then each ``[name]`` table; checked by parsing it back."""
    text = "".join(f"{k} = {toml_value(v)}\n" for k, v in sorted(table.items()))
    for name, values in (tables or {}).items():
        text += f"\n[{'.'.join(p if _BARE_KEY.match(p) else toml_value(p) for p in name.split('.'))}]\n"
        text += "".join(f"{k if _BARE_KEY.match(k) else toml_value(k)} = {toml_value(v)}\n"
                        for k, v in values.items())
    tomllib.loads(text)  # what the pods will parse
    return text


@dataclass(frozen=True)
class Scope:
    """A deployment under a network plan (the default topology's plan: today's deployment)."""

    dep: Deployment
    plan: NetworkPlan

    @property
    def is_default(self) -> bool:
        """True for the default topology: today's names, labels and file layout."""
        return self.plan.topology.is_default

    @property
    def prefix(self) -> str:
        """The deployment's topic prefix (each hospital's links extend it)."""
        return self.dep.settings.topic_prefix

    @property
    def root(self) -> str:
        """The cloud root node: the Kafka cluster, the registry and the cluster-wide resources."""
        return self.plan.topology.root.id

    @cached_property
    def nodes(self) -> tuple[str, ...]:
        """Every node with endpoints, in the plan's order (hospitals, the cloud, regional servers)."""
        return tuple(dict.fromkeys(e.node for e in self.plan.endpoints))

    def captures(self, nodes: frozenset[str] | tuple[str, ...]) -> list[Endpoint]:
        """The captured endpoints (a Kafka Connect, its connectors and a stamper each) on ``nodes``."""
        return [e for e in self.plan.endpoints if e.captured and e.node in nodes]

    def modes(self, nodes: frozenset[str] | tuple[str, ...]) -> list[Endpoint]:
        """The endpoints with a mode server (all but regional replicas) on ``nodes``."""
        return [e for e in self.plan.endpoints if e.role != "replica" and e.node in nodes]

    def routes(self, nodes: frozenset[str] | tuple[str, ...]) -> list[PlannedRoute]:
        """The routes whose worker runs on ``nodes`` (beside the stores it writes)."""
        return [r for r in self.plan.routes if self.plan.endpoint(r.target).node in nodes]

    def side(self, endpoint: str) -> str:
        """The endpoint's name in its link's settings: ``local``, ``remote`` or the regional node's id."""
        e = self.plan.endpoint(endpoint)
        return e.id if e.role == "replica" else e.role

    def route_tenant(self, route: PlannedRoute) -> str | None:
        """The hospital whose link a route belongs to (None only in a plan without hospitals)."""
        return self.plan.endpoint(route.source).tenant or self.plan.endpoint(route.target).tenant

    def in_link(self, process: str) -> tuple[str | None, str]:
        """(hospital of its link, the process's name in that link's stack) of a plan process; a sharing process
        (NetworkPlan.subscription_processes) runs with the network's own settings (None), a subscriber with its
        hospital's link's."""
        kind, _, name = process.partition("-")
        if kind in ("fanout", "indexer", "declarer"):
            return None, process
        if kind == "subscriber":
            return name, kind
        if kind == "worker":
            route = self.plan.route(name)
            return self.route_tenant(route), f"worker-{self.plan.in_link_name(route)}"
        endpoint = self.plan.endpoint(name)
        return endpoint.tenant, f"{kind}-{endpoint.role}"

    def route_topics(self, route: PlannedRoute) -> tuple[str, ...]:
        """The capture topics a route's worker reads (the plan's ``(endpoint, store)`` pairs: a replica
        worker reads both sides of its home link)."""
        return tuple(self.plan.topic(self.prefix, endpoint, store) for endpoint, store in route.reads)

    def labels(self, node: str, endpoint: str, tenant: str | None) -> dict[str, str]:
        """The pod labels placing a workload: its node, its endpoint's role and its link."""
        if self.is_default:
            return {"platsync.io/side": self.side(endpoint)}
        labels = {"platsync.io/node": node, "platsync.io/side": self.plan.endpoint(endpoint).role}
        if tenant is not None:
            labels["platsync.io/link"] = tenant
        return labels

    def node_label(self, node: str) -> dict[str, str]:
        """The label selecting a node's pods (``platsync.io/side`` in the default topology)."""
        return {"platsync.io/side": node} if self.is_default else {"platsync.io/node": node}

    def db_secret(self, endpoint: str) -> str:
        """The Secret with the database passwords of an endpoint's roles."""
        return f"platsync-db-{res(endpoint)}"

    def keycloak_secret(self, endpoint: str) -> str:
        """The Secret with the Keycloak admin and database passwords of an endpoint."""
        return f"platsync-keycloak-{res(endpoint)}"

    def settings_configmap(self, node: str, tenant: str | None) -> str:
        """The ConfigMap with the ``platsync.toml`` of a link's pods on one node (``tenant`` None: of the network's
        own processes there, the sharing processes but a subscriber)."""
        if self.is_default:
            return "platsync-settings"
        if tenant is None:
            return f"platsync-settings-{res(node)}"
        return f"platsync-settings-{res(tenant)}" if node == tenant else f"platsync-settings-{res(node)}-{res(tenant)}"

    def node_config(self, node: str) -> NodeConfig:
        """Where a node's databases are: ``[k8s.nodes.<id>]``, else the settings' ``remote`` node for
        the cloud root and their ``local`` node for a hospital called ``local``."""
        cfg, s = self.dep.config, self.dep.settings
        if node in cfg.nodes:
            return cfg.nodes[node]
        side = "remote" if node == self.root else "local" if node == "local" else None
        if side is None:
            raise KeyError(node)
        n = s.node(side)
        return NodeConfig(s.pg_host(side), cfg.remote_db_cidrs if side == "remote" else cfg.local_db_cidrs,
                          s.pg_port(side), n.keycloak_url, n.keycloak_db,
                          pg_major=cfg.remote_pg_major if side == "remote" else cfg.local_pg_major)

    def link_settings(self, tenant: str | None) -> Settings:
        """The two-party settings of a hospital's home link (the deployment's settings by default)."""
        if self.is_default or tenant is None:
            return self.dep.settings
        return self._links[tenant]

    @cached_property
    def _links(self) -> dict[str, Settings]:
        s, links = self.dep.settings, {}
        root = self.node_config(self.root)
        for hospital in self.plan.topology.hospitals:
            here, cloud = self.node_config(hospital.id), self.plan.endpoint(self.plan.home_endpoints(hospital.id)[1])
            local = dataclasses.replace(s.node("local"), pg_host=here.pg_host, pg_port=here.pg_port,
                                        keycloak_url=here.keycloak_url, keycloak_db=here.keycloak_db)
            # The tenant's Keycloak accounts are its own database on the cloud's server (the plan's
            # keycloak_<h>), never the cloud's configured Keycloak database of the default deployment.
            suffix = cloud.database("meta").removeprefix("meta")
            remote = dataclasses.replace(s.node("remote"), pg_host=root.pg_host, pg_port=root.pg_port,
                                         keycloak_url=root.keycloak_url, keycloak_db="", db_suffix=suffix)
            links[hospital.id] = dataclasses.replace(
                s, topic_prefix=self.plan.link_prefix(self.prefix, hospital.id), network_link=hospital.id,
                nodes={"local": local, "remote": remote})
        return links

    def node_settings(self, node: str, tenant: str | None) -> Settings:
        """A link's settings as its pods on ``node`` read them: on a regional server, with its node table."""
        s = self.link_settings(tenant)
        if self.is_default or self.plan.topology.node(node).kind == "hospital" or node == self.root:
            return s
        cfg, here = self.dep.config, self.node_config(node)
        region = NodeSettings(pg_port=here.pg_port, pg_host=here.pg_host, keycloak_port=cfg.keycloak_ports[0],
                              mode_port=cfg.mode_port, metrics_capture_port=cfg.container_port,
                              metrics_mode_port=cfg.container_port)
        workers = {self.plan.in_link_name(r): cfg.container_port for r in self.routes((node,))
                   if self.route_tenant(r) == tenant}
        return dataclasses.replace(s, nodes={**s.nodes, node: region},
                                   metrics_worker_ports={**s.metrics_worker_ports, **workers})

    def settings_text(self, node: str, tenant: str | None) -> str:
        """The ``platsync.toml`` of a link's pods on ``node`` (network only; see workloads.settings_toml)."""
        s = self.node_settings(node, tenant)
        aliases = alias_names()
        table = {k: v for k, v in self.dep.settings_table.items() if k not in aliases}
        table.update({"data_dir": DATA_DIR, **BROKER_SECURITY, "topic_prefix": s.topic_prefix,
                      "network_link": s.network_link})
        tables: dict[str, dict[str, Any]] = {}
        for name, n in s.nodes.items():
            values: dict[str, Any] = {"pg_host": n.pg_host, "pg_port": n.pg_port}
            if name not in ("local", "remote"):  # no embedded defaults for a regional server
                values.update(keycloak_port=n.keycloak_port, mode_port=n.mode_port,
                              metrics_capture_port=n.metrics_capture_port, metrics_mode_port=n.metrics_mode_port)
            values.update({k: getattr(n, k) for k in ("keycloak_url", "keycloak_db", "db_suffix") if getattr(n, k)})
            tables[f"nodes.{name}"] = values
        extra = {k: v for k, v in s.metrics_worker_ports.items() if k not in self.dep.settings.metrics_worker_ports}
        if extra:
            tables["metrics_worker_ports"] = extra
        label = (f"link {tenant}" + ("" if node == tenant else f" as node {node} runs it") if tenant is not None
                 else f"the network's own processes on node {node}")
        return (f"# generated by platsync k8s render from infra/k8s/deployment.toml [settings] and [k8s.nodes]: "
                f"{label}\n" + toml_text(table, tables))


def make_scope(dep: Deployment, topology: Topology | None = None) -> Scope:
    """The scope of ``dep`` under ``topology`` (default: today's two-party deployment).

    Raises :class:`DeploymentError` naming every node whose databases the deployment does not place."""
    plan = default_plan() if topology is None else build_plan(topology, load_matrix())
    scope = Scope(dep, plan)
    faults = []
    for node in scope.nodes:
        try:
            scope.node_config(node)
        except KeyError:
            faults.append(f"node {node!r} of the topology has no [k8s.nodes.{node}] table "
                          "(pg_host, db_cidrs; optional pg_port, keycloak_url, keycloak_db)")
    if faults:
        raise DeploymentError(str(dep.source), faults)
    return scope
