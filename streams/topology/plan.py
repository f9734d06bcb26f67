"""What a topology means for the engine: endpoints, databases, routes, topics, processes (pure).

An **endpoint** is one set of stores with its own change capture and its own topics, the unit that
plays ``local`` or ``remote`` in the two-party protocol:

- each hospital is an endpoint (its id is the node id; role ``local``);
- the cloud holds, per hospital, that institution's own stores (自医療機関 META, FRUCtoS, Keycloak
  accounts): one endpoint per hospital (role ``remote``), called ``<cloud>.<hospital>``, or just
  ``remote`` in the default topology, so that every name of today's deployment stays as it is;
- a regional server is an endpoint holding read-only replicas only (nothing captured).

**Multi-tenant cloud: one database per institution.** The cloud's PostgreSQL server holds each
hospital's own stores in databases of their own (``meta_hosp_a``, ``fructos_own_hosp_a``,
``keycloak_hosp_a``) and one shared ``fructos_patient`` (患者管理FRUCtoS) that every home link
writes into and none captures. Separate databases make isolation structural: each institution has
its own replication slots, publications, topics and principals, a capture can only ever see its own
institution's rows, and the sinks, conflict rule and recovery report of the two-party protocol run
unchanged on each home link. (Rows keyed by institution in shared databases would need a row filter
in every capture, every sink, every query of the recovery report, and a mistake in any one of them
would leak.) In the default topology the cloud's databases keep their names (``meta``, ...) and the
shared store is captured as today.

Names: each home link runs as a two-party stack (infra/local/network.py) whose names carry the link
prefix ``<prefix>.<hospital>`` (just ``<prefix>`` in the default topology, so that it yields exactly
today's names): topics ``<link prefix>.<local|remote>.<store>``, dead letters ``<link
prefix>.dlq.<direction>``, consumer groups ``<link prefix>-<direction>``, heartbeats ``<link
prefix>.heartbeat``, Kafka users ``<link prefix>-capture-local``. In the plan, routes are identified
as ``<source endpoint>_to_<target endpoint>`` (``local_to_remote`` in the default) and processes as
``capture-<endpoint>``, ``worker-<route>``, ``mode-<endpoint>``, ``pg-<node>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from streams.core.model import CAPTURED_STORES, SIDE_STORES
from streams.routing.matrix_model import Matrix
from streams.sharing.index import index_topic
from streams.topology.model import CLOUD_ROLE, HOSPITAL_ROLE, REPLICA_STORE, Link, Topology

#: The cloud's store shared by all institutions (written by every home link, captured by none).
SHARED_STORE = "fructos_patient"


@dataclass(frozen=True)
class Endpoint:
    """One set of stores with its own capture: a hospital, a hospital's stores in the cloud, a regional server."""

    id: str
    node: str  # the node whose servers hold these stores
    role: str  # "local" (hospital), "remote" (the cloud side of a home link), "replica" (regional server)
    tenant: str | None  # the hospital whose records these stores hold (None: a regional server's replicas)
    stores: tuple[str, ...]  # stores present
    captured: tuple[str, ...]  # stores captured into topics
    databases: tuple[tuple[str, str], ...]  # (store, database name) for the stores that are databases

    def database(self, store: str) -> str:
        """The PostgreSQL database holding ``store`` (``keycloak``: Keycloak's account tables)."""
        for name, database in self.databases:
            if name == store:
                return database
        raise KeyError(f"endpoint {self.id} has no store {store!r} (it has {', '.join(self.stores)})")


@dataclass(frozen=True)
class PlannedRoute:
    """One direction of one link, applied by one worker into the target endpoint's stores."""

    name: str
    link: str
    direction: str  # the matrix direction: local_to_remote or remote_to_local
    source: str  # endpoint id
    target: str  # endpoint id
    api_ids: tuple[str, ...]
    target_stores: tuple[str, ...]  # the stores this route may write
    reads: tuple[tuple[str, str], ...]  # (endpoint, captured store) whose topics the worker reads, and nothing more


