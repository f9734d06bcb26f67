"""The subscriptions part of ``platsync status`` on a network (docs/sharing.md).

Per hospital, from the stores themselves: the subscriptions asked for and opened by the fan-out (the cloud's
``sharing`` database), what its subscriber holds (``fructos_subscribed``: patients, copies, the last
arrival) and its notifications by delivery state. A store that cannot be reached is reported as such, with
the reason, instead of failing the whole status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from connectors.stores.fanout_state import SHARING_DATABASE, subscription_counts
from connectors.stores.subscribed import SUBSCRIBED_STORE, subscriber_counts
from streams.runtime.connections import dsn
from streams.runtime.settings import Settings

CLOUD_SIDE = "remote"
#: Seconds to wait for a store before reporting it unreachable.
CONNECT_TIMEOUT_S = 3


def _read(settings: Settings, side: str, store: str, read: Callable[[Connection], Any]) -> Any:
    """``read`` on one store, or ``{"error": why}`` if it cannot be reached."""
    engine = create_engine(dsn(settings, side, store), connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        with engine.connect() as conn:
            return read(conn)
    except SQLAlchemyError as exc:
        return {"error": f"{store} on {side} unreachable: {str(exc.orig or exc).splitlines()[0]}"}
    finally:
        engine.dispose()


def collect_subscriptions(cloud: Settings, links: Mapping[str, Settings]) -> dict[str, Any]:
    """Each hospital's subscriptions, copies and notifications (JSON-able); ``links``: hospital -> its link."""
    counts = _read(cloud, CLOUD_SIDE, SHARING_DATABASE, subscription_counts)
    out: dict[str, Any] = {}
    for hospital, link in links.items():
        entry: dict[str, Any] = {"subscriber": _read(link, "local", SUBSCRIBED_STORE, subscriber_counts)}
        if "error" in counts:
            entry["fanout"] = counts
        else:
            entry["fanout"] = counts.get(hospital, {"asked": 0, "open": 0})
        out[hospital] = entry
    return out


def render_subscriptions(summary: Mapping[str, Any]) -> list[str]:
    """One line per hospital: subscriptions asked/opened, what it holds, its notifications; ``behind`` when the
    fan-out or the subscriber has not caught up with what was asked (expected while its link is cut)."""
    lines = []
    for hospital, entry in summary.items():
        fanout, held = entry["fanout"], entry["subscriber"]
        problems = [part["error"] for part in (fanout, held) if "error" in part]
        if problems:
            lines.append(f"subscriptions {hospital:14} UNKNOWN: {'; '.join(problems)}")
            continue
        behind = fanout["open"] < fanout["asked"] or held["patients"] != fanout["open"]
        notes = held["notifications"]
        delivery = f", {notes['unpublished']} unpublished" if notes["unpublished"] else ""
        if notes["webhook"]:
            delivery += f", {notes['undelivered']} undelivered by webhook"
            if notes["failing"]:
                delivery += f" ({notes['failing']} failing: {notes['last_error']})"
        last = f", last copy {held['last_received_at'][:19]}" if held["last_received_at"] else ""
        lines.append(f"subscriptions {hospital:14} {fanout['asked']} asked, {fanout['open']} open; holds "
                     f"{held['patients']} patient(s), {held['copies']} copies{last}; "
                     f"notifications {notes['total']}{delivery}{'  BEHIND' if behind else ''}")
    return lines
