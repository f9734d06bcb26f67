"""The subscriber's store (connectors/stores/subscribed.py) against a real PostgreSQL (issue 15).

Feed messages applied in order, and again (at-least-once delivery): copies only of subscribed patients,
never an older version over a newer one, a withdrawal that a replayed old copy cannot undo, and an
unsubscription that removes every copy and ignores the ones still in flight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from connectors.stores.subscribed import apply_feed, create_subscribed_schema
from infra.local.databases import postgres_instance
from streams.runtime.connections import dsn
from streams.runtime.settings import Settings
from streams.sharing.feed import FeedMessage, subscribe_feed, unsubscribe_feed

pytestmark = pytest.mark.e2e
PDF = b"%PDF-1.7\n\x00\xff binary \xe8\xa8\x98"


@pytest.fixture()
def store(pg_settings: Settings) -> Iterator[Engine]:
    """A fresh ``fructos_subscribed`` database on the local PostgreSQL, dropped afterwards."""
    name = "fructos_subscribed"
    instance = postgres_instance(pg_settings, "local")
    instance.ensure_databases((name,))
    engine = create_engine(dsn(pg_settings, "local", name))
    with engine.begin() as conn:
        create_subscribed_schema(conn)
        create_subscribed_schema(conn)  # idempotent
        conn.execute(text("TRUNCATE signed_records, subscribed_patients, withdrawn_records, notifications, "
                          "notification_webhook"))
    yield engine
    engine.dispose()


def row(record_id: str, version: int, patient: str = "p-1", content: bytes = PDF) -> dict:
    return {"id": record_id, "entity": "document", "subject_id": "doc-1", "media_type": "application/pdf",
            "content": content, "content_hash": hashlib.sha256(content).hexdigest(), "signed_by": "dr-a",
            "approved": True, "shared": True, "patient_id": patient, "version": version, "deleted": False,
            "updated_at": "2026-12-01T09:00:00+09:00", "source_node": "hosp-a"}


def copy(record_id: str, version: int, patient: str = "p-1", content: bytes = PDF, seq: int = 0) -> FeedMessage:
    return FeedMessage("copy", "hosp-b", patient, f"e-{record_id}-{version}-{seq}", 1, record_id=record_id,
                       source_node="hosp-a", version=version, row=row(record_id, version, patient, content), seq=seq)


def withdraw(record_id: str, version: int, patient: str = "p-1", seq: int = 0) -> FeedMessage:
    return FeedMessage("withdraw", "hosp-b", patient, f"w-{record_id}-{version}-{seq}", 1, record_id=record_id,
                       source_node="hosp-a", version=version, seq=seq)


def held(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, version, patient_id, source_node, content FROM signed_records ORDER BY id"))]


def apply(engine: Engine, *messages: FeedMessage):  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return apply_feed(conn, messages)


def test_copies_of_a_subscribed_patient_only_byte_exact_and_never_older(store: Engine) -> None:
    opening = subscribe_feed("hosp-b", "p-1", [], "s1", 1)
    first = apply(store, *opening, copy("r1", 2), copy("r-other", 1, patient="p-2"))
    assert (first.subscribed, first.applied, first.unchanged) == (1, 1, 1)  # p-2 is not subscribed
    assert held(store) == [("r1", 2, "p-1", "hosp-a", PDF)]
    again = apply(store, *opening, copy("r1", 2), copy("r1", 1, content=b"older"))  # replay, then older
    assert (again.subscribed, again.applied, again.unchanged) == (0, 0, 3)
    newer = apply(store, copy("r1", 3, content=b"newer"))
    assert newer.applied == 1 and held(store) == [("r1", 3, "p-1", "hosp-a", b"newer")]


def test_a_withdrawal_wins_over_replayed_older_copies_and_yields_to_a_newer_publication(store: Engine) -> None:
    apply(store, *subscribe_feed("hosp-b", "p-1", [], "s1", 1), copy("r1", 2))
    assert apply(store, withdraw("r1", 3)).removed == 1 and held(store) == []
    replay = apply(store, copy("r1", 2), copy("r1", 3), withdraw("r1", 3))
    assert (replay.applied, replay.removed, held(store)) == (0, 0, [])
    assert apply(store, copy("r1", 4)).applied == 1 and [r[:2] for r in held(store)] == [("r1", 4)]
    assert apply(store, withdraw("r1", 3)).removed == 0  # an older withdrawal, replayed, changes nothing
    assert [r[:2] for r in held(store)] == [("r1", 4)]


def test_unsubscribe_removes_every_copy_and_ignores_copies_in_flight(store: Engine) -> None:
    apply(store, *subscribe_feed("hosp-b", "p-1", [], "s1", 1), *subscribe_feed("hosp-b", "p-2", [], "s2", 1),
          copy("r1", 1), copy("r2", 1), copy("r3", 1, patient="p-2"))
    result = apply(store, unsubscribe_feed("hosp-b", "p-1", "s1", 2), copy("r4", 1))  # r4 was in flight
    assert (result.unsubscribed, result.removed, result.applied, result.unchanged) == (1, 2, 0, 1)
    assert [r[0] for r in held(store)] == ["r3"]  # the other patient's copy stays
    resubscribed = apply(store, *subscribe_feed("hosp-b", "p-1", [("hosp-a", row("r1", 1), 1)], "s3", 3))
    assert (resubscribed.subscribed, resubscribed.applied) == (1, 1)
    assert [r[0] for r in held(store)] == ["r1", "r3"]


def test_each_change_of_the_store_is_one_notification_however_often_the_feed_is_replayed(store: Engine) -> None:
    feed = (*subscribe_feed("hosp-b", "p-1", [], "s1", 1), copy("r1", 1), copy("r1", 2), copy("r-old", 1),
            withdraw("r-old", 2), copy("r1", 1))  # the last: an older copy, changes nothing
    apply(store, *feed)
    apply(store, *feed)  # at-least-once: the whole feed again
    with store.connect() as conn:
        found = [tuple(r) for r in conn.execute(text(
            "SELECT message_id, kind, record_id, version, source_node FROM notifications ORDER BY created_at, kind"))]
    assert sorted(found) == sorted([("e-r1-1-0", "new", "r1", 1, "hosp-a"), ("e-r1-2-0", "changed", "r1", 2, "hosp-a"),
                                    ("e-r-old-1-0", "new", "r-old", 1, "hosp-a"),
                                    ("w-r-old-2-0", "withdrawn", "r-old", 2, "hosp-a")])


def test_a_copy_with_a_column_the_store_does_not_know_fails_loudly(store: Engine) -> None:
    apply(store, *subscribe_feed("hosp-b", "p-1", [], "s1", 1))
    bad = FeedMessage("copy", "hosp-b", "p-1", "e", 1, record_id="r9", source_node="hosp-a", version=1,
                      row={**row("r9", 1), "surprise": "x"})
    with pytest.raises(KeyError, match="surprise"):
        apply(store, bad)
    assert held(store) == []


def test_the_fan_outs_order_decides_between_states_of_the_same_version(store: Engine) -> None:
    """Two states of a conflict share version 2, and a copy may outrank a withdrawal at the same version: the
    later ``seq`` wins, and an earlier one, replayed, changes nothing."""
    apply(store, *subscribe_feed("hosp-b", "p-1", [], "s1", 1), copy("r1", 2, content=b"loser", seq=5))
    winner = apply(store, copy("r1", 2, content=b"winner", seq=7))
    assert winner.applied == 1 and held(store)[0][4] == b"winner"
    assert apply(store, copy("r1", 2, content=b"loser", seq=5)).applied == 0  # replayed: stays the winner
    assert apply(store, withdraw("r1", 2, seq=8)).removed == 1  # made private, at the same version
    assert apply(store, copy("r1", 2, content=b"winner", seq=7)).applied == 0  # the older copy stays out
    back = apply(store, copy("r1", 2, content=b"edited", seq=9))  # the copy that outranked the withdrawal
    assert back.applied == 1 and [(r[0], r[1], r[4]) for r in held(store)] == [("r1", 2, b"edited")]
    assert apply(store, copy("r1", 3, content=b"pre-seq")).applied == 0  # seq 0 (sent before seq existed) is older