@dataclass(frozen=True)
class NetworkPlan:
    """Everything the engine runs for a topology, named (see the module docstring)."""

    topology: Topology
    endpoints: tuple[Endpoint, ...]
    routes: tuple[PlannedRoute, ...]
    links: tuple[Link, ...]

    @cached_property
    def _by_id(self) -> dict[str, Endpoint]:
        return {e.id: e for e in self.endpoints}

    def endpoint(self, endpoint_id: str) -> Endpoint:
        """The endpoint called ``endpoint_id``; ``KeyError`` naming the known ones."""
        try:
            return self._by_id[endpoint_id]
        except KeyError:
            raise KeyError(f"no endpoint {endpoint_id!r}; known: {', '.join(self._by_id)}") from None

    def route(self, name: str) -> PlannedRoute:
        """The route called ``name``."""
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(f"no route {name!r}; known: {', '.join(r.name for r in self.routes)}")

    def home_endpoints(self, hospital: str) -> tuple[str, str]:
        """(hospital endpoint, its cloud endpoint): the two parties of the hospital's home link."""
        return hospital, cloud_endpoint_id(self.topology, hospital)

    def link_prefix(self, prefix: str, tenant: str | None) -> str:
        """The names' prefix of one hospital's links: ``prefix`` in the default topology, else
        ``<prefix>.<hospital>`` (each home link runs as a two-party stack with that topic prefix)."""
        return prefix if self.topology.is_default or tenant is None else f"{prefix}.{tenant}"

    def _route_tenant(self, route: PlannedRoute) -> str | None:
        return self.endpoint(route.source).tenant or self.endpoint(route.target).tenant

    def in_link_name(self, route: PlannedRoute) -> str:
        """A route's name inside its link's stack: the matrix direction, or ``local_to_<regional>``."""
        return route.direction if self.endpoint(route.target).role != "replica" else f"local_to_{route.target}"

    def topic(self, prefix: str, endpoint: str, store: str) -> str:
        """Topic of the changes captured from ``store`` of ``endpoint`` (``<link prefix>.<role>.<store>``)."""
        e = self.endpoint(endpoint)
        if store not in e.captured:
            raise KeyError(f"{store} of {endpoint} is not captured")
        return f"{self.link_prefix(prefix, e.tenant)}.{e.role}.{store}"

    def topics_of(self, prefix: str, endpoint: str) -> tuple[str, ...]:
        """Every capture topic of an endpoint."""
        return tuple(self.topic(prefix, endpoint, s) for s in self.endpoint(endpoint).captured)

    def heartbeat_topic(self, prefix: str, endpoint: str) -> str:
        """The heartbeat topic of the home link ``endpoint`` belongs to (one per link)."""
        return f"{self.link_prefix(prefix, self.endpoint(endpoint).tenant)}.heartbeat"

    def dead_letter_topic(self, prefix: str, route: str) -> str:
        """The dead-letter topic of a route."""
        r = self.route(route)
        return f"{self.link_prefix(prefix, self._route_tenant(r))}.dlq.{self.in_link_name(r)}"

    def consumer_group(self, prefix: str, route: str) -> str:
        """The consumer group (Faust app id) of a route's worker."""
        r = self.route(route)
        return f"{self.link_prefix(prefix, self._route_tenant(r))}-{self.in_link_name(r)}"

    def mode_group(self, endpoint: str) -> str:
        """The client id and consumer group of an endpoint's mode server (``Settings.client_tag``)."""
        e = self.endpoint(endpoint)
        tag = e.role if self.topology.is_default or e.tenant is None else f"{e.tenant}.{e.role}"
        return f"platsync-{tag}-mode"

    def principal(self, prefix: str, process: str) -> str:
        """The Kafka user of a process of the plan (``<link prefix>-<process in its link>``)."""
        if process in ("operator", "fanout", "indexer"):
            return f"{prefix}-{process}"
        kind, _, name = process.partition("-")
        if kind == "subscriber":
            return f"{self.link_prefix(prefix, name)}-subscriber"
        if kind == "declarer":
            return f"{prefix}-declarer-{name}"
        if kind == "worker":
            r = self.route(name)
            return f"{self.link_prefix(prefix, self._route_tenant(r))}-worker-{self.in_link_name(r)}"
        e = self.endpoint(name)
        return f"{self.link_prefix(prefix, e.tenant)}-{kind}-{e.role}"

    def feed_topic(self, prefix: str, hospital: str) -> str:
        """A subscriber's feed (docs/sharing.md): ``<link prefix>.sub``, the only topic of other institutions'
        records a hospital may read, and only what its subscriptions entitle it to."""
        return f"{self.link_prefix(prefix, hospital)}.sub"

    def fanout_dead_letter_topic(self, prefix: str) -> str:
        """The fan-out's dead letters (captured events it could not decode): the cloud's, of every link."""
        return f"{prefix}.dlq.fanout"

    def subscriber_dead_letter_topic(self, prefix: str, hospital: str) -> str:
        """A subscriber's dead letters (feed messages its store refused)."""
        return f"{self.link_prefix(prefix, hospital)}.dlq.subscriber"

    def notification_topic(self, prefix: str, hospital: str) -> str:
        """A subscriber's notifications (``<link prefix>.notifications``)."""
        return f"{self.link_prefix(prefix, hospital)}.notifications"

    def index_topic(self, prefix: str, server: str) -> str:
        """A common server's declarations to the patient index (``<prefix>.index.<server>``, docs/sharing.md)."""
        return index_topic(prefix, server)

    def indexer_dead_letter_topic(self, prefix: str) -> str:
        """The indexer's dead letters (messages on an index topic that are not that server's declarations)."""
        return f"{prefix}.dlq.indexer"

    def common_servers(self) -> tuple[str, ...]:
        """The common servers (the cloud, then the regional servers): each declares to the patient index."""
        return tuple(n.id for n in self.topology.nodes if n.kind == "common")

    def subscription_processes(self) -> tuple[str, ...]:
        """The processes of sharing (docs/sharing.md): the fan-out (cloud), each hospital's subscriber, the
        patient index's indexer (cloud) and each common server's declarer; none in the default topology."""
        if self.topology.is_default:
            return ()
        return ("fanout", *(f"subscriber-{h.id}" for h in self.topology.hospitals), "indexer",
                *(f"declarer-{n}" for n in self.common_servers()))

    def subscription_topics(self, prefix: str) -> tuple[str, ...]:
        """Every topic of sharing: each hospital's feed, dead letters and notifications, the fan-out's dead
        letters, each common server's index topic and the indexer's dead letters."""
        if self.topology.is_default:
            return ()
        return (*(t for h in self.topology.hospitals for t in (self.feed_topic(prefix, h.id),
                                                                self.subscriber_dead_letter_topic(prefix, h.id),
                                                                self.notification_topic(prefix, h.id))),
                self.fanout_dead_letter_topic(prefix),
                *(self.index_topic(prefix, n) for n in self.common_servers()),
                self.indexer_dead_letter_topic(prefix))

    def node_of_process(self, process: str) -> str:
        """The node a process of the plan runs on (a worker runs beside the stores it writes)."""
        if process in ("fanout", "indexer"):
            return self.topology.root.id
        kind, _, name = process.partition("-")
        if kind in ("subscriber", "declarer"):
            return self.topology.node(name).id
        if kind in ("capture", "mode"):
            return self.endpoint(name).node
        if kind == "worker":
            return self.endpoint(self.route(name).target).node
        if kind == "pg":
            return self.topology.node(name).id
        raise KeyError(f"unknown process {process!r}")

    def processes(self) -> tuple[str, ...]:
        """Every engine process: databases, captures, workers, mode servers (start order)."""
        return (
            *(f"pg-{n.id}" for n in self.topology.nodes),
            *(f"capture-{e.id}" for e in self.endpoints if e.captured),
            *(f"worker-{r.name}" for r in self.routes),
            *(f"mode-{e.id}" for e in self.endpoints if e.role != "replica"),
        )


