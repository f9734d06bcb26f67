"""The operating-mode decision (pure), its record keeping, the heartbeat contract and the override files."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest

from streams.apply.mode_state import (
    advance,
    emergency_windows,
    read_mode,
    read_override,
    set_override,
    state_path,
    write_json,
)
from streams.core.codec import DecodeError
from streams.core.modes import (
    EMERGENCY,
    NORMAL,
    RECOVERY,
    ModeDecision,
    ModeInputs,
    Override,
    decide_mode,
    decode_heartbeat,
    encode_heartbeat,
    heartbeat_record,
    heartbeat_topic,
)
from streams.runtime.settings import load_settings

T0 = 1_700_000_000_000  # ms
S = 1000

BASE = ModeInputs(side="local", now_ms=T0 + 60 * S, peer_last_seen_ms=T0 + 59 * S, watching_since_ms=T0,
                  peer_timeout_s=10, broker="127.0.0.1:19092", recovery_min_s=3)
OVR = Override(EMERGENCY, "alice", T0, "cloud down per phone")

# (id, changes to BASE, expected mode, words the reason must contain)
TABLE = [
    ("healthy", {}, NORMAL, ["remote side is reachable"]),
    ("peer silent past timeout", {"peer_last_seen_ms": T0 + 49 * S}, EMERGENCY, ["no heartbeat", "remote", "11.0 s"]),
    ("peer silent exactly timeout", {"peer_last_seen_ms": T0 + 50 * S}, NORMAL, []),
    ("peer never seen, within grace", {"peer_last_seen_ms": None, "watching_since_ms": T0 + 55 * S}, NORMAL,
     ["waiting for the first heartbeat"]),
    ("peer never seen, past grace", {"peer_last_seen_ms": None}, EMERGENCY, ["none since"]),
    ("restarted in emergency, peer not seen yet",
     {"peer_last_seen_ms": None, "watching_since_ms": T0 + 58 * S, "previous_mode": EMERGENCY}, EMERGENCY,
     ["first heartbeat"]),
    ("own publish failing", {"publish_failing": True, "publish_error": "_TRANSPORT: refused"}, EMERGENCY,
     ["broker at 127.0.0.1:19092", "_TRANSPORT: refused", "platsync link status"]),
    ("publish failing named before peer silence", {"publish_failing": True, "peer_last_seen_ms": T0}, EMERGENCY,
     ["cannot publish"]),
    ("emergency stays while peer silent", {"previous_mode": EMERGENCY, "peer_last_seen_ms": T0}, EMERGENCY, []),
    ("emergency -> recovery, nothing pending", {"previous_mode": EMERGENCY}, RECOVERY, ["nothing pending"]),
    ("emergency -> recovery, catching up", {"previous_mode": EMERGENCY, "catching_up": True}, RECOVERY,
     ["not yet applied"]),
    ("emergency -> recovery, conflicts", {"previous_mode": EMERGENCY, "open_conflicts": 2}, RECOVERY,
     ["2 open conflict"]),
    ("recovery holds while catching up",
     {"previous_mode": RECOVERY, "catching_up": True, "emergency_ended_ms": T0}, RECOVERY, ["not yet applied"]),
    ("recovery holds while catching up cannot be checked",
     {"previous_mode": RECOVERY, "catching_up": True, "catching_up_note": "cannot check: OperationalError: x",
      "emergency_ended_ms": T0}, RECOVERY, ["may not be applied yet (cannot check: OperationalError: x)"]),
    ("recovery holds while conflicts open",
     {"previous_mode": RECOVERY, "open_conflicts": 1, "emergency_ended_ms": T0}, RECOVERY, ["1 open conflict"]),
    ("recovery holds for the minimum time",
     {"previous_mode": RECOVERY, "emergency_ended_ms": T0 + 59 * S}, RECOVERY, ["confirming", "1.0 s so far"]),
    ("recovery -> normal when nothing pending",
     {"previous_mode": RECOVERY, "emergency_ended_ms": T0 + 50 * S}, NORMAL, ["recovery complete"]),
    ("recovery without a recorded outage end -> normal", {"previous_mode": RECOVERY}, NORMAL, []),
    ("recovery -> emergency when the peer goes silent again",
     {"previous_mode": RECOVERY, "catching_up": True, "peer_last_seen_ms": T0}, EMERGENCY, []),
    ("normal never goes to recovery for old conflicts", {"open_conflicts": 3}, NORMAL, ["3 open conflict",
                                                                                        "not caused by an outage"]),
    ("normal never goes to recovery for catching up", {"catching_up": True}, NORMAL, []),
    ("override wins over a healthy link", {"override": OVR}, EMERGENCY, ["set by operator at", "alice",
                                                                         "cloud down per phone", "--clear"]),
    ("override wins over a dead link",
     {"override": replace(OVR, mode=NORMAL), "publish_failing": True, "peer_last_seen_ms": None}, NORMAL,
     ["set by operator"]),
    ("override recovery", {"override": replace(OVR, mode=RECOVERY)}, RECOVERY, ["set by operator"]),
    ("cleared manual emergency passes through recovery", {"previous_mode": EMERGENCY}, RECOVERY, []),
    ("remote side names the local peer",
     {"side": "remote", "peer_last_seen_ms": T0}, EMERGENCY, ["no heartbeat from the local side"]),
]


@pytest.mark.parametrize(("changes", "mode", "words"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_decide_mode(changes: dict, mode: str, words: list[str]) -> None:
    decision = decide_mode(replace(BASE, **changes))
    assert decision.mode == mode, decision.reason
    for word in words:
        assert word in decision.reason


def test_override_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        Override("panic", "alice", T0)


def _walk(steps: list[tuple[int, str]]) -> dict:
    state: dict = {}
    for at, mode in steps:
        state = advance(state, ModeDecision(mode, f"why {mode} at {at}"), at)
    return state


def test_advance_records_transitions_and_every_emergency_window() -> None:
    state = _walk([(T0, NORMAL), (T0 + 1, NORMAL), (T0 + 10, EMERGENCY), (T0 + 11, EMERGENCY), (T0 + 20, RECOVERY),
                   (T0 + 30, NORMAL), (T0 + 40, EMERGENCY)])
    assert [(h["from"], h["to"], h["ts_ms"]) for h in state["history"]] == [
        (None, NORMAL, T0), (NORMAL, EMERGENCY, T0 + 10), (EMERGENCY, RECOVERY, T0 + 20),
        (RECOVERY, NORMAL, T0 + 30), (NORMAL, EMERGENCY, T0 + 40)]
    assert [(w["start_ts_ms"], w["end_ts_ms"]) for w in state["emergencies"]] == [(T0 + 10, T0 + 20), (T0 + 40, None)]
    assert state["last_emergency_end_ts_ms"] == T0 + 20
    assert state["since_ts_ms"] == T0 + 40 and state["since"].endswith("Z")
    assert state["reason"] == f"why emergency at {T0 + 40}"


def test_advance_updates_the_reason_of_an_unchanged_mode_without_a_transition() -> None:
    state = _walk([(T0, EMERGENCY), (T0 + 5, EMERGENCY)])
    assert len(state["history"]) == 1 and state["reason"].endswith(str(T0 + 5)) and state["since_ts_ms"] == T0


def test_advance_is_pure() -> None:
    before = _walk([(T0, EMERGENCY)])
    snapshot = repr(before)
    advance(before, ModeDecision(RECOVERY, "x"), T0 + 1)
    assert repr(before) == snapshot


def test_heartbeat_round_trip_and_topic() -> None:
    record = heartbeat_record("remote", T0, RECOVERY, "abc123")
    assert decode_heartbeat(encode_heartbeat(record)) == record
    with pytest.raises(ValueError):
        encode_heartbeat(heartbeat_record("cloud", T0, NORMAL, "x"))
    with pytest.raises(DecodeError):
        decode_heartbeat(b"\x50garbage-garbage")
    settings = load_settings(env={}, data_dir=Path("/nonexistent"), topic_prefix="acme")
    assert heartbeat_topic(settings) == "acme.heartbeat"


def test_override_files_and_read_mode(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    assert read_override(settings, "local") is None
    assert read_mode(settings, "local")["mode"] == "unknown"
    doc = set_override(settings, "local", EMERGENCY, "drill", set_by="bob", now_ms=T0)
    assert doc is not None and doc["set_at"].startswith("2023-11-14T22:13:20")
    assert read_override(settings, "local") == Override(EMERGENCY, "bob", T0, "drill")
    assert read_override(settings, "remote") is None
    with pytest.raises(ValueError):
        set_override(settings, "local", "panic")
    with pytest.raises(ValueError):
        set_override(settings, "cloud", NORMAL)
    assert set_override(settings, "local", None) is None and read_override(settings, "local") is None

    state = advance(advance({}, ModeDecision(EMERGENCY, "x"), T0), ModeDecision(RECOVERY, "y"), T0 + 5)
    write_json(state_path(settings, "local"), {**state, "updated_ts_ms": T0 + 5, "pid": 2**22 + 7})
    shown = read_mode(settings, "local", now_ms=T0 + 6)
    assert shown["mode"] == RECOVERY and not shown["running"] and shown["stale"]
    assert emergency_windows(settings, "local") == [(T0, T0 + 5)]


def test_mode_cli_parses_and_writes_override_without_a_server(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from streams.cli import mode as mode_cli

    parser = argparse.ArgumentParser(prog="platsync")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path)
    common.add_argument("--config", type=Path)
    mode_cli.register(parser.add_subparsers(dest="command", required=True), common)
    settings = load_settings(env={}, data_dir=tmp_path)

    args = parser.parse_args(["mode", "set", "emergency", "--side", "both", "--note", "drill",
                              "--data-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert read_override(settings, "remote").mode == EMERGENCY  # type: ignore[union-attr]
    assert "not running" in capsys.readouterr().out
    args = parser.parse_args(["mode", "set", "--clear", "--side", "remote", "--data-dir", str(tmp_path)])
    assert args.func(args) == 0 and read_override(settings, "remote") is None
    assert read_override(settings, "local") is not None
    args = parser.parse_args(["mode", "set", "--side", "local", "--data-dir", str(tmp_path)])
    assert args.func(args) == 2
    args = parser.parse_args(["mode", "show", "--json", "--data-dir", str(tmp_path)])
    assert args.func(args) == 0 and '"unknown"' in capsys.readouterr().out
