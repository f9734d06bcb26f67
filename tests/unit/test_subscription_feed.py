"""A subscriber's feed messages (streams/sharing/feed.py), over a REAL captured Debezium event (issue 15).

The fan-out writes these to ``platsync.<node>.sub``: what each message kind carries, that the contract
round-trips them byte for byte (bytea included), and that a corrupt or inconsistent message is refused
with a DecodeError rather than applied.
"""

from __future__ import annotations

import pytest

from streams.core.codec import DecodeError, encode
from streams.core.model import ChangeEvent
from streams.routing.matrix_model import Matrix
from streams.sharing.feed import (
    FeedMessage,
    decode_feed_message,
    encode_feed_message,
    feed_for_change,
    feed_topic,
    subscribe_feed,
    unsubscribe_feed,
)
from streams.sharing.subscriptions import SOURCE_COLUMN
from tests.unit.test_route import assert_imports_no_io_clients
from tests.unit.test_subscriptions_route import SUBSCRIBERS, doc


def test_a_shared_document_becomes_one_copy_message_per_other_subscriber(matrix: Matrix,
                                                                        captured: ChangeEvent) -> None:
    change = doc(captured)
    feed = feed_for_change(change, matrix, "hosp-a", SUBSCRIBERS)
    assert sorted(feed) == ["hosp-b", "hosp-c"]
    for node, (message,) in feed.items():
        assert (message.kind, message.subscriber, message.patient_id, message.record_id, message.source_node,
                message.version) == ("copy", node, "p-1", change.key, "hosp-a", change.version)
        assert message.row == {**change.row, SOURCE_COLUMN: "hosp-a"}  # type: ignore[dict-item]
        assert message.message_id == f"{change.event_id}@{node}"  # stable across replays of the event
        assert message.source_commit_ts_ms == change.commit_ts_ms


def test_a_document_made_private_becomes_a_withdraw_message_naming_its_home(matrix: Matrix,
                                                                           captured: ChangeEvent) -> None:
    before = {**doc(captured).row}  # type: ignore[dict-item]
    change = doc(captured, api_id="PRV_DOC_007", shared=False, op="u", before=before)
    feed = feed_for_change(change, matrix, "hosp-a", SUBSCRIBERS)
    assert sorted(feed) == ["hosp-b", "hosp-c"]
    for message in (m for messages in feed.values() for m in messages):
        assert (message.kind, message.source_node, message.row, message.version) == (
            "withdraw", "hosp-a", None, change.version)


def test_nothing_for_a_private_note_another_patient_or_the_home_itself(matrix: Matrix,
                                                                      captured: ChangeEvent) -> None:
    # Not even a withdrawal naming it: a private note written, or edited while private, was never shared.
    assert feed_for_change(doc(captured, shared=False), matrix, "hosp-a", SUBSCRIBERS) == {}
    private_before = {**doc(captured, shared=False).row}  # type: ignore[dict-item]
    edited = doc(captured, shared=False, op="u", before=private_before)
    assert feed_for_change(edited, matrix, "hosp-a", SUBSCRIBERS) == {}
    assert feed_for_change(doc(captured, patient="p-9"), matrix, "hosp-a", SUBSCRIBERS) == {}
    assert feed_for_change(doc(captured, patient="p-2"), matrix, "hosp-a", SUBSCRIBERS) == {}


def test_a_subscription_opens_with_its_snapshot_of_other_institutions_documents(captured: ChangeEvent) -> None:
    row = {**doc(captured).row, "version": 3}  # type: ignore[dict-item]
    other_patient = {**row, "id": "other", "patient_id": "p-2"}
    own = {**row, "id": "own"}
    messages = subscribe_feed("hosp-b", "p-1", [("hosp-a", row, 41), ("hosp-a", other_patient, 42),
                                                ("hosp-b", own, 43)], "sub-7", 1_700_000_000_000)
    assert [(m.kind, m.record_id) for m in messages] == [("subscribe", None), ("copy", row["id"])]
    assert messages[1].row == {**row, SOURCE_COLUMN: "hosp-a"} and messages[1].version == 3
    assert messages[1].seq == 41  # the fan-out's order of the state it copies
    assert len({m.message_id for m in messages}) == 2
    closing = unsubscribe_feed("hosp-b", "p-1", "sub-7", 1_700_000_000_001)
    assert (closing.kind, closing.patient_id, closing.record_id) == ("unsubscribe", "p-1", None)


def test_every_kind_round_trips_through_the_contract(matrix: Matrix, captured: ChangeEvent) -> None:
    change = doc(captured)
    assert any(isinstance(v, bytes) for v in change.row.values())  # type: ignore[union-attr]  # bytea content
    messages = [*feed_for_change(change, matrix, "hosp-a", SUBSCRIBERS)["hosp-b"],
                *subscribe_feed("hosp-b", "p-1", [], "s", 1), unsubscribe_feed("hosp-b", "p-1", "s", 2),
                FeedMessage("withdraw", "hosp-b", "p-1", "m", 3, record_id="r", source_node="hosp-a", version=4)]
    for message in messages:
        assert decode_feed_message(encode_feed_message(message)) == message


def test_a_corrupt_or_inconsistent_message_is_refused(matrix: Matrix, captured: ChangeEvent) -> None:
    good = encode_feed_message(unsubscribe_feed("hosp-b", "p-1", "s", 2))
    with pytest.raises(DecodeError, match="too short"):
        decode_feed_message(good[:5])
    with pytest.raises(DecodeError, match="another contract"):
        decode_feed_message(good[:1] + b"\x00" * 8 + good[9:])
    copy_without_row = encode("subscription_message", {
        "kind": "copy", "subscriber": "hosp-b", "patient_id": "p-1", "record_id": "r", "source_node": "hosp-a",
        "version": 1, "row": None, "message_id": "m", "source_commit_ts_ms": 1})
    with pytest.raises(DecodeError, match="carries the document's row"):
        decode_feed_message(copy_without_row)
    with pytest.raises(ValueError, match="expected one of"):
        FeedMessage("publish", "hosp-b", "p-1", "m", 1)


def test_feed_topics_are_per_subscriber() -> None:
    assert feed_topic("platsync", "hosp-b") == "platsync.hosp-b.sub"
    assert feed_topic("platsync", "hosp-b") != feed_topic("platsync", "hosp-c")


def test_the_feed_is_pure() -> None:
    assert_imports_no_io_clients("streams.sharing.feed")