def _slug(node_id: str) -> str:
    """A node id as part of a PostgreSQL database name (ids may hold ``-``)."""
    return node_id.replace("-", "_")


def cloud_endpoint_id(topology: Topology, hospital: str) -> str:
    """The id of a hospital's own stores in the cloud: ``remote`` in the default topology."""
    return topology.root.id if topology.is_default else f"{topology.root.id}.{hospital}"


def _endpoints(topology: Topology) -> list[Endpoint]:
    default = topology.is_default
    found: list[Endpoint] = []
    for hospital in topology.hospitals:
        stores = SIDE_STORES[HOSPITAL_ROLE]
        found.append(Endpoint(hospital.id, hospital.id, HOSPITAL_ROLE, hospital.id, stores,
                              CAPTURED_STORES[HOSPITAL_ROLE], tuple((s, s) for s in stores)))
    for hospital in topology.hospitals:
        stores = SIDE_STORES[CLOUD_ROLE]
        if default:
            databases = tuple((s, s) for s in stores)
            captured = CAPTURED_STORES[CLOUD_ROLE]
        else:
            databases = tuple((s, s if s == SHARED_STORE else f"{s}_{_slug(hospital.id)}") for s in stores)
            captured = tuple(s for s in CAPTURED_STORES[CLOUD_ROLE] if s != SHARED_STORE)
        found.append(Endpoint(cloud_endpoint_id(topology, hospital.id), topology.root.id, CLOUD_ROLE, hospital.id,
                              stores, captured, databases))
    for node in topology.nodes:
        if node.kind == "common" and node.parent is not None:
            found.append(Endpoint(node.id, node.id, "replica", None, (REPLICA_STORE,), (),
                                  ((REPLICA_STORE, REPLICA_STORE),)))
    return found


