"""The recovery report's default window: from the last contact of the two sides, not the detection.

A cut is detected only a timeout after it happens; a record entered in between belongs to the
outage. Each emergency records the last heartbeat of the other side received before it
(``contact_ts_ms``), the report's window starts there; emergencies recorded before that was kept
start at their detection, and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.apply.mode_server import ModeServer
from streams.apply.mode_state import (
    EmergencyWindow,
    advance,
    emergencies,
    emergency_windows,
    known_contact,
    state_path,
    write_json,
)
from streams.core.modes import EMERGENCY, NORMAL, RECOVERY, ModeDecision
from streams.ops.recovery_report import Entry, Window, as_json, outage_window, render
from streams.runtime.settings import Settings, load_settings

T0 = 1_700_000_000_000  # ms
S = 1000


def test_known_contact_keeps_the_newest_and_none_means_never() -> None:
    assert known_contact(None, None) is None
    assert known_contact(T0, None) == T0
    assert known_contact(None, T0) == T0
    assert known_contact(T0 + 5, T0) == T0 + 5  # a restarted process has not heard the peer yet
    assert known_contact(T0, T0 + 5) == T0 + 5


def test_an_emergency_records_the_last_contact_and_keeps_it_when_it_ends() -> None:
    state = advance({}, ModeDecision(NORMAL, "ok"), T0)
    state = advance(state, ModeDecision(EMERGENCY, "cut"), T0 + 10 * S, T0 + 1 * S)
    (window,) = state["emergencies"]
    assert window["start_ts_ms"] == T0 + 10 * S
    assert window["contact_ts_ms"] == T0 + S and window["contact"].startswith("2023-11-14T22:13:21.000")
    state = advance(state, ModeDecision(EMERGENCY, "still cut"), T0 + 11 * S, T0 + 11 * S)
    assert state["emergencies"][0]["contact_ts_ms"] == T0 + S  # recorded once, when it opens
    state = advance(state, ModeDecision(RECOVERY, "back"), T0 + 20 * S, T0 + 19 * S)
    assert state["emergencies"] == [{**window, "end_ts_ms": T0 + 20 * S, "end": state["emergencies"][0]["end"]}]


def test_a_contact_after_the_detection_is_clamped_and_none_is_kept_as_unknown() -> None:
    ahead = advance({}, ModeDecision(EMERGENCY, "cut"), T0, T0 + 300)  # the peer's clock runs ahead
    assert ahead["emergencies"][0]["contact_ts_ms"] == T0
    unknown = advance({}, ModeDecision(EMERGENCY, "cut"), T0)
    assert unknown["emergencies"][0]["contact_ts_ms"] is None


def test_emergencies_read_the_contact_and_older_files_without_it(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    legacy = {"start_ts_ms": T0, "end_ts_ms": T0 + 5 * S, "reason": "x"}  # written before contact_ts_ms existed
    current = {"start_ts_ms": T0 + 60 * S, "end_ts_ms": None, "contact_ts_ms": T0 + 52 * S}
    write_json(state_path(settings, "local"), {"emergencies": [legacy, current]})
    assert emergencies(settings, "local") == [EmergencyWindow("local", T0, T0 + 5 * S, None),
                                              EmergencyWindow("local", T0 + 60 * S, None, T0 + 52 * S)]
    assert emergency_windows(settings, "local") == [(T0, T0 + 5 * S), (T0 + 60 * S, None)]
    assert emergencies(settings, "remote") == []


def W(side: str, start: int, end: int | None, contact: int | None) -> EmergencyWindow:  # noqa: N802 - table helper
    return EmergencyWindow(side, start, end, contact)


def test_outage_window_starts_at_the_last_contact_of_the_latest_outage() -> None:
    assert outage_window([]) is None
    cut = T0 + 100 * S
    windows = [W("local", T0, T0 + 20 * S, T0 - 3 * S),  # an earlier outage: ignored
               W("local", cut + 5 * S, cut + 60 * S, cut - 1500),  # cut off: publishing failed first
               W("remote", cut + 10 * S, cut + 59 * S, cut - 400)]  # the peer's silence, later
    window = outage_window(windows)
    assert window == Window(cut - 1500, cut + 59 * S, "last_contact", cut + 5 * S)
    assert "last heartbeat" in window.note() and "detected at" in window.note()


def test_outage_window_of_one_side_and_of_an_open_emergency() -> None:
    window = outage_window([W("remote", T0 + 10 * S, None, T0 + S)])
    assert window == Window(T0 + S, None, "last_contact", T0 + 10 * S)


def test_outage_window_from_an_older_mode_state_starts_at_the_detection_and_says_so() -> None:
    window = outage_window([W("local", T0 + 5 * S, T0 + 30 * S, None), W("remote", T0 + 10 * S, T0 + 29 * S, None)])
    assert window == Window(T0 + 5 * S, T0 + 29 * S, "detection", T0 + 5 * S)
    assert "predates" in window.note() and "--since" in window.note()
    mixed = outage_window([W("local", T0 + 5 * S, None, None), W("remote", T0 + 10 * S, None, T0 + S)])
    assert mixed is not None and mixed.start_ms == T0 + S and mixed.basis == "detection"


def test_a_window_given_by_hand_has_no_note() -> None:
    assert Window(T0, None).note() == "" and Window(T0, None).basis == "given"


def test_render_and_json_show_where_the_window_starts() -> None:
    entry = Entry("local", "meta", "documents", "d1", "0000000001", 1, "2023-11-14T22:13:21.500+00:00",
                  "PRV_DOC_006", "copyable", "not yet on remote")
    window = Window(T0 + S, None, "last_contact", T0 + 6 * S)
    text = render([entry], window.start_ms, window.end_ms, window.note())
    first, second = text.splitlines()[:2]
    assert first == "records entered between 2023-11-14T22:13:21.000+00:00 and now"
    assert second == "window starts at the last heartbeat the sides exchanged before the outage " \
                     "(detected at 2023-11-14T22:13:26.000+00:00)"
    assert render([entry], T0, None).splitlines()[1].startswith("local: 1 entered")  # no note, as before
    doc: dict[str, Any] = as_json([entry], window.start_ms, window.end_ms, window)
    assert doc["window"] == {"start": "2023-11-14T22:13:21.000+00:00", "end": None, "basis": "last_contact",
                             "detected": "2023-11-14T22:13:26.000+00:00", "note": window.note()}
    assert as_json([entry], T0, None)["window"] == {"start": "2023-11-14T22:13:20.000+00:00", "end": None}


class _Link:
    """Stands in for the heartbeat link: what the decision reads from it."""

    def __init__(self, peer_seen_ms: int | None, failing: bool) -> None:
        self.peer_seen_ms, self.failing = peer_seen_ms, failing

    def snapshot(self, at_ms: int) -> dict[str, Any]:
        peer = {} if self.peer_seen_ms is None else {"last_seen_ts_ms": self.peer_seen_ms}
        return {"peer": peer, "publish_failing": self.failing, "publish_error": "cut" if self.failing else "",
                "last_ack_ts_ms": at_ms}


def _server(settings: Settings, link: _Link) -> ModeServer:
    server = ModeServer(settings, "local", port=0, peer_timeout_s=10, catching_up=lambda s, side: False,
                        open_conflicts=lambda s: 0)
    server.link = link  # type: ignore[assignment]
    return server


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=tmp_path)


def test_the_mode_server_records_the_last_heartbeat_received_in_the_emergency(settings: Settings) -> None:
    link = _Link(T0, failing=False)
    server = _server(settings, link)
    assert server.decide_once()["last_contact_ts_ms"] == T0
    link.peer_seen_ms, link.failing = None, True  # heartbeats lost with the link (a restart would do the same)
    state = server.decide_once()
    assert state["mode"] == EMERGENCY and state["last_contact_ts_ms"] == T0
    assert state["emergencies"][-1]["contact_ts_ms"] == T0


def test_a_restarted_mode_server_keeps_the_last_contact_of_the_previous_process(settings: Settings) -> None:
    write_json(state_path(settings, "local"), {"mode": NORMAL, "last_contact_ts_ms": T0, "peer_last_seen_ts_ms": T0})
    state = _server(settings, _Link(None, failing=True)).decide_once()
    assert state["mode"] == EMERGENCY and state["emergencies"][-1]["contact_ts_ms"] == T0
    # a state file from before last_contact_ts_ms was kept: its peer's last heartbeat is the contact
    write_json(state_path(settings, "local"), {"mode": NORMAL, "peer_last_seen_ts_ms": T0 + S})
    assert _server(settings, _Link(None, failing=True)).decide_once()["emergencies"][-1]["contact_ts_ms"] == T0 + S


def test_a_mode_server_that_never_heard_the_peer_counts_from_when_it_started_watching(settings: Settings) -> None:
    server = _server(settings, _Link(None, failing=True))
    state = server.decide_once()
    assert state["last_contact_ts_ms"] is None
    assert state["emergencies"][-1]["contact_ts_ms"] == server.watching_since_ms
