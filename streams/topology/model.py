"""The network topology as an immutable model, and the links it implies (pure: no I/O, no Kafka).

A topology is a tree of **nodes**. The root is the cloud, a ``common`` node; regional servers are
``common`` nodes under it (one or more levels); hospitals are ``hospital`` leaves. A hospital
never has children.

Every record has a **home institution**, the hospital that owns it. Its writable copies are the
hospital's stores and that hospital's own-institution stores in the cloud; the two are linked by
the two-party matrix protocol (seed 000, ``streams/routing/matrix.toml``) with the hospital in the
``local`` role and the cloud in the ``remote`` role. Conflicts therefore stay two-party. Every
other copy is a read-only replica, fed one way. :meth:`Topology.links` derives two kinds of link:

- a **home link** per hospital, bidirectional: the matrix's ``local_to_remote`` routes carry the
  hospital's changes to the cloud, its ``remote_to_local`` routes the cloud's changes back.
  The cloud's shared ``fructos_patient`` (患者管理FRUCtoS) is fed by the home links, as today.

  *Decision:* a hospital's home link always goes **directly to the cloud root**, even when its
  parent is a regional server. A regional server is one more machine that can be down or cut off;
  routing the home link through it would stop the hospital's sync with the cloud whenever it is.
  The parent only decides which regional servers hold the hospital's replicas.
- a **replica link** from each hospital to each ``common`` node above it other than the root
  (its regional servers, nearest first), one way: the regional server's ``fructos_patient``
  receives, read-only, what the cloud's ``fructos_patient`` holds of the hospital, whichever party
  of the home link wrote it -- the hospital's changes of the ``local_to_remote`` routes whose target
  lists ``fructos_patient``, and the cloud's own writes of the ``remote_to_local`` routes whose
  source lists it (PRV_USR_001 and PRV_DOC_009 both ways in today's matrix; derived from the
  matrix, never listed here; streams/routing/replica.py routes them).

Each node also owns two disjoint **number ranges**, for patient numbers (9 digits) and document
numbers (10 digits), so that every node can number records without coordination (see
``connectors/stores/serials.py`` and ``docs/topology.md``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from streams.core.model import REPLICA_STORE, ROUTES
from streams.routing.matrix_model import Matrix

NODE_KINDS: tuple[str, ...] = ("hospital", "common")
LINK_KINDS: tuple[str, ...] = ("home", "replica")

#: The matrix roles on a home link: the hospital plays ``local``, the cloud root ``remote``.
HOSPITAL_ROLE = "local"
CLOUD_ROLE = "remote"

#: The numbered serials of a node: field name -> digits of the printed number.
SERIAL_WIDTHS: dict[str, int] = {"patient_numbers": 9, "document_numbers": 10}

#: The default topology: today's two-party deployment, with its ids and number ranges.
DEFAULT_ROOT_ID = "remote"
DEFAULT_HOSPITAL_ID = "local"


@dataclass(frozen=True, order=True)
class NumberRange:
    """An inclusive range ``lo..hi`` of serial numbers a node may draw."""

    lo: int
    hi: int

    def overlaps(self, other: NumberRange) -> bool:
        """True when the two ranges share at least one number."""
        return self.lo <= other.hi and other.lo <= self.hi

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"


#: Today's ranges (connectors/stores/serials.py): the default topology's, per node id.
DEFAULT_NUMBERS: dict[str, dict[str, NumberRange]] = {
    DEFAULT_HOSPITAL_ID: {
        "patient_numbers": NumberRange(1, 499_999_999),
        "document_numbers": NumberRange(1, 4_999_999_999),
    },
    DEFAULT_ROOT_ID: {
        "patient_numbers": NumberRange(500_000_000, 999_999_999),
        "document_numbers": NumberRange(5_000_000_000, 9_999_999_999),
    },
}


@dataclass(frozen=True)
class Node:
    """One site: a hospital (a leaf) or a common server (the cloud root or a regional server)."""

    id: str
    kind: str  # one of NODE_KINDS
    parent: str | None  # None only for the root
    institution: str | None  # 10-digit 医療機関コード, when known
    patient_numbers: NumberRange
    document_numbers: NumberRange

    def numbers(self, serial: str) -> NumberRange:
        """The node's range for ``serial`` (a key of :data:`SERIAL_WIDTHS`)."""
        if serial not in SERIAL_WIDTHS:
            raise KeyError(serial)
        value: NumberRange = getattr(self, serial)
        return value


@dataclass(frozen=True)
class LinkRoute:
    """What one API's change carries over a link: from which stores of which node, into which."""

    direction: str  # the matrix direction it comes from: local_to_remote or remote_to_local
    api_id: str
    source_node: str
    source: tuple[str, ...]  # stores the API writes on the source node (the matrix's source)
    target_node: str
    target: tuple[str, ...]  # stores the sync writes on the target node


@dataclass(frozen=True)
class Link:
    """A home link (hospital <-> cloud root, both ways) or a replica link (hospital -> regional)."""

    name: str  # home.<hospital> or replica.<hospital>.<common node>
    kind: str  # one of LINK_KINDS
    upper: str  # the common node (the root for a home link)
    lower: str  # the hospital
    routes: tuple[LinkRoute, ...]

    @property
    def one_way(self) -> bool:
        """Replica links only carry the hospital's records up; home links carry both ways."""
        return self.kind == "replica"

    @property
    def directions(self) -> tuple[str, ...]:
        """The matrix directions this link carries, in route order."""
        return tuple(dict.fromkeys(r.direction for r in self.routes))