def build_plan(topology: Topology, matrix: Matrix) -> NetworkPlan:
    """The network plan of a validated topology under a validated matrix."""
    links = topology.links(matrix)
    endpoints = _endpoints(topology)
    captured = {e.id: e.captured for e in endpoints}
    routes: list[PlannedRoute] = []
    for link in links:
        if link.kind == "home":
            parties = {HOSPITAL_ROLE: link.lower, CLOUD_ROLE: cloud_endpoint_id(topology, link.lower)}
            for direction in matrix.directions:
                source, target = parties[direction.source_side], parties[direction.target_side]
                stores = tuple(sorted({s for r in direction.routes for s in r.target}))
                routes.append(PlannedRoute(f"{source}_to_{target}", link.name, direction.name, source, target,
                                           direction.api_ids, stores, tuple((source, s) for s in captured[source])))
        else:
            # A regional server reads only the topics that feed its replica store (fructos_own), of both parties
            # of the hospital's home link (each captures what was first written on it), never META or Keycloak.
            feed = matrix.feed_source(REPLICA_STORE)
            parties = (link.lower, cloud_endpoint_id(topology, link.lower))
            routes.append(PlannedRoute(f"{link.lower}_to_{link.upper}", link.name, link.routes[0].direction,
                                       link.lower, link.upper, tuple(dict.fromkeys(r.api_id for r in link.routes)),
                                       (REPLICA_STORE,),
                                       tuple((e, s) for e in parties for s in captured[e] if s == feed)))
    return NetworkPlan(topology, tuple(endpoints), tuple(routes), links)


def isolation_faults(plan: NetworkPlan, readable: dict[str, set[str]], prefix: str) -> list[str]:
    """Where a hospital's processes could read another institution's records (empty: isolated).

    ``readable`` maps each process to the topics its principal may read (from the ACLs). A topic
    carries the records of the endpoint it is named after; a process running on hospital H may read
    only topics of H's two home-link endpoints and H's heartbeats.
    """
    owner: dict[str, str | None] = {}
    for endpoint in plan.endpoints:
        for topic in plan.topics_of(prefix, endpoint.id):
            owner[topic] = endpoint.tenant
    for hospital in plan.topology.hospitals if plan.subscription_processes() else ():
        # What its subscriptions entitle it to (and the feed messages its store refused).
        owner[plan.feed_topic(prefix, hospital.id)] = hospital.id
        owner[plan.subscriber_dead_letter_topic(prefix, hospital.id)] = hospital.id
        owner[plan.notification_topic(prefix, hospital.id)] = hospital.id
    for server in plan.common_servers() if plan.subscription_processes() else ():
        owner[plan.index_topic(prefix, server)] = "every institution"  # the patient index: no hospital reads it
    faults = []
    for process, topics in sorted(readable.items()):
        node = plan.node_of_process(process)
        if plan.topology.node(node).kind != "hospital":
            continue
        for topic in sorted(topics):
            tenant = owner.get(topic)
            if topic in owner and tenant != node:
                faults.append(f"{process} on hospital {node} may read {topic} (records of {tenant})")
            elif topic not in owner and not topic.startswith(f"{prefix}.heartbeat") \
                    and not topic.startswith(f"{prefix}.dlq."):
                faults.append(f"{process} on hospital {node} may read {topic}, which the plan does not know")
    for route in plan.routes:
        target = plan.endpoint(route.target)
        if target.role == HOSPITAL_ROLE and plan.endpoint(route.source).tenant != target.tenant:
            faults.append(f"route {route.name} writes hospital {target.id} from another institution")
    return faults
