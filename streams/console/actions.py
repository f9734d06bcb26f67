"""What the console changes, with the CLI's own functions (blocking: the server runs them in its thread pool).

Each returns the JSON answer and an audit summary ``(outcome, detail)``; refusals raise
:class:`streams.console.inputs.ApiError`.
"""

from __future__ import annotations

from typing import Any

from streams.apply.conflicts import resolve
from streams.apply.mode_state import set_override
from streams.cli.link import switch_link
from streams.cli.mode import confirm_override
from streams.console.inputs import ApiError
from streams.console.views import cuttable_link, find_conflict, link_view
from streams.core.model import ROUTES
from streams.ops.dlq import DeadLetterError, read_dead_letters, read_retry_marks, retry
from streams.ops.recovery_copy import REFUSED, Selected, copy_selected
from streams.runtime.settings import Settings

Result = tuple[dict[str, Any], str, str]


def set_mode(settings: Settings, node: str, mode: str | None, note: str, user: str) -> Result:
    """``POST /api/mode``: set (or, ``mode`` None, clear) the node's override and wait up to 5 s for its mode server
    (``platsync mode set`` / ``--clear``)."""
    override = set_override(settings, node, mode, note, set_by=f"{user} (console)")
    applied, message = confirm_override(settings, node, override, mode)
    outcome = {True: "ok", None: "pending", False: "failed"}[applied]
    return ({"node": node, "mode": mode, "applied": bool(applied), "message": message}, outcome,
            f"{'clear override' if mode is None else 'set ' + mode}; note: {note}")


def switch(settings: Settings, up: bool, note: str) -> Result:
    """``POST /api/link``: cut or restore the embedded stack's link, as ``platsync link down|up`` (including the
    restart and re-capture after ``up``); 409 ``no_link`` when there is no cuttable link."""
    link = cuttable_link(settings)
    if link is None:
        raise ApiError(409, "no_link", "this stack has no cuttable link (a Kafka cluster of its own, or a network: "
                       "use 'platsync link --node')")
    said: list[str] = []
    confirmed = switch_link(settings, link, up, note, said.append)
    message = "\n".join(said)
    action = "up" if up else "down"
    if confirmed is False:
        raise ApiError(503, "unavailable", message)
    return ({"link": link_view(settings), "message": message}, "ok" if confirmed else "pending",
            f"link {action}; note: {note}")


def copy(settings: Settings, ids: list[str]) -> Result:
    """``POST /api/recovery/copy``: "copy selected" of the difference list
    (:func:`streams.ops.recovery_copy.copy_selected`)."""
    try:
        chosen = [Selected.parse(text) for text in ids]
    except ValueError:
        raise ApiError(400, "bad_request", "ids must name records of the difference list as side/store/table/row_id"
                       ) from None
    outcomes = copy_selected(settings, chosen)
    results = [{"id": o.selected.id, "outcome": o.outcome, "reason": o.reason} for o in outcomes]
    refused = sum(1 for o in outcomes if o.outcome == REFUSED)
    outcome = "ok" if not refused else "refused" if refused == len(outcomes) else "partial"
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    return {"results": results}, outcome, ", ".join(f"{n} {what}" for what, n in counts.items())


def resolve_conflict(settings: Settings, conflict_id: str, note: str, user: str) -> Result:
    """``POST /api/conflicts/{id}/resolve``: mark it resolved on every side and store (``platsync conflicts
    resolve``); the note kept with it says who resolved it in the console."""
    conflict = find_conflict(settings, conflict_id)
    kept = f"{note or 'reviewed'} (by {user} in the console)"
    changed = resolve(settings, conflict, kept)
    message = (f"conflict {conflict.conflict_id} resolved in {', '.join(changed)}: {kept}" if changed
               else f"conflict {conflict.conflict_id} was already resolved")
    return ({"conflict_id": conflict.conflict_id, "resolved_in": changed, "message": message},
            "ok" if changed else "unchanged", f"note: {note}")


def retry_letters(settings: Settings, ids: list[str]) -> Result:
    """``POST /api/dead-letters/retry``: re-drive the dead letters named (``platsync dlq retry ID ...``: letters
    retried before are skipped); 404 naming the unknown ids."""
    letters = {x.id: x for x in read_dead_letters(settings, list(ROUTES))}
    unknown = [i for i in ids if i not in letters]
    if unknown:
        raise ApiError(404, "not_found", f"no dead letter(s) {', '.join(unknown[:20])[:1000]} (see GET "
                       "/api/dead-letters)")
    said: list[str] = []
    try:
        done = retry(settings, [letters[i] for i in ids], read_retry_marks(settings), again=False, say=said.append)
    except DeadLetterError as exc:
        raise ApiError(503, "unavailable", f"re-driving failed: {exc}") from None
    said.append(f"{len(done)} dead letter(s) re-driven; a message that fails again becomes a new dead letter")
    return ({"retried": [m.id for m in done], "message": "\n".join(said)}, "ok" if done else "unchanged",
            f"{len(done)} of {len(ids)} re-driven")
