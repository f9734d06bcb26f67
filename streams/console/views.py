"""What the console shows, read with the functions the CLI uses (blocking: the server runs them in its thread pool).

Each node's processes are those of the embedded stack running beside its stores: PostgreSQL, Keycloak, the
capture, the mode server and the API server named ``-local`` / ``-remote``, and the worker of each route writing
into that node (``worker-remote_to_local`` at the hospital). The broker and its link proxy stand in for the cloud's
Kafka (infra/local/link.py), so they are listed under the cloud (``remote``), as are the FHIR processes and the
workers of replica routes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from infra.local.link import CUT_SIDE, enforced_state, wanted_path
from infra.local.stack import components
from streams.apply.conflicts import ConflictLookupError, collect, find
from streams.apply.mode_state import read_override
from streams.cli.network import link_settings_of
from streams.cli.status import collect_status, route_sources
from streams.console.inputs import ApiError
from streams.core.model import ROUTES, SIDES
from streams.core.modes import MODES, hybridmode
from streams.ops.dlq import read_dead_letters, read_retry_marks, select, summary
from streams.ops.recovery_report import COPIED, COPYABLE, NOT_COPYABLE, Window, as_json, build_report, last_outage
from streams.runtime.jsonfile import read_json
from streams.runtime.settings import Settings

ROLES = {"local": "hospital", "remote": "cloud"}
#: Where processes that run beside no node's stores are listed (the broker stands in for the cloud's Kafka).
SHARED_NODE = "remote"
CONFLICT_FIELDS = ("conflict_id", "store", "table", "row_id", "winner", "rule", "detected_on", "status")
ENTRY_FIELDS = ("id", "side", "store", "table", "row_id", "label", "version", "entered_at", "api_id", "status",
                "reason")


def now_iso() -> str:
    """The current time as ISO 8601 UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cuttable_link(settings: Settings) -> Settings | None:
    """The settings of the one cuttable link of this data dir (its embedded broker's proxy); None for a Kafka
    cluster of its own or a network (several home links: ``platsync link --node``)."""
    if settings.broker_bootstrap_servers and not settings.network_link:
        return None
    links = link_settings_of(settings)
    return links.get("") if len(links) == 1 else None


def link_view(settings: Settings) -> dict[str, Any]:
    """``{"up", "cut_side", "note"}``: what the link proxy enforces (up None: no cuttable link, or the proxy never
    ran) and the note of the last ``link up|down``."""
    link = cuttable_link(settings)
    if link is None:
        return {"up": None, "cut_side": None,
                "note": "no cuttable link here (a Kafka cluster of its own, or a network of several links)"}
    state = enforced_state(link)
    wanted = read_json(wanted_path(link))
    note = str(wanted.get("note") or "")
    if not state:
        return {"up": None, "cut_side": None, "note": note or "the link proxy has not run in this data dir"}
    up = bool(state.get("up"))
    return {"up": up, "cut_side": None if up else str(state.get("cut_side") or CUT_SIDE), "note": note}


def process_node(settings: Settings, kind: str, side_or_route: str) -> str:
    """The node a process of the stack is listed under (see the module's docstring)."""
    if kind == "worker":
        target = route_sources(settings, side_or_route)[0] if side_or_route in ROUTES else ""
        return target if target in SIDES else SHARED_NODE
    return side_or_route if side_or_route in SIDES else SHARED_NODE


def nodes_view(settings: Settings) -> dict[str, Any]:
    """``GET /api/nodes``: both nodes' mode, lag, processes and latest backup, the link and the stack's health."""
    status = collect_status(settings)
    nodes = []
    for side in SIDES:
        doc = status["modes"].get(side, {})
        mode = str(doc.get("mode", "unknown"))
        lag_ms = lag_bytes = 0
        for info in status["routes"].values():
            if info["target_side"] == side:
                for store in info["stores"].values():
                    lag_ms, lag_bytes = max(lag_ms, store["lag_ms"]), max(lag_bytes, store["lag_bytes"])
        processes = [{"name": c.name, "running": bool(status["processes"].get(c.name, {}).get("running")),
                      "pid": status["processes"].get(c.name, {}).get("pid")}
                     for c in components(settings) if process_node(settings, c.kind, c.side_or_route) == side]
        nodes.append({"node": side, "role": ROLES[side], "mode": mode,
                      "hybridmode": hybridmode(side, mode) if mode in MODES else None,
                      "since": doc.get("since"), "reason": str(doc.get("reason", "")),
                      "override": read_override(settings, side) is not None, "stale": bool(doc.get("stale")),
                      "lag_ms": int(lag_ms), "lag_bytes": int(lag_bytes), "processes": processes,
                      "backup": (status.get("backups") or {}).get(side)})
    return {"time": now_iso(), "healthy": bool(status["healthy"]), "open_conflicts": status["open_conflicts"],
            "errors": [str(e) for e in status["errors"]], "link": link_view(settings), "nodes": nodes}


