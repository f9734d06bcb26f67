"""Live status of the stack: processes, and per route and source store what was captured,
what was applied, the lag between them (from source LSNs and commit times) and errors."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from infra.local.fhir_runtime import runs_fhir
from infra.local.process import read_pid
from infra.local.stack import components
from streams.apply.conflicts import open_conflict_count
from streams.apply.mode_state import all_modes, describe
from streams.apply.progress import read_progress
from streams.core.model import REPLICA_SOURCE_SIDES, REPLICA_STORE, ROUTES, SIDES, replica_node
from streams.ops.backup import list_backups, read_backup
from streams.ops.backup_format import BackupError, age_s, backup_root, describe_age
from streams.ops.fhir_summary_report import fhir_counts
from streams.routing.matrix_model import load_matrix
from streams.runtime.jsonfile import read_json
from streams.runtime.settings import Settings
from streams.runtime.state_files import capture_state, retrying_path, worker_state


def route_sources(settings: Settings, route: str) -> tuple[str, str, list[tuple[str, str, str]]]:
    """(target node, store keeping its positions, [(progress key, source side, source store)]) of a route: a
    home route reads its source side's captured stores; a replica route the feeding store of both sides."""
    node = replica_node(route)
    if node is None:
        source_side, target_side = ROUTES[route]
        return target_side, "meta", [(store, source_side, store) for store in settings.captured_stores(source_side)]
    feed = load_matrix().feed_source(REPLICA_STORE)
    return node, REPLICA_STORE, [(f"{side}.{feed}", side, feed) for side in REPLICA_SOURCE_SIDES]


def collect_status(settings: Settings) -> dict[str, Any]:
    """A JSON-able snapshot of the whole stack."""

    processes = {c.name: {"pid": read_pid(settings.data_dir, c.name)} for c in components(settings)}
    for proc in processes.values():
        proc["running"] = proc["pid"] is not None
    routes: dict[str, Any] = {}
    errors: list[str] = []
    for route in settings.applied_routes:
        target_side, progress_store, sources = route_sources(settings, route)
        kept_as = settings.progress_route(route)
        try:
            applied = {r["source_store"]: r for r in read_progress(settings, target_side, store=progress_store)
                       if r["route"] == kept_as}
        except Exception as exc:  # noqa: BLE001 - status must render even when a store is down
            applied = {}
            errors.append(f"{target_side}/{progress_store} unreachable: {type(exc).__name__}")
        stores: dict[str, Any] = {}
        for key, source_side, store in sources:
            cap = capture_state(settings, source_side, store)
            app = applied.get(key, {})
            cap_lsn, app_lsn = int(cap.get("last_lsn", 0)), int(app.get("last_lsn", 0))
            cap_ts, app_ts = int(cap.get("last_commit_ts_ms", 0)), int(app.get("last_commit_ts_ms", 0))
            pending = cap_lsn > app_lsn
            stores[key] = {
                "captured": int(cap.get("events_produced", 0)),
                "echoes_dropped": int(cap.get("echoes_dropped", 0)),
                "applied_events": int(app.get("events_seen", 0)),
                "writes_applied": int(app.get("writes_applied", 0)),
                "dead_letters": int(app.get("dead_letters", 0)),
                "captured_lsn": cap_lsn,
                "applied_lsn": app_lsn,
                "lag_bytes": max(0, cap_lsn - app_lsn) if pending else 0,
                "lag_ms": max(0, cap_ts - app_ts) if pending else 0,
            }
        worker = worker_state(settings, route)
        retrying = worker.get("retrying") or {}
        for what, error in sorted(retrying.items()):
            errors.append(f"{route}: {what} unavailable, retrying: {error}")
        if worker.get("waiting_for"):  # started while the broker is out of reach (streams/apply/worker.py)
            errors.append(f"{route}: waiting for the {worker['waiting_for']} (unreachable); it consumes once "
                          "the broker answers")
        routes[route] = {"source_side": "+".join(dict.fromkeys(side for _, side, _ in sources)),
                         "target_side": target_side, "stores": stores, "retrying": retrying}
    for side in SIDES:
        retry = read_json(retrying_path(settings, side))
        if retry.get("what"):
            errors.append(f"capture {side}: {retry['what']} unreachable, retrying: {retry.get('error', '')}")

    modes = all_modes(settings)
    try:
        open_conflicts: int | None = open_conflict_count(settings)
    except Exception:  # noqa: BLE001 - status must render even when a store is down
        open_conflicts = None
    fhir: dict[str, Any] | None = None
    if runs_fhir(settings):
        try:
            fhir = fhir_counts(settings)
        except Exception as exc:  # noqa: BLE001 - status must render even when a store is down
            errors.append(f"remote/{REPLICA_STORE} unreachable (FHIR summary): {type(exc).__name__}")
    healthy = all(p["running"] for p in processes.values()) and not errors
    return {"data_dir": str(settings.data_dir), "time_ms": int(time.time() * 1000), "healthy": healthy,
            "modes": modes, "open_conflicts": open_conflicts, "processes": processes, "routes": routes,
            "fhir": fhir, "backups": latest_backups(settings), "errors": errors}


