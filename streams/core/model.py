"""Core value types shared by capture, routing and sinks.

These types carry no behaviour and import nothing beyond the standard library, so the
pure routing layer can depend on them without pulling in Kafka or database clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIDES: tuple[str, ...] = ("local", "remote")
STORES: tuple[str, ...] = ("meta", "fructos_own", "fructos_patient", "keycloak")

#: Stores that physically exist on each side (患者管理FRUCtoS exists only in the cloud).
SIDE_STORES: dict[str, tuple[str, ...]] = {
    "local": ("meta", "fructos_own", "keycloak"),
    "remote": ("meta", "fructos_own", "fructos_patient", "keycloak"),
}

#: Stores shared by every institution on a multi-tenant node: their databases keep their names.
SHARED_STORES: tuple[str, ...] = ("fructos_patient",)

#: Stores backed by a PostgreSQL database captured by Debezium (keycloak is a separate issue).
DATABASE_STORES: dict[str, tuple[str, ...]] = {
    "local": ("meta", "fructos_own"),
    "remote": ("meta", "fructos_own", "fructos_patient"),
}

#: Stores captured into Kafka per side: the store databases plus Keycloak's account tables.
CAPTURED_STORES: dict[str, tuple[str, ...]] = {
    side: (*stores, "keycloak") for side, stores in DATABASE_STORES.items()
}

#: Route names: a route carries changes captured on its source side to the other side.
ROUTES: dict[str, tuple[str, str]] = {
    "local_to_remote": ("local", "remote"),
    "remote_to_local": ("remote", "local"),
}

#: A regional server's replica route of one home link: ``local_to_<regional node>``. It reads the feeding
#: store's topics of *both* sides of the link (the records the cloud's shared store receives, whichever side
#: wrote them) and writes the regional server's read-only copy (docs/topology.md).
REPLICA_ROUTE_PREFIX = "local_to_"
#: The only store a regional server keeps: read-only copies of the shared 患者管理FRUCtoS.
REPLICA_STORE = "fructos_patient"
#: The sides a replica route reads from (both parties of the home link).
REPLICA_SOURCE_SIDES: tuple[str, ...] = SIDES

#: Operation codes of a captured change. ``probe`` is a sync barrier, not a data change.
OPS: tuple[str, ...] = ("c", "u", "d", "r", "probe")

RowValue = None | bool | int | float | str | bytes


def other_side(side: str) -> str:
    """Return the opposite side name (``local`` <-> ``remote``)."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
    return "remote" if side == "local" else "local"


def route_for_source(side: str) -> str:
    """Return the route name carrying changes captured on ``side``."""
    return f"{side}_to_{other_side(side)}"


def replica_route(node: str) -> str:
    """The name of the route feeding regional server ``node``'s replicas from one home link."""
    return f"{REPLICA_ROUTE_PREFIX}{node}"


def replica_node(route: str) -> str | None:
    """The regional server a route name feeds (``local_to_region-1`` -> ``region-1``); None for a home route."""
    if route in ROUTES or not route.startswith(REPLICA_ROUTE_PREFIX):
        return None
    node = route[len(REPLICA_ROUTE_PREFIX):]
    return node if node and node not in SIDES else None


def route_for_target(side: str) -> str:
    """Return the route name applying changes to the stores of ``side``."""
    return f"{other_side(side)}_to_{side}"


@dataclass(frozen=True)
class ChangeEvent:
    """One row change captured from a source store, with the API that caused it.

    ``row`` is the after-image (``None`` for a delete); ``version`` is the row's
    version column, used by sinks to refuse stale overwrites. ``origin_side`` is the
    side where the change was first made by an API; a change applied by the engine
    keeps the origin of the change it reproduces. ``before`` is the before-image of an
    update (``None`` otherwise): the state the change was made on, which lets the sinks
    tell a fast-forward from a concurrent edit (see ``docs/conflicts.md``).
    """

    event_id: str
    source_side: str
    source_store: str
    table: str
    op: str
    key: str
    version: int
    row: dict[str, RowValue] | None
    api_id: str | None
    call_id: str | None
    origin_side: str
    lsn: int
    txid: int
    commit_ts_ms: int
    captured_ts_ms: int
    before: dict[str, RowValue] | None = None


@dataclass(frozen=True)
class Write:
    """One write the router decided must happen on a target store of the other side."""

    target_side: str
    target_store: str
    table: str
    op: str  # "upsert" or "delete"
    key: str
    version: int
    row: dict[str, RowValue] | None
    event_id: str
    api_id: str
    origin_side: str
    before: dict[str, RowValue] | None = None  # before-image of an update (op 'u'), else None


@dataclass(frozen=True)
class RouteDecision:
    """The pure routing result for one change: the writes to perform, or why none."""

    writes: tuple[Write, ...] = field(default_factory=tuple)
    skipped: str | None = None  # a reason when the change is deliberately not routed
