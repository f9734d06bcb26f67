"""The fan-out's record and its batches (connectors/stores/fanout_state.py) on a real PostgreSQL (issue 15).

A REAL captured signed-record event, re-labelled per case as in the router tables: a new subscription's
snapshot holds exactly the shared documents seen before its batch, later changes are routed live, an
unsubscription is sent once, and a withdrawal leaves the snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine

from connectors.stores.fanout_state import create_sharing_schema, fan_out, sharing_metadata
from infra.local.databases import postgres_instance
from streams.core.model import ChangeEvent
from streams.routing.matrix_model import Matrix, load_matrix
from streams.runtime.connections import dsn
from streams.runtime.settings import Settings
from tests.unit.test_envelope import captured_signed_record
from tests.unit.test_subscriptions_route import doc

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    return load_matrix()


@pytest.fixture()
def sharing(pg_settings: Settings) -> Iterator[Engine]:
    """A fresh ``sharing`` database on the cloud's PostgreSQL, emptied afterwards."""
    postgres_instance(pg_settings, "remote").ensure_databases(("sharing",))
    engine = create_engine(dsn(pg_settings, "remote", "sharing"))
    with engine.begin() as conn:
        create_sharing_schema(conn)
        conn.execute(text("TRUNCATE subscriptions, fanout_subscriptions, shared_documents"))
    yield engine
    engine.dispose()


def document(record_id: str, version: int, *, patient: str = "p-1", shared: bool = True,
             before: dict | None = None) -> ChangeEvent:
    base = doc(captured_signed_record(), patient=patient, shared=shared)
    row = {**base.row, "id": record_id, "version": version}  # type: ignore[dict-item]
    return dataclasses.replace(base, key=record_id, version=version, row=row, op="u" if before else "c",
                               before=before, event_id=f"e-{record_id}-{version}")


def subscribe(engine: Engine, node: str, patient: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(sharing_metadata().tables["subscriptions"]).values(
            node=node, patient_id=patient, subscribed_by="op"))


def batch(engine: Engine, matrix: Matrix, *changes: tuple[str, ChangeEvent]) -> list[tuple]:
    with engine.begin() as conn:
        messages = fan_out(conn, list(changes), matrix, now_ms=1)
    return [(m.kind, m.subscriber, m.patient_id, m.record_id, m.source_node, m.version) for m in messages]


def test_a_snapshot_holds_what_came_before_and_later_changes_are_routed_live(sharing: Engine,
                                                                            matrix: Matrix) -> None:
    assert batch(sharing, matrix, ("hosp-a", document("r1", 1)), ("hosp-b", document("r-b", 1)),
                 ("hosp-a", document("r-p2", 1, patient="p-2"))) == []  # nobody subscribes yet
    subscribe(sharing, "hosp-b", "p-1")
    assert batch(sharing, matrix, ("hosp-a", document("r2", 1))) == [
        ("subscribe", "hosp-b", "p-1", None, None, 0),
        ("copy", "hosp-b", "p-1", "r1", "hosp-a", 1),  # the snapshot: not its own r-b, not patient p-2
        ("copy", "hosp-b", "p-1", "r2", "hosp-a", 1)]  # this batch's change, routed live
    assert batch(sharing, matrix, ("hosp-a", document("r1", 2))) == [("copy", "hosp-b", "p-1", "r1", "hosp-a", 2)]
    assert batch(sharing, matrix, ("hosp-a", document("r1", 2))) == []  # a replayed batch is not sent again
    assert batch(sharing, matrix) == []  # opened once


def test_a_withdrawal_reaches_the_subscriber_and_leaves_later_snapshots(sharing: Engine, matrix: Matrix) -> None:
    subscribe(sharing, "hosp-b", "p-1")
    shared = document("r1", 1)
    batch(sharing, matrix, ("hosp-a", shared))
    private = document("r1", 2, shared=False, before=dict(shared.row))  # type: ignore[arg-type]
    assert batch(sharing, matrix, ("hosp-a", private)) == [("withdraw", "hosp-b", "p-1", "r1", "hosp-a", 2)]
    assert batch(sharing, matrix, ("hosp-a", shared)) == []  # a replay of the older copy: not sent again...
    subscribe(sharing, "hosp-c", "p-1")
    assert batch(sharing, matrix) == [("subscribe", "hosp-c", "p-1", None, None, 0)]  # ...nor in a snapshot