@dataclass(frozen=True)
class Topology:
    """A validated topology: nodes in file order (see :func:`streams.topology.load.load_topology`)."""

    nodes: tuple[Node, ...]
    path: str = field(default="", compare=False)  # the file it was loaded from; "" when built in code

    @property
    def root(self) -> Node:
        """The cloud: the one node without a parent."""
        return next(n for n in self.nodes if n.parent is None)

    @property
    def hospitals(self) -> tuple[Node, ...]:
        """The hospital nodes, in file order."""
        return tuple(n for n in self.nodes if n.kind == "hospital")

    @property
    def is_default(self) -> bool:
        """Exactly today's two-party deployment: hospital ``local`` under root ``remote``, today's ranges.

        Institution codes are information about the nodes, not part of the shape: they don't count.
        """
        shape = {(n.id, n.kind, n.parent, n.patient_numbers, n.document_numbers) for n in self.nodes}
        expected = {
            (DEFAULT_ROOT_ID, "common", None, *DEFAULT_NUMBERS[DEFAULT_ROOT_ID].values()),
            (DEFAULT_HOSPITAL_ID, "hospital", DEFAULT_ROOT_ID, *DEFAULT_NUMBERS[DEFAULT_HOSPITAL_ID].values()),
        }
        return len(self.nodes) == 2 and shape == expected

    def node(self, node_id: str) -> Node:
        """The node called ``node_id``; ``KeyError`` if there is none."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def children(self, node_id: str) -> tuple[Node, ...]:
        """The nodes whose parent is ``node_id``, in file order."""
        return tuple(n for n in self.nodes if n.parent == node_id)

    def ancestors(self, node_id: str) -> tuple[Node, ...]:
        """The nodes above ``node_id``, nearest first, the root last."""
        found: list[Node] = []
        parent = self.node(node_id).parent
        while parent is not None:
            found.append(self.node(parent))
            parent = found[-1].parent
        return tuple(found)

    def walk(self) -> Iterator[tuple[int, Node]]:
        """``(depth, node)`` depth-first from the root, children in file order."""

        def visit(node: Node, depth: int) -> Iterator[tuple[int, Node]]:
            yield depth, node
            for child in self.children(node.id):
                yield from visit(child, depth + 1)

        return visit(self.root, 0)

    def home_link_numbers(self, hospital_id: str) -> dict[str, dict[str, tuple[int, int]]]:
        """The number ranges of the two sides of a hospital's home link, per matrix role, as the
        ``(lo, hi)`` values of the link's node settings (``patient_numbers``, ``document_numbers``).

        ``local`` is the hospital, with its own ranges. ``remote`` is that hospital's stores in the
        cloud, with the cloud root's ranges: the cloud draws from its own range for every institution,
        in each institution's own sequence, so what the cloud numbers is unique per home institution
        only (global uniqueness of cloud-drawn numbers would need the cloud's range split per tenant;
        docs/topology.md). ``KeyError`` for an unknown node, ``ValueError`` for a common node.
        """
        hospital = self.node(hospital_id)
        if hospital.kind != "hospital":
            raise ValueError(f"{hospital_id} is a {hospital.kind} node: only a hospital has a home link")
        return {role: {serial: (node.numbers(serial).lo, node.numbers(serial).hi) for serial in SERIAL_WIDTHS}
                for role, node in ((HOSPITAL_ROLE, hospital), (CLOUD_ROLE, self.root))}

    def links(self, matrix: Matrix) -> tuple[Link, ...]:
        """Every link, per hospital in file order: its home link, then its replica links nearest first."""
        root = self.root
        replicated = tuple(
            r for r in matrix.direction(_route(HOSPITAL_ROLE, CLOUD_ROLE)).routes if REPLICA_STORE in r.target
        )
        # What the cloud writes into its shared store itself, for the hospital (the API's cloud-side source).
        written_by_cloud = tuple(
            r for r in matrix.direction(_route(CLOUD_ROLE, HOSPITAL_ROLE)).routes if REPLICA_STORE in r.source
        )
        links: list[Link] = []
        for hospital in self.hospitals:
            home: list[LinkRoute] = []
            for direction in matrix.directions:
                nodes = {HOSPITAL_ROLE: hospital.id, CLOUD_ROLE: root.id}
                home.extend(
                    LinkRoute(direction.name, r.api_id, nodes[direction.source_side], r.source,
                              nodes[direction.target_side], r.target)
                    for r in direction.routes if r.source  # none: the API does not exist on that side
                )
            links.append(Link(f"home.{hospital.id}", "home", root.id, hospital.id, tuple(home)))
            for upper in self.ancestors(hospital.id)[:-1]:  # every common node above it but the root
                routes = tuple(
                    LinkRoute(_route(HOSPITAL_ROLE, CLOUD_ROLE), r.api_id, hospital.id, r.source,
                              upper.id, (REPLICA_STORE,))
                    for r in replicated
                ) + tuple(
                    LinkRoute(_route(CLOUD_ROLE, HOSPITAL_ROLE), r.api_id, root.id, r.source, upper.id,
                              (REPLICA_STORE,))
                    for r in written_by_cloud
                )
                links.append(Link(f"replica.{hospital.id}.{upper.id}", "replica", upper.id, hospital.id, routes))
        return tuple(links)


def _route(source_side: str, target_side: str) -> str:
    """The matrix direction name carrying changes from ``source_side`` to ``target_side``."""
    return next(name for name, sides in ROUTES.items() if sides == (source_side, target_side))