def latest_backups(settings: Settings, nodes: Iterable[str] = SIDES, now: datetime | None = None) -> dict[str, Any]:
    """Each node's latest backup held here (``backup_dir``): its name and age in seconds at ``now`` (None: no backup
    yet). The nodes: the two sides, or a network's node names (``hosp-a``, ``remote.hosp-a``; streams/cli/network.py)
    under the network's data dir."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {}
    for node in nodes:
        held = list_backups(backup_root(settings), node)
        try:
            manifest = read_backup(held[-1]) if held else None
        except BackupError:
            manifest = None
        out[node] = None if manifest is None else {"name": held[-1].name, "age_s": round(age_s(manifest, now))}
    return out


def render_status(status: dict[str, Any]) -> str:
    """A compact text table of :func:`collect_status`."""
    lines = [f"PLAT Sync  data dir {status['data_dir']}  {'HEALTHY' if status['healthy'] else 'DEGRADED'}", ""]

    for doc in status.get("modes", {}).values():
        lines.append(f"mode       {describe(doc)}")
    if status.get("open_conflicts"):
        lines.append(f"conflicts  {status['open_conflicts']} open: review with 'platsync conflicts list'")
    fhir = status.get("fhir")
    if fhir is not None:
        waiting = f"{fhir['waiting']} document(s) waiting" + (
            f" (oldest {fhir['oldest_waiting_s']} s)" if fhir["oldest_waiting_s"] is not None else "")
        sent = ", ".join(f"{n} {state}" for state, n in fhir["submissions"].items()) or "none"
        lines.append(f"fhir       summary: {waiting}; submissions: {sent} ('platsync fhir submissions')")
    backups = status.get("backups") or {}
    if backups:
        lines.append("backups    " + "  ".join(
            f"{side}: " + (f"{describe_age(b['age_s'])} ago ({b['name']})" if b else "none ('platsync backup create')")
            for side, b in backups.items()))
    procs = "  ".join(f"{name}:{'up' if p['running'] else 'DOWN'}" for name, p in status["processes"].items())
    lines += [f"processes  {procs}", ""]
    lines.append(f"{'route':18} {'source store':24} {'captured':>9} {'applied':>9} {'writes':>8} "
                 f"{'lag ms':>8} {'lag bytes':>10} {'errors':>7}")
    for route, info in status["routes"].items():
        for store, s in info["stores"].items():  # a replica route's keys name their side: local.fructos_own
            label = store.replace(".", "/") if "." in store else f"{info['source_side']}/{store}"
            lines.append(f"{route:18} {label:24} {s['captured']:>9} "
                         f"{s['applied_events']:>9} {s['writes_applied']:>8} {s['lag_ms']:>8} "
                         f"{s['lag_bytes']:>10} {s['dead_letters']:>7}")
    for err in status["errors"]:
        lines.append(f"ERROR: {err}")
    return "\n".join(lines)
