"""The share gate in both routers, over a REAL captured Debezium event (issue 15, docs/sharing.md).

The event is the captured PRV_DOC_006 signed-record insert (tests/fixtures/debezium) run through the
capture's stamper, then re-labelled per case (side, API, op, approved/shared flags and before-image):
every case is a real row image with the flags a document has at that point of its life.
"""

from __future__ import annotations

import dataclasses

import pytest

from streams.core.model import REPLICA_STORE, ChangeEvent
from streams.routing.matrix_model import Matrix
from streams.routing.replica import route_replica
from streams.routing.route import UndeclaredSourceError, route
from tests.unit.test_route import assert_imports_no_io_clients


def doc(captured: ChangeEvent, side: str, api_id: str, *, approved: bool, shared: bool,
        was_shared: bool | None = None, store: str = "fructos_own", **more: object) -> ChangeEvent:
    """The captured record as written by ``api_id`` on ``side``: an update if ``was_shared`` is given."""
    assert captured.row is not None
    row = {**captured.row, "approved": approved, "shared": shared, "deleted": api_id == "PRV_DOC_008"}
    before = None if was_shared is None else {**row, "shared": was_shared, "version": int(row["version"]) - 1,
                                              "deleted": False}
    return dataclasses.replace(captured, source_side=side, origin_side=side, source_store=store, api_id=api_id,
                               row=row, before=before, op="c" if before is None else "u", **more)  # type: ignore[arg-type]


def ops(decision: object) -> dict[str, str]:
    return {w.target_store: w.op for w in decision.writes}  # type: ignore[attr-defined]


# (API, approved, was shared -> shared) -> the cloud's writes, by store. By hand from the rule: the matrix
# sends PRV_DOC_009's record to fructos_patient; a private document is withdrawn instead; every later change
# of an approved document that is or was shared (an update, a share change, a delete) reaches fructos_patient
# whatever API made it, so the copies stay current, and the delete of a shared document not approved yet is a
# withdrawal there; nothing else does (a private note not even by id).
HOME_LINK = [
    ("PRV_DOC_009", True, None, True, {"fructos_own": "upsert", "fructos_patient": "upsert"}),
    ("PRV_DOC_009", True, None, False, {"fructos_own": "upsert", "fructos_patient": "delete"}),
    ("PRV_DOC_007", True, True, False, {"fructos_own": "upsert", "fructos_patient": "delete"}),
    ("PRV_DOC_007", True, False, True, {"fructos_own": "upsert", "fructos_patient": "upsert"}),
    ("PRV_DOC_007", False, True, False, {"fructos_own": "upsert"}),  # not approved: in no shared store
    ("PRV_DOC_007", True, True, True, {"fructos_own": "upsert", "fructos_patient": "upsert"}),  # kept current
    ("PRV_DOC_007", True, False, False, {"fructos_own": "upsert"}),  # private before and after: stays out
    ("PRV_DOC_008", True, True, True, {"fructos_own": "upsert", "fructos_patient": "upsert"}),  # deleted there too
    ("PRV_DOC_008", True, False, False, {"fructos_own": "upsert"}),
    # Deleted before it was approved here: withdrawn there (the cloud may have approved it during a cut).
    ("PRV_DOC_008", False, True, True, {"fructos_own": "upsert", "fructos_patient": "delete"}),
    ("PRV_DOC_008", False, False, False, {"fructos_own": "upsert"}),  # a private note: not even its id
    ("PRV_DOC_006", False, None, False, {"fructos_own": "upsert"}),
]


@pytest.mark.parametrize(("api_id", "approved", "was_shared", "shared", "expected"), HOME_LINK)
def test_home_link_share_gate(matrix: Matrix, captured: ChangeEvent, api_id: str, approved: bool,
                              was_shared: bool | None, shared: bool, expected: dict[str, str]) -> None:
    change = doc(captured, "local", api_id, approved=approved, shared=shared, was_shared=was_shared)
    decision = route(change, matrix)
    assert ops(decision) == expected
    for w in decision.writes:  # a withdrawal carries the version that made the document private
        assert (w.key, w.version) == (change.key, change.version)
        assert (w.row, w.before) == ((change.row, change.before) if w.op == "upsert" else (change.row, None))


