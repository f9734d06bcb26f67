"""Files of the operating mode of each side, under ``<data_dir>/state/mode/``.

- ``<side>.json``: written by the side's mode server every half second: mode, reason, since,
  the peer's last heartbeat, the last known contact with the other side (``last_contact_ts_ms``,
  kept across restarts), and the history of transitions with every emergency window
  (``emergencies``: start/end of each and the last contact before it, kept for the recovery
  difference report).
- ``<side>.override.json``: an operator's manual mode, written by :func:`set_override`
  (``platsync mode set``) and read by the mode server; absent means automatic.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.core.model import SIDES
from streams.core.modes import EMERGENCY, MODES, NORMAL, ModeDecision, Override, iso_ms
from streams.runtime.jsonfile import read_json, write_json
from streams.runtime.pids import pid_alive
from streams.runtime.settings import Settings

#: Transitions kept in the state file (emergency windows are all kept, see ``emergencies``).
HISTORY_LIMIT = 500
#: A state file older than this is reported as stale (its mode server is not updating it).
STALE_AFTER_S = 5.0


def mode_dir(settings: Settings) -> Path:
    """Directory of the mode state and override files."""
    return settings.data_dir / "state" / "mode"


def state_path(settings: Settings, side: str) -> Path:
    """The mode state a side's mode server publishes."""
    return mode_dir(settings) / f"{side}.json"


def override_path(settings: Settings, side: str) -> Path:
    """The operator's manual mode of a side (absent: automatic)."""
    return mode_dir(settings) / f"{side}.override.json"


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return f"uid {os.getuid()}"


def set_override(settings: Settings, side: str, mode: str | None, note: str = "",
                 set_by: str | None = None, now_ms: int | None = None) -> dict[str, Any] | None:
    """Set (``mode``) or clear (``None``) a side's manual mode; return the override written (None: cleared).

    The side's mode server applies it within half a second; it holds until cleared.
    """
    _check_side(side)
    path = override_path(settings, side)
    if mode is None:
        path.unlink(missing_ok=True)
        return None
    override = Override(mode, set_by or _operator(), now_ms if now_ms is not None else int(time.time() * 1000), note)
    doc = {"mode": override.mode, "set_by": override.set_by, "set_ts_ms": override.set_ts_ms,
           "set_at": iso_ms(override.set_ts_ms), "note": override.note}
    write_json(path, doc)
    return doc


def read_override(settings: Settings, side: str) -> Override | None:
    """The side's manual mode, or None (also when the file is damaged: automatic is the safe default)."""
    doc = read_json(override_path(settings, side))
    try:
        return Override(str(doc["mode"]), str(doc.get("set_by", "?")), int(doc.get("set_ts_ms", 0)),
                        str(doc.get("note", "")))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class EmergencyWindow:
    """One emergency of one side, as its mode server recorded it."""

    side: str
    start_ts_ms: int  # when the emergency was detected
    end_ts_ms: int | None  # None: still in emergency
    #: Sent time of the newest heartbeat of the other side received before the emergency (None:
    #: recorded before this was kept).
    contact_ts_ms: int | None


def known_contact(previous_ms: int | None, peer_seen_ms: int | None) -> int | None:
    """The last moment the other side is known to have been in contact: the newer of the contact
    known so far (``previous_ms``, kept in the state across restarts) and the sent time of the
    newest heartbeat of the other side received now (``peer_seen_ms``). None: never in contact."""
    known = [t for t in (previous_ms, peer_seen_ms) if t is not None]
    return max(known) if known else None