def test_an_unsubscription_is_sent_once_and_stops_the_copies(sharing: Engine, matrix: Matrix) -> None:
    subscribe(sharing, "hosp-b", "p-1")
    batch(sharing, matrix, ("hosp-a", document("r1", 1)))
    with sharing.begin() as conn:
        conn.execute(text("DELETE FROM subscriptions WHERE node = 'hosp-b'"))
    assert batch(sharing, matrix, ("hosp-a", document("r1", 2))) == [("unsubscribe", "hosp-b", "p-1", None, None, 0)]
    assert batch(sharing, matrix, ("hosp-a", document("r1", 3))) == []


def with_content(change: ChangeEvent, content_hash: str, side: str = "local") -> ChangeEvent:
    assert change.row is not None
    return dataclasses.replace(change, source_side=side, origin_side=side,
                               row={**change.row, "content_hash": content_hash})


def sent(engine: Engine, matrix: Matrix, *changes: tuple[str, ChangeEvent]) -> list[tuple]:
    """(kind, record, version, content_hash of the row, seq) of a batch's messages."""
    with engine.begin() as conn:
        messages = fan_out(conn, list(changes), matrix, now_ms=1)
    return [(m.kind, m.record_id, m.version, (m.row or {}).get("content_hash"), m.seq) for m in messages]


def test_the_two_states_of_a_conflict_rank_as_in_the_shared_store(sharing: Engine, matrix: Matrix) -> None:
    """During a cut both parties of a home link wrote version 2: the shared store's sink keeps the state of
    the greater rank (here the higher content hash), whatever order they arrive in; so does the fan-out, and
    the winner's seq is later than anything sent before."""
    subscribe(sharing, "hosp-b", "p-1")
    sent(sharing, matrix, ("hosp-a", document("r1", 1)))
    low, high = with_content(document("r1", 2), "1" * 64), with_content(document("r1", 2), "f" * 64, "remote")
    first = sent(sharing, matrix, ("hosp-a", high))
    assert [m[:4] for m in first] == [("copy", "r1", 2, "f" * 64)]
    assert sent(sharing, matrix, ("hosp-a", low)) == []  # the conflict's loser is not sent...
    subscribe(sharing, "hosp-c", "p-1")
    snapshot = sent(sharing, matrix)
    assert snapshot[1][:4] == ("copy", "r1", 2, "f" * 64) and snapshot[1][4] == first[0][4]  # ...nor snapshotted
    with sharing.begin() as conn:
        conn.execute(text("TRUNCATE shared_documents"))
    sent(sharing, matrix, ("hosp-a", document("r1", 1)))
    lower_first = sent(sharing, matrix, ("hosp-a", low), ("hosp-a", high))  # the other order: both are sent
    assert [m[:4] for m in lower_first] == [("copy", "r1", 2, "1" * 64)] * 2 + [("copy", "r1", 2, "f" * 64)] * 2
    assert lower_first[2][4] > lower_first[0][4] > first[0][4]  # in order, and never reused


def test_a_copy_that_outranks_a_withdrawal_at_the_same_version_is_sent(sharing: Engine, matrix: Matrix) -> None:
    """The hospital made the document private at version 2 while the cloud edited it at version 2; the
    edit won the conflict (higher content hash), so the shared store holds it and the subscriber must too."""
    subscribe(sharing, "hosp-b", "p-1")
    shared = document("r1", 1)
    sent(sharing, matrix, ("hosp-a", shared))
    private = with_content(document("r1", 2, shared=False, before=dict(shared.row)), "1" * 64)  # type: ignore[arg-type]
    edit = with_content(document("r1", 2, before=dict(shared.row)), "f" * 64, "remote")  # type: ignore[arg-type]
    withdrawn = sent(sharing, matrix, ("hosp-a", private))
    assert [m[:3] for m in withdrawn] == [("withdraw", "r1", 2)]
    back = sent(sharing, matrix, ("hosp-a", edit))
    assert [m[:4] for m in back] == [("copy", "r1", 2, "f" * 64)] and back[0][4] > withdrawn[0][4]
