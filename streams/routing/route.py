"""The pure router: one captured change in, the writes the matrix demands out.

No I/O, no Kafka, no database: :func:`route` depends only on :mod:`streams.core.model` and the
validated :class:`~streams.routing.matrix_model.Matrix`, so it is tested exhaustively as data.
"""

from __future__ import annotations

from streams.core.errors import PlatSyncError
from streams.core.model import SHARED_STORES, ChangeEvent, RouteDecision, Write
from streams.routing.matrix_model import Direction, Matrix
from streams.sharing.gate import gated_op, is_share_gate_write, keeps_shared_copies_current

#: Captured operation codes and the sink operation each one becomes.
SINK_OPS: dict[str, str] = {"c": "upsert", "u": "upsert", "r": "upsert", "d": "delete"}


class RoutingError(PlatSyncError):
    """A change cannot be routed: the data or the matrix is wrong, so retrying will not help."""


class UnknownApiError(RoutingError):
    """The change carries no API id, or one the matrix does not list for its direction."""


class UndeclaredSourceError(RoutingError):
    """The API wrote a store the matrix does not list among its sources."""


def _describe(change: ChangeEvent) -> str:
    return (
        f"event {change.event_id} ({change.source_side}.{change.source_store}.{change.table} "
        f"key={change.key!r} op={change.op!r})"
    )


def route(change: ChangeEvent, matrix: Matrix) -> RouteDecision:
    """Decide the writes one captured change requires on the other side.

    Order of the rules: unknown source side (error) → echo of a change the engine applied
    (skipped) → sync probe (skipped) → unknown API (error) → store the API may not write (error;
    skipped for the cloud's own publish or withdrawal of a document in its shared store) → one
    write per target store fed by the change's store, sorted by store name; a change whose store
    feeds none of the API's targets is skipped with the reason. The share gate
    (:mod:`streams.sharing.gate`) adds the shared stores for a change of an approved document's
    share state and turns a write of a private document into a shared store into a withdrawal.

    Raises :class:`UnknownApiError`, :class:`UndeclaredSourceError` or :class:`RoutingError`.
    """
    try:
        direction = matrix.direction_for_source(change.source_side)
    except KeyError:
        raise RoutingError(
            f"{_describe(change)}: unknown source side {change.source_side!r}; "
            f"the matrix routes changes from {', '.join(d.source_side for d in matrix.directions)}"
        ) from None
    if change.origin_side != change.source_side:
        return RouteDecision(
            skipped=f"echo: change originated on {change.origin_side} and was applied here by the "
            f"engine; not routed back to {direction.target_side}"
        )
    if change.op == "probe":
        return RouteDecision(skipped="probe: sync barrier, handled by the agent, not routed")

    api = direction.get(change.api_id)
    if api is None:
        if change.api_id is None:
            problem = "carries no API id (the writing transaction did not record which API ran)"
        else:
            problem = f"carries API id {change.api_id!r}, which the matrix does not list"
        raise UnknownApiError(
            f"{_describe(change)} {problem} for {direction.name}; known APIs: "
            f"{', '.join(direction.api_ids)}. Fix the API's tagging or add it to matrix.toml."
        )
    if change.source_store not in api.source:
        if change.source_store in SHARED_STORES and is_share_gate_write(change):
            return RouteDecision(skipped=f"share gate: {api.api_id} published or withdrew a document in "
                                 f"{change.source_side}'s shared {change.source_store} (docs/sharing.md); not routed")
        raise UndeclaredSourceError(
            f"{_describe(change)}: {api.api_id} wrote {change.source_side} {change.source_store!r}, "
            f"but matrix.toml {direction.name}.{api.api_id}.source allows only "
            f"{', '.join(api.source)}; the API or the matrix is wrong."
        )
    if change.op not in SINK_OPS:
        raise RoutingError(
            f"{_describe(change)}: unknown op {change.op!r}; expected one of {', '.join([*SINK_OPS, 'probe'])}"
        )

    targets = matrix.targets_fed_by(change.source_store, api.target)
    if keeps_shared_copies_current(change):  # an approved, shared document changed: its copies follow
        targets = tuple(sorted({*targets, *matrix.targets_fed_by(change.source_store, _shared_targets(direction))}))
    if not targets:
        return RouteDecision(
            skipped=f"no target: {change.source_side} {change.source_store} feeds none of "
            f"{api.api_id}'s {direction.target_side} targets ({', '.join(api.target)})"
        )
    op = SINK_OPS[change.op]
    store_ops = {store: gated_op(change, op) if store in SHARED_STORES else op for store in targets}
    writes = tuple(
        Write(
            target_side=direction.target_side,
            target_store=store,
            table=change.table,
            op=store_op,
            key=change.key,
            version=change.version,
            row=change.row,
            event_id=change.event_id,
            api_id=api.api_id,
            origin_side=change.origin_side,
            before=change.before if store_op == "upsert" else None,
        )
        for store, store_op in store_ops.items()
    )
    return RouteDecision(writes=writes)


def _shared_targets(direction: Direction) -> tuple[str, ...]:
    """The shared stores on a direction's target side (those some API of it writes)."""
    return tuple(s for s in SHARED_STORES if any(s in r.target for r in direction.routes))
