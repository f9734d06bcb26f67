"""The conflict rule: which version of a row both sides keep when it was changed on both. Pure.

The same row may be changed on both sides while the link between them is cut (update/update,
update/delete, approval/update). Each side then receives the other side's version while holding
its own. Both must end with the *same* version, chosen by the same rule, without asking each
other, and both must be able to tell a real conflict from an ordinary catch-up.

**The rule.** Every row state gets an ordering key, compared component by component; the state
with the greater key wins:

1. ``deleted`` -- a deleted row beats a live one ("deleted beats live");
2. ``approved`` (``approved`` is true, or ``status`` is ``'approved'``) -- an approved row beats an
   unapproved one ("approved beats unapproved");
3. ``version`` -- the higher version wins ("higher version");
4. ``content_hash`` (empty for tables without one) -- the greater hex digest wins ("higher content
   hash"); a META ``documents`` row and its FRUCtoS signed record share the hash, so they pick the
   version of the same side;
5. ``updated_at`` -- the later write wins ("later updated_at"); the only use of a wall clock, and
   only as a tie-break once everything above is equal;
6. the sha256 of the row's canonical JSON -- the greater digest wins ("higher row hash"); two
   different rows never tie, so the order is total.

**Why both sides converge.** Along the history of a row on any one side the key only grows: an
API write increments ``version`` and never turns ``deleted`` or ``approved`` back to false, and a
sink only ever replaces a row by one with a greater key (or by the other side's direct successor
of it, which is greater for the same reason). Each side therefore ends at the greatest key among
all the states it saw; every state written by an API on either side is captured and delivered to
the other side, so both saw the same states and keep the same one. Nothing depends on the order
or the number of deliveries (replays are no-ops), nor on either side's clock except as the
tie-break of step 5, and the decision reads only the two rows.

**What is recorded.** Each conflict is identified by the store, the row and the version that
lost (:func:`conflict_id`), so the two sides' detections of it share one id; a recorded loss
is superseded when the losing side's later version, built on it, arrives (:func:`superseded`).

**State identity** is ``(version, updated_at)``: the sinks copy rows verbatim, so the same state
has the same pair on both sides (and an API's copy of a record into another store must carry its
original's ``updated_at``, see ``PostgresSignedRecordStore.copy``). :func:`decide` uses it to
tell, for an incoming state A and the current row T: an insert, the same state, a replay, a
fast-forward (T is the state A was made on, or the last state received from the other side) or
a conflict (anything else).

Rows given to this module are *typed* (``datetime`` timestamps, ``date``, ``bytes``), as read from
PostgreSQL or produced by :func:`connectors.stores.tables.coerce_row`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

Row = Mapping[str, Any]

#: Why a key beat another one, per component of :class:`RankKey` (in comparison order).
RULES: tuple[str, ...] = ("deleted beats live", "approved beats unapproved", "higher version",
                          "higher content hash", "later updated_at", "higher row hash")


class State(NamedTuple):
    """The identity of one row state: ``(version, updated_at)``."""

    version: int
    updated_at: datetime


class RankKey:
    """The ordering key of a row state (see the module docstring); greater wins.

    The last component, the row hash, is computed only when the others tie (rarely: they
    include the state identity). A key rebuilt from bookkeeping has no row: two keys that
    agree on every other component then compare equal, as they name the same state.
    """

    __slots__ = ("prefix", "row", "_digest")

    def __init__(self, deleted: bool, approved: bool, version: int, content_hash: str, updated_at: datetime,
                 row: Mapping[str, Any] | None = None) -> None:
        #: Every component but the row hash: (deleted, approved, version, content_hash, updated_at).
        self.prefix: tuple[bool, bool, int, str, datetime] = (deleted, approved, version, content_hash,
                                                              updated_at)
        self.row = row
        self._digest: str | None = None

    deleted = property(lambda self: self.prefix[0], doc="the row is logically deleted")
    approved = property(lambda self: self.prefix[1], doc="the row is approved")
    version = property(lambda self: self.prefix[2], doc="the row's version")
    content_hash = property(lambda self: self.prefix[3], doc="the content hash, or ''")
    updated_at = property(lambda self: self.prefix[4], doc="updated_at in UTC")

    @property
    def state(self) -> State:
        """The state identity this key belongs to."""
        return State(self.prefix[2], self.prefix[4])

    @property
    def row_sha256(self) -> str | None:
        """sha256 of the row's canonical JSON (``None`` without a row); computed once, when asked."""
        if self._digest is None and self.row is not None:
            self._digest = row_sha256(self.row)
        return self._digest

    def __repr__(self) -> str:
        return f"RankKey{self.prefix!r}"

    def _cmp(self, other: RankKey) -> int:
        a, b = self.prefix, other.prefix
        if a == b:
            if self.row is None or other.row is None:
                return 0
            a, b = self.row_sha256 or "", other.row_sha256 or ""  # type: ignore[assignment]
        return (a > b) - (a < b)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RankKey) and self._cmp(other) == 0

    def __hash__(self) -> int:
        return hash(self.prefix)

    def __lt__(self, other: RankKey) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: RankKey) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: RankKey) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: RankKey) -> bool:
        return self._cmp(other) >= 0