def recovery_view(settings: Settings, since_ms: int | None, until_ms: int | None) -> dict[str, Any]:
    """``GET /api/recovery``: the difference list of the last outage (or of the window given)."""
    if since_ms is None and until_ms is not None:
        raise ApiError(400, "bad_request", "until needs since")
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise ApiError(400, "bad_request", "until is before since")
    window = Window(since_ms, until_ms) if since_ms is not None else last_outage(settings)
    if window is None:
        return {"window": None, "entries": [],
                "message": "no outage recorded by the mode servers in this data dir; give since (and until)"}
    entries = build_report(settings, window.start_ms, window.end_ms)
    doc = as_json(entries, window.start_ms, window.end_ms, window)
    counts = []
    for side in SIDES:
        mine = [e for e in entries if e.side == side]
        counts.append(f"{side}: {len(mine)} entered (" + ", ".join(
            f"{sum(1 for e in mine if e.status == s)} {s}" for s in (COPIED, COPYABLE, NOT_COPYABLE)) + ")")
    described = doc["window"]
    message = (f"records entered between {described['start']} and {described['end'] or 'now'}: "
               + "; ".join(counts))
    return {"window": {k: described.get(k) for k in ("start", "end", "basis", "note")}, "message": message,
            "entries": [{k: e.get(k) for k in ENTRY_FIELDS} for e in doc["entries"]]}


def conflicts_view(settings: Settings, status: str) -> dict[str, Any]:
    """``GET /api/conflicts``: conflicts of both sides (``platsync conflicts list --json``, fewer fields)."""
    conflicts, unreachable = collect(settings, status)
    return {"conflicts": [{k: c.as_json()[k] for k in CONFLICT_FIELDS} for c in conflicts],
            "unreachable": [str(u) for u in unreachable]}


def conflict_id_checked(conflict_id: str) -> str:
    """A conflict id (or unique prefix) as the CLI takes it: hexadecimal, at most 64 digits; 404 otherwise."""
    if not conflict_id or len(conflict_id) > 64 or any(c not in "0123456789abcdef" for c in conflict_id.lower()):
        raise ApiError(404, "not_found", "no such conflict: ids are hexadecimal (see GET /api/conflicts)")
    return conflict_id.lower()


def find_conflict(settings: Settings, conflict_id: str) -> Any:
    """The one conflict ``conflict_id`` (a unique prefix) names; 404 if none, 400 if ambiguous."""
    try:
        return find(settings, conflict_id_checked(conflict_id))
    except ConflictLookupError as exc:
        if "ambiguous" in str(exc):
            raise ApiError(400, "ambiguous", "the id prefix matches several conflicts: give more digits") from None
        raise ApiError(404, "not_found", "no such conflict (see GET /api/conflicts?status=all)") from None


def conflict_view(settings: Settings, conflict_id: str) -> dict[str, Any]:
    """``GET /api/conflicts/{id}``: ``platsync conflicts show --json`` (both versions, differing fields)."""
    return dict(find_conflict(settings, conflict_id).as_json())


def dead_letters_view(settings: Settings, status: str) -> dict[str, Any]:
    """``GET /api/dead-letters``: ``platsync dlq list --json`` (errors redacted as without ``--reveal``)."""
    letters = read_dead_letters(settings, list(ROUTES))
    marks = read_retry_marks(settings)
    return {"dead_letters": [summary(letter, marks, reveal=False) for letter in select(letters, marks,
                                                                                        status=status)]}
