"""route_subscribed() and the (un)subscribe writes, over a REAL captured Debezium event (issue 15).

Subscribers receive exactly what the cloud's shared store holds, narrowed to documents of the patients
they subscribed to, never copied back to the document's own institution.
"""

from __future__ import annotations

import dataclasses

import pytest

from streams.core.model import ChangeEvent
from streams.routing.matrix_model import Matrix
from streams.sharing.subscriptions import (
    SOURCE_COLUMN,
    SUBSCRIBED_STORE,
    route_subscribed,
    subscribe_writes,
    unsubscribe_writes,
)
from tests.unit.test_route import assert_imports_no_io_clients

SUBSCRIBERS = {"p-1": ("hosp-b", "hosp-c", "hosp-a"), "p-2": ("hosp-a",)}


def doc(captured: ChangeEvent, side: str = "local", api_id: str = "PRV_DOC_009", *, patient: str | None = "p-1",
        shared: bool = True, approved: bool = True, entity: str = "document", **more: object) -> ChangeEvent:
    assert captured.row is not None
    row = {**captured.row, "approved": approved, "shared": shared, "entity": entity}
    if patient is not None:
        row["patient_id"] = patient
    return dataclasses.replace(captured, source_side=side, origin_side=side, api_id=api_id, row=row,  # type: ignore[arg-type]
                               **more)


@pytest.mark.parametrize("side", ["local", "remote"])
def test_an_approved_shared_document_is_copied_to_every_other_subscriber(
        matrix: Matrix, captured: ChangeEvent, side: str) -> None:
    change = doc(captured, side)
    decision = route_subscribed(change, matrix, "hosp-a", SUBSCRIBERS)
    assert sorted(decision.writes) == ["hosp-b", "hosp-c"]  # not back to hosp-a, its own institution
    for node, (write,) in decision.writes.items():
        assert (write.target_side, write.target_store, write.op, write.key, write.version) == (
            node, SUBSCRIBED_STORE, "upsert", change.key, change.version)
        assert write.row == {**change.row, SOURCE_COLUMN: "hosp-a"}  # type: ignore[dict-item]


@pytest.mark.parametrize(("case", "reason"), [
    (dict(shared=False), None),  # a private document: withdrawn from every subscriber (below)
    (dict(api_id="PRV_DOC_006", approved=False), "not replicated"),  # not in the shared store
    (dict(entity="plat_user", api_id="PRV_USR_001"), "not a document"),
    (dict(patient=None), "names no patient"),
    (dict(patient="p-2"), "no other institution subscribes to patient p-2"),
    (dict(patient="p-9"), "no other institution subscribes to patient p-9"),
])
def test_what_is_not_copied_and_why(matrix: Matrix, captured: ChangeEvent, case: dict, reason: str | None) -> None:
    decision = route_subscribed(doc(captured, **case), matrix, "hosp-a", SUBSCRIBERS)
    if reason is None:
        assert {node: [w.op for w in ws] for node, ws in decision.writes.items()} == {
            "hosp-b": ["delete"], "hosp-c": ["delete"]}
    else:
        assert decision.writes == {} and reason in str(decision.skipped)


def test_a_share_change_of_an_approved_document_reaches_the_subscribers(
        matrix: Matrix, captured: ChangeEvent) -> None:
    made_private = doc(captured, "remote", "PRV_DOC_007", shared=False, op="u")
    made_private = dataclasses.replace(made_private, before={**made_private.row, "shared": True})  # type: ignore[dict-item]
    decision = route_subscribed(made_private, matrix, "hosp-a", SUBSCRIBERS)
    assert {node: ws[0].op for node, ws in decision.writes.items()} == {"hosp-b": "delete", "hosp-c": "delete"}


def test_subscribe_copies_what_the_shared_store_holds_and_unsubscribe_removes_it(captured: ChangeEvent) -> None:
    assert captured.row is not None
    row = {**captured.row, "patient_id": "p-1", "version": 7}
    held = [("hosp-a", {**row, "id": "r-a"}), ("hosp-b", {**row, "id": "r-b"}),
            ("hosp-c", {**row, "id": "r-u", "entity": "plat_user"})]
    writes = subscribe_writes("hosp-b", held)
    assert [(w.key, w.op, w.version, w.row[SOURCE_COLUMN], w.target_side) for w in writes] == [  # type: ignore[index]
        ("r-a", "upsert", 7, "hosp-a", "hosp-b")]  # not its own document, not a user's record
    removed = unsubscribe_writes("hosp-b", [w.row for w in writes if w.row is not None])
    assert [(w.key, w.op, w.version, w.row, w.origin_side) for w in removed] == [("r-a", "delete", 7, None, "hosp-a")]
    with pytest.raises(ValueError, match="version 'x' is not an integer"):
        subscribe_writes("hosp-b", [("hosp-a", {**row, "version": "x"})])


def test_the_subscription_router_imports_no_io_clients() -> None:
    assert_imports_no_io_clients("streams.sharing.subscriptions")