def utc(value: Any) -> datetime:
    """A timestamp (``datetime`` or ISO 8601 text) as an aware UTC ``datetime``."""
    if isinstance(value, datetime) and value.tzinfo is UTC:
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"updated_at {value!r} is not a timestamp")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def jsonable(value: Any) -> Any:
    """One column value in canonical JSON form (UTC timestamps with microseconds, base64 bytes)."""
    if isinstance(value, datetime):
        return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def canonical_json(row: Row) -> str:
    """The row as canonical JSON: sorted keys, no spaces, UTF-8 text, values per :func:`jsonable`."""
    return json.dumps({k: jsonable(v) for k, v in row.items()}, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":"))


def row_sha256(row: Row) -> str:
    """sha256 hex digest of :func:`canonical_json` of the row."""
    return hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest()


def is_approved(row: Row) -> bool:
    """True for an approved signed record (``approved``) or META document (``status``)."""
    return row.get("approved") is True or row.get("status") == "approved"


def rank_key(row: Row) -> RankKey:
    """The ordering key of a (typed) row."""
    return RankKey(deleted=row.get("deleted") is True, approved=is_approved(row), version=int(row["version"]),
                   content_hash=str(row.get("content_hash") or ""), updated_at=utc(row["updated_at"]), row=row)


def state_of(row: Row) -> State:
    """The state identity ``(version, updated_at)`` of a row (typed, or in wire form)."""
    return State(int(row["version"]), utc(row["updated_at"]))


@dataclass(frozen=True)
class Verdict:
    """Which of two states wins, and the rule (component) that decided."""

    a_wins: bool
    rule: str


def compare(a: RankKey, b: RankKey) -> Verdict:
    """Compare two different states' keys: whether ``a`` wins and the deciding rule."""
    for index, (x, y) in enumerate(zip(a.prefix, b.prefix, strict=True)):
        if x != y:
            return Verdict(x > y, RULES[index])
    ha, hb = a.row_sha256, b.row_sha256
    if ha and hb and ha != hb:
        return Verdict(ha > hb, RULES[-1])
    return Verdict(False, "identical")


def conflict_id(store: str, table: str, row_id: str, loser: RankKey) -> str:
    """A conflict's id: the store, the row and the state that lost, whichever side computes it.

    The id names the *losing* version, not the pair: both sides always agree on which version
    of a row was discarded, but when one side sent several versions they may have seen the
    loser lose against different (successive) versions of the winning side.
    """
    if loser.row_sha256 is None:
        raise ValueError("conflict_id needs the lost row, not only its key")
    text = "\x1f".join((store, table, row_id, loser.row_sha256))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def superseded(open_losers: Mapping[str, State], known: Iterable[State]) -> list[str]:
    """Open conflicts made obsolete by an incoming version, sorted.

    ``open_losers`` maps the id of each open conflict of the row, in which a version of the
    *other* side lost here, to that lost state. If the incoming version descends from it (the
    lost state is among ``known``), the other side kept working on top of it: either that later
    version is kept (nothing of the lost one is missing), or it lost too and its own conflict
    now stands for both. Without this, a side that received the versions one by one would list
    an intermediate loss the other side never saw; with it, both sides list the same open conflicts.
    """
    states = set(known)
    return sorted(cid for cid, lost in open_losers.items() if lost in states)


#: Decision kinds of :func:`decide`.
INSERT, SAME, REPLAY, FAST_FORWARD, CONFLICT = "insert", "same", "replay", "fast_forward", "conflict"


@dataclass(frozen=True)
class Decision:
    """What to do with one incoming state A against the current row T."""

    kind: str  # insert | same | replay | fast_forward | conflict
    apply: bool  # write A over T
    rule: str = ""  # for a conflict: the rule that decided
    received: RankKey | None = None  # new "last received" bookkeeping, or None to keep it


def decide(incoming: RankKey, current: RankKey | None, received: RankKey | None,
           known_states: Iterable[State] = ()) -> Decision:
    """Decide for the incoming state A (``incoming``) against the current row T (``current``).

    ``received`` is the greatest state already received from the other side for this row;
    ``known_states`` the states A descends from that this side may hold: A's before-image and,
    when a batch carried several states of the row, the earlier ones and their before-images.
    In order:

    - T absent: insert A;
    - T is A's state: nothing to do;
    - A's key is not above the greatest key received: a replay, nothing to do;
    - T is a state A descends from, or the last state received: fast-forward, apply A;
    - otherwise a conflict: apply A iff its key is greater than T's, by the rule named.
    """
    newer = received is None or incoming > received
    bookkeeping = incoming if newer else None
    if current is None:
        return Decision(INSERT, True, received=bookkeeping)
    if current.prefix[2] == incoming.prefix[2] and current.prefix[4] == incoming.prefix[4]:
        return Decision(SAME, False, received=bookkeeping)
    if not newer:
        return Decision(REPLAY, False)
    if current.state in set(known_states) or (received is not None and current.state == received.state):
        return Decision(FAST_FORWARD, True, received=bookkeeping)
    verdict = compare(incoming, current)
    return Decision(CONFLICT, verdict.a_wins, verdict.rule, bookkeeping)