def test_the_cloud_side_never_writes_a_shared_store_on_the_hospital(matrix: Matrix, captured: ChangeEvent) -> None:
    for was_shared, shared in ((True, False), (False, True)):
        change = doc(captured, "remote", "PRV_DOC_007", approved=True, shared=shared, was_shared=was_shared)
        assert ops(route(change, matrix)) == {"fructos_own": "upsert"}


def test_records_without_a_share_state_pass_as_before(matrix: Matrix, captured: ChangeEvent) -> None:
    assert captured.row is not None
    user = dataclasses.replace(captured, api_id="PRV_USR_001", row={**captured.row, "entity": "plat_user",
                                                                     "shared": False})
    assert ops(route(user, matrix)) == {"fructos_own": "upsert", "fructos_patient": "upsert"}
    legacy = {k: v for k, v in captured.row.items() if k != "shared"}  # captured before the column existed
    old = dataclasses.replace(captured, api_id="PRV_DOC_009", row={**legacy, "approved": True})
    assert ops(route(old, matrix)) == {"fructos_own": "upsert", "fructos_patient": "upsert"}


def test_the_clouds_own_publish_and_withdrawal_in_its_shared_store_are_not_routed(
        matrix: Matrix, captured: ChangeEvent) -> None:
    published = doc(captured, "remote", "PRV_DOC_007", approved=True, shared=True, store="fructos_patient")
    assert "share gate" in str(route(published, matrix).skipped) and route(published, matrix).writes == ()
    withdrawn = dataclasses.replace(published, op="d", row=None, before=None)
    assert "share gate" in str(route(withdrawn, matrix).skipped)
    # Anything else an API writes outside its matrix sources is still an error.
    assert captured.row is not None
    patient = dataclasses.replace(published, row={**captured.row, "entity": "patient"})
    with pytest.raises(UndeclaredSourceError, match="PRV_DOC_007 wrote remote 'fructos_patient'"):
        route(patient, matrix)


# (side, API, approved, was shared -> shared) -> the region's write (None: nothing).
REPLICA = [
    ("local", "PRV_DOC_009", True, None, True, "upsert"),
    ("local", "PRV_DOC_009", True, None, False, "delete"),
    ("remote", "PRV_DOC_009", True, None, False, "delete"),
    ("local", "PRV_DOC_007", True, True, False, "delete"),
    ("remote", "PRV_DOC_007", True, True, False, "delete"),
    ("remote", "PRV_DOC_007", True, False, True, "upsert"),
    ("local", "PRV_DOC_007", False, True, False, None),
    ("local", "PRV_DOC_007", True, True, True, "upsert"),  # kept current
    ("remote", "PRV_DOC_008", True, True, True, "upsert"),
    ("local", "PRV_DOC_007", True, False, False, None),  # private before and after
    ("local", "PRV_DOC_006", False, None, True, None),
    ("local", "PRV_DOC_008", False, True, True, "delete"),  # deleted before approved: withdrawn
    ("remote", "PRV_DOC_008", False, True, True, "delete"),
    ("local", "PRV_DOC_008", False, False, False, None),
]


@pytest.mark.parametrize(("side", "api_id", "approved", "was_shared", "shared", "expected"), REPLICA)
def test_replica_share_gate(matrix: Matrix, captured: ChangeEvent, side: str, api_id: str, approved: bool,
                            was_shared: bool | None, shared: bool, expected: str | None) -> None:
    change = doc(captured, side, api_id, approved=approved, shared=shared, was_shared=was_shared)
    decision = route_replica(change, matrix, REPLICA_STORE)
    assert [w.op for w in decision.writes] == ([expected] if expected else [])
    if expected is None:
        assert "not replicated" in str(decision.skipped)


def test_the_gate_imports_no_io_clients() -> None:
    assert_imports_no_io_clients("streams.sharing.gate")
    assert_imports_no_io_clients("streams.sharing.rules")