def advance(state: dict[str, Any], decision: ModeDecision, now_ms: int,
            contact_ms: int | None = None) -> dict[str, Any]:
    """The state after ``decision`` at ``now_ms``: a new transition is recorded in ``history``, an
    emergency opens or closes its window in ``emergencies``; the reason of an unchanged mode is
    updated in place. An emergency opened here records ``contact_ms``, the last moment both sides
    were known in contact (see :func:`known_contact`), as ``contact_ts_ms`` (never after ``now_ms``).
    Pure: returns a new dict."""
    new = dict(state)
    previous = state.get("mode")
    new["mode"], new["reason"] = decision.mode, decision.reason
    if previous == decision.mode:
        return new
    new["since_ts_ms"], new["since"] = now_ms, iso_ms(now_ms)
    entry = {"ts_ms": now_ms, "at": iso_ms(now_ms), "from": previous, "to": decision.mode, "reason": decision.reason}
    new["history"] = ([*state.get("history", []), entry])[-HISTORY_LIMIT:]
    emergencies = [dict(w) for w in state.get("emergencies", [])]
    if previous == EMERGENCY and emergencies and emergencies[-1].get("end_ts_ms") is None:
        emergencies[-1].update(end_ts_ms=now_ms, end=iso_ms(now_ms))
        new["last_emergency_end_ts_ms"] = now_ms
    if decision.mode == EMERGENCY:
        # min(): the other side's clock may run a little ahead of ours.
        contact = None if contact_ms is None else min(contact_ms, now_ms)
        emergencies.append({"start_ts_ms": now_ms, "start": iso_ms(now_ms), "end_ts_ms": None, "end": None,
                            "reason": decision.reason, "contact_ts_ms": contact, "contact": iso_ms(contact)})
    new["emergencies"] = emergencies
    return new


def emergency_windows(settings: Settings, side: str) -> list[tuple[int, int | None]]:
    """Every emergency of a side as ``(start_ts_ms, end_ts_ms)``; end None: still in emergency."""
    return [(int(w["start_ts_ms"]), None if w.get("end_ts_ms") is None else int(w["end_ts_ms"]))
            for w in read_json(state_path(settings, side)).get("emergencies", [])]


def emergencies(settings: Settings, side: str) -> list[EmergencyWindow]:
    """Every emergency of a side with the last contact before it (None in windows recorded before
    the contact was kept)."""
    return [EmergencyWindow(side, int(w["start_ts_ms"]), None if w.get("end_ts_ms") is None else int(w["end_ts_ms"]),
                            None if w.get("contact_ts_ms") is None else int(w["contact_ts_ms"]))
            for w in read_json(state_path(settings, side)).get("emergencies", [])]


def read_mode(settings: Settings, side: str, now_ms: int | None = None) -> dict[str, Any]:
    """A side's mode for ``platsync status``: the state file plus ``running``/``stale``/``age_s``.

    ``mode`` is ``unknown`` if the side's mode server never ran in this data dir; a state file
    not updated for :data:`STALE_AFTER_S` (mode server stopped or hung) keeps its last mode but
    is marked ``stale`` with ``running`` False.
    """
    _check_side(side)
    doc = read_json(state_path(settings, side))
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if not doc:
        return {"side": side, "mode": "unknown", "reason": "the mode server of this side has not run here",
                "running": False, "stale": True, "age_s": None, "override": None}
    age_s = (now_ms - int(doc.get("updated_ts_ms", 0))) / 1000
    pid = doc.get("pid")
    running = doc.get("stopped_ts_ms") is None and isinstance(pid, int) and pid_alive(pid)
    doc.update(running=running, age_s=round(age_s, 1), stale=not running or age_s > STALE_AFTER_S)
    return doc


def current_mode(settings: Settings, side: str) -> str:
    """The mode a side's state file names now; ``normal`` until its mode server first decided (the mode
    server itself answers ``normal`` then) or if the file is damaged. A stopped mode server's last mode
    stays: a stale mode is still the best guess an API can give (the seed calls the header a guide)."""
    _check_side(side)
    mode = read_json(state_path(settings, side)).get("mode")
    return mode if mode in MODES else NORMAL


def describe(doc: dict[str, Any]) -> str:
    """One line for a side's mode (``platsync status`` / ``platsync mode show``)."""
    line = f"{doc.get('side', '?')}: {str(doc.get('mode', 'unknown')).upper()}"
    if doc.get("since"):
        line += f" since {doc['since']}"
    if doc.get("stale") and doc.get("mode") != "unknown":
        line += f" (STALE: mode server {'not running' if not doc.get('running') else 'not updating'})"
    return f"{line} - {doc.get('reason', '')}"


def all_modes(settings: Settings) -> dict[str, dict[str, Any]]:
    """:func:`read_mode` of both sides."""
    return {side: read_mode(settings, side) for side in SIDES}


__all__ = ["MODES", "EmergencyWindow", "advance", "all_modes", "current_mode", "describe", "emergencies",
           "emergency_windows", "known_contact", "mode_dir", "override_path", "read_mode", "read_override",
           "set_override", "state_path"]
