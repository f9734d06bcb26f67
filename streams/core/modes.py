"""Operating mode of one side (seed 003, WebORCA hybrid): ``normal``, ``emergency``, ``recovery``.

:func:`decide_mode` is a pure function of :class:`ModeInputs` (no clock, no I/O); the mode server
(``streams.apply.mode_server``) gathers the inputs every half second. The rules, in order:

1. **Operator override** wins, whatever else holds (``platsync mode set``); the reason says who set
   it and when. Clearing it returns to the automatic rules below, starting from the overridden
   mode (so a cleared manual emergency passes through ``recovery``, as the WebORCA procedure does).
2. **Emergency** when this side cannot publish its own heartbeat to the broker (it is cut off;
   this is named first because it is the cause an operator can act on), or when no heartbeat of
   the other side was seen for more than ``peer_timeout_s`` (measured from the start of watching
   when none was seen yet). A side restarted in emergency stays there until the first heartbeat
   of the other side arrives.
3. Leaving **emergency** always goes to **recovery** first: the link is back, and whatever was
   written on both sides during the outage must now be exchanged.
4. **Recovery** holds while captured changes are not yet applied (``catching_up``), while
   conflicts are open, and for at least ``recovery_min_s`` after the emergency ended (so a
   catch-up that has not started to show yet is not missed); then **normal**.
5. **Normal** stays normal: conflicts that are open while nothing was cut off (for example left
   over from an earlier outage, or from concurrent edits on a healthy link) are reported in the
   reason but never switch a healthy side to recovery. Only an outage opens a recovery.

Freshness is judged by the heartbeat's ``sent_ts_ms`` against this side's clock (the broker's
offsets and high watermark are not trustworthy, see the brief), so both sides' clocks must agree
to well within ``peer_timeout_s`` (NTP; trivially true on the embedded one-machine stack).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from streams.core.codec import decode, encode
from streams.core.model import other_side

NORMAL, EMERGENCY, RECOVERY = "normal", "emergency", "recovery"
MODES: tuple[str, ...] = (NORMAL, EMERGENCY, RECOVERY)
HEARTBEAT_CONTRACT = "heartbeat"
#: The API response header naming the mode of the environment that answered (seed 003, section 5(2)).
HYBRIDMODE_HEADER = "X-Hybridmode"
#: The side that is the seed's emergency environment (応急措置環境): the hospital's own, ``local``.
EMERGENCY_ENVIRONMENT_SIDE = "local"


def hybridmode(side: str, mode: str) -> str:
    """The ``X-Hybridmode`` value an API of ``side`` answers in ``mode`` (seed 003, section 5(2)).

    The operating environment (運用環境, the cloud: ``remote``) answers the mode itself, ``normal``,
    ``emergency`` or ``recovery``; the emergency environment (応急措置環境, the hospital: ``local``)
    answers it with the suffix ``-fa``: ``normal-fa``, ``emergency-fa``, ``recovery-fa``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    other_side(side)  # a ValueError for an unknown side
    return f"{mode}-fa" if side == EMERGENCY_ENVIRONMENT_SIDE else mode


class _HasTopicPrefix(Protocol):
    topic_prefix: str


def heartbeat_topic(settings: _HasTopicPrefix) -> str:
    """The topic both sides' heartbeats go to (one partition; both sides read partition 0)."""
    return f"{settings.topic_prefix}.heartbeat"


