"""The pure router of a replica route: what a regional server's read-only copy receives.

A regional server keeps, read-only, what the cloud's shared store (``fructos_patient``, 患者管理FRUCtoS)
holds of the hospitals below it. The cloud's shared store receives a record from either party of a
hospital's home link:

- from the **hospital** (``local``): the sink writes it there when the matrix's ``local_to_remote``
  route of the API lists the shared store among its targets (PRV_USR_001, PRV_DOC_009 today);
- from the **cloud** itself (``remote``): the cloud's API writes it there directly, when the matrix's
  ``remote_to_local`` route of the API lists the shared store among its *sources*.

Each side captures only the changes first made on it (the engine's own applies are dropped at the
capture as echoes), so a replica route reads the feeding store's topic of *both* sides, and a record
is replicated once, by the side that wrote it. Nothing is ever sent back from a replica: a regional
server captures nothing, so no change can loop, over any number of hops.
"""

from __future__ import annotations

from streams.core.model import ChangeEvent, RouteDecision, Write
from streams.routing.matrix_model import Matrix
from streams.routing.route import SINK_OPS, RoutingError, UndeclaredSourceError, UnknownApiError
from streams.sharing.gate import gated_op, keeps_shared_copies_current


def replicated_api_ids(matrix: Matrix, store: str, side: str) -> tuple[str, ...]:
    """The APIs whose changes captured on ``side`` reach the cloud's shared ``store`` (see the module doc)."""
    direction = matrix.direction_for_source(side)
    if side == "local":
        return tuple(r.api_id for r in direction.routes if store in r.target)
    return tuple(r.api_id for r in direction.routes if store in r.source)


def route_replica(change: ChangeEvent, matrix: Matrix, store: str) -> RouteDecision:
    """The writes into a regional server's replica ``store`` that one captured change requires.

    Rules, in order: unknown source side (error) -> echo (skipped) -> probe (skipped) -> unknown API
    (error) -> a store the API may not write (error) -> a change of a store other than the one feeding
    ``store`` (skipped) -> an API whose records do not reach the shared store (skipped, unless the change
    made an approved document shared or private) -> one write, a withdrawal (delete) for a private
    document (the share gate, streams/sharing/gate.py).
    """
    try:
        direction = matrix.direction_for_source(change.source_side)
    except KeyError:
        raise RoutingError(f"event {change.event_id}: unknown source side {change.source_side!r} on a replica "
                           f"route; expected one of {', '.join(d.source_side for d in matrix.directions)}") from None
    if change.origin_side != change.source_side:
        return RouteDecision(skipped=f"echo: originated on {change.origin_side}; replicated from there")
    if change.op == "probe":
        return RouteDecision(skipped="probe: sync barrier, handled by the agent, not routed")
    api = direction.get(change.api_id)
    if api is None:
        raise UnknownApiError(
            f"event {change.event_id} ({change.source_side}.{change.source_store}.{change.table} key={change.key!r}) "
            f"carries API id {change.api_id!r}, which the matrix does not list for {direction.name}; known APIs: "
            f"{', '.join(direction.api_ids)}")
    if change.source_store not in api.source:
        raise UndeclaredSourceError(
            f"event {change.event_id}: {api.api_id} wrote {change.source_side} {change.source_store!r}, but "
            f"matrix.toml {direction.name}.{api.api_id}.source allows only {', '.join(api.source)}")
    feed = matrix.feed_source(store)
    if change.source_store != feed:
        return RouteDecision(skipped=f"not replicated: {store} is fed by {feed}, not {change.source_store}")
    if api.api_id not in replicated_api_ids(matrix, store, change.source_side) \
            and not keeps_shared_copies_current(change):
        return RouteDecision(skipped=f"not replicated: {api.api_id}'s records on {change.source_side} do not "
                             f"reach the cloud's {store}")
    if change.op not in SINK_OPS:
        raise RoutingError(f"event {change.event_id}: unknown op {change.op!r}")
    op = gated_op(change, SINK_OPS[change.op])  # a private document is withdrawn (docs/sharing.md)
    return RouteDecision(writes=(Write(
        target_side="replica", target_store=store, table=change.table, op=op, key=change.key,
        version=change.version, row=change.row, event_id=change.event_id, api_id=api.api_id,
        origin_side=change.origin_side, before=change.before if op == "upsert" else None),))