def iso_ms(ts_ms: int | None) -> str | None:
    """``ts_ms`` as an ISO 8601 UTC time with milliseconds (None stays None)."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Override:
    """A mode set by an operator; it holds until cleared."""

    mode: str
    set_by: str
    set_ts_ms: int
    note: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")


@dataclass(frozen=True)
class ModeInputs:
    """Everything :func:`decide_mode` looks at. Times are wall-clock ms since the epoch."""

    side: str
    now_ms: int
    peer_last_seen_ms: int | None  # newest sent_ts_ms of the other side's heartbeats seen, None: never
    watching_since_ms: int  # when this process started to listen for the other side
    peer_timeout_s: float
    publish_failing: bool = False  # this side's own heartbeat is not acknowledged by the broker
    publish_error: str = ""  # what the Kafka client said about it (for the reason)
    broker: str = ""  # host:port of the broker (for the reason)
    previous_mode: str = NORMAL
    emergency_ended_ms: int | None = None  # when the last emergency ended (None: none ended)
    catching_up: bool = False  # captured changes not yet applied (either direction)
    catching_up_note: str = ""  # set when catching_up is assumed because it could not be checked
    open_conflicts: int = 0
    override: Override | None = None
    recovery_min_s: float = 0.0


@dataclass(frozen=True)
class ModeDecision:
    """The mode a side is in, and why (one line an operator can act on)."""

    mode: str
    reason: str


def _pending(inputs: ModeInputs) -> list[str]:
    pending = []
    if inputs.catching_up:
        pending.append(f"captured changes may not be applied yet ({inputs.catching_up_note})"
                       if inputs.catching_up_note else "captured changes not yet applied")
    if inputs.open_conflicts > 0:
        pending.append(f"{inputs.open_conflicts} open conflict(s) to resolve")
    return pending


def decide_mode(inputs: ModeInputs) -> ModeDecision:
    """The mode of ``inputs.side`` now (see the module docstring for the rules)."""
    peer = other_side(inputs.side)
    if inputs.override is not None:
        o = inputs.override
        note = f": {o.note}" if o.note else ""
        return ModeDecision(o.mode, f"set by operator at {iso_ms(o.set_ts_ms)} by {o.set_by}{note} "
                                    "(automatic switching suspended until 'platsync mode set --clear')")

    if inputs.publish_failing:
        broker = f" at {inputs.broker}" if inputs.broker else ""
        error = f" ({inputs.publish_error})" if inputs.publish_error else ""
        return ModeDecision(EMERGENCY, f"cannot publish this side's heartbeat to the broker{broker}{error}: "
                                       f"this side is cut off from the {peer} side; check that the broker runs "
                                       "and that the link is up ('platsync link status')")

    last = inputs.peer_last_seen_ms
    silent_ms = inputs.now_ms - (last if last is not None else inputs.watching_since_ms)
    if silent_ms > inputs.peer_timeout_s * 1000:
        seen = f"last seen at {iso_ms(last)}" if last is not None else f"none since {iso_ms(inputs.watching_since_ms)}"
        return ModeDecision(EMERGENCY, f"no heartbeat from the {peer} side for {silent_ms / 1000:.1f} s "
                                       f"(timeout {inputs.peer_timeout_s:g} s; {seen}): the {peer} side "
                                       "or its connection to the broker is down")
    if last is None and inputs.previous_mode == EMERGENCY:
        return ModeDecision(EMERGENCY, f"waiting for the first heartbeat of the {peer} side since this "
                                       "process started (it was in emergency before)")

    pending = _pending(inputs)
    if inputs.previous_mode == EMERGENCY:
        what = "; ".join(pending) if pending else "nothing pending"
        return ModeDecision(RECOVERY, f"the {peer} side is reachable again; catching up after the outage: {what}")
    if inputs.previous_mode == RECOVERY:
        if pending:
            return ModeDecision(RECOVERY, f"recovering after the outage: {'; '.join(pending)}")
        if inputs.emergency_ended_ms is not None:
            settled_ms = inputs.now_ms - inputs.emergency_ended_ms
            if settled_ms < inputs.recovery_min_s * 1000:
                return ModeDecision(RECOVERY, f"nothing pending; confirming for {inputs.recovery_min_s:g} s after "
                                              f"the outage ended ({settled_ms / 1000:.1f} s so far)")
        return ModeDecision(NORMAL, "recovery complete: every captured change applied, no open conflict")

    if last is None:
        return ModeDecision(NORMAL, f"waiting for the first heartbeat of the {peer} side (emergency if none "
                                    f"within {inputs.peer_timeout_s:g} s of start)")
    if inputs.open_conflicts > 0:
        return ModeDecision(NORMAL, f"the {peer} side is reachable; {inputs.open_conflicts} open conflict(s) "
                                    "not caused by an outage (see the conflict list)")
    return ModeDecision(NORMAL, f"the {peer} side is reachable")


def heartbeat_record(side: str, now_ms: int, mode: str, incarnation: str) -> dict[str, Any]:
    """The heartbeat message of ``side`` (``schemas/heartbeat.avsc``)."""
    return {"side": side, "sent_ts_ms": now_ms, "mode": mode, "incarnation": incarnation}


def encode_heartbeat(record: dict[str, Any]) -> bytes:
    """Avro-encode a heartbeat with the project's framing (:func:`streams.core.codec.encode`)."""

    return encode(HEARTBEAT_CONTRACT, record)


def decode_heartbeat(data: bytes | None) -> dict[str, Any]:
    """Decode a heartbeat; raises :class:`streams.core.codec.DecodeError` on anything else."""

    return decode(HEARTBEAT_CONTRACT, data)
