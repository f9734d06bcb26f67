"""route_replica(): what a regional server's read-only copy receives, over REAL captured Debezium events.

The events are the captured PRV_DOC_006 signed-record insert (tests/fixtures/debezium) run through the
capture's stamper, then re-labelled per case (side, API, store, op), so that every case is a real row image.
"""

from __future__ import annotations

import dataclasses

import pytest

from streams.core.model import REPLICA_STORE, SIDE_STORES, ChangeEvent
from streams.routing.matrix_model import Matrix
from streams.routing.replica import replicated_api_ids, route_replica
from streams.routing.route import RoutingError, UndeclaredSourceError, UnknownApiError
from tests.unit.test_route import assert_imports_no_io_clients

# (source side, API) -> is a fructos_own change of it replicated into the region's fructos_patient?
# By hand from the seed matrix: the hospital's PRV_USR_001 / PRV_DOC_009 go to the cloud's shared store
# (local_to_remote targets), and the cloud's own PRV_USR_001 / PRV_DOC_009 write it directly (their
# remote_to_local source lists it). Nothing else ever reaches the shared store, so nothing else the region.
REPLICATED: dict[tuple[str, str], bool] = {
    (side, api): api in ("PRV_USR_001", "PRV_DOC_009")
    for side in ("local", "remote")
    for api in ("PRV_USR_001", "PRV_PAT_001", "PRV_DOC_006", "PRV_DOC_007", "PRV_DOC_008", "PRV_DOC_009")
}


def as_(change: ChangeEvent, side: str, api_id: str, **more: object) -> ChangeEvent:
    return dataclasses.replace(change, source_side=side, origin_side=side, api_id=api_id, **more)  # type: ignore[arg-type]


def test_the_table_covers_every_api_writing_fructos_own(matrix: Matrix) -> None:
    for side in ("local", "remote"):
        writing = {r.api_id for r in matrix.direction_for_source(side).routes if "fructos_own" in r.source}
        assert writing == {api for s, api in REPLICATED if s == side}
        assert set(replicated_api_ids(matrix, REPLICA_STORE, side)) == {
            api for (s, api), yes in REPLICATED.items() if s == side and yes}


@pytest.mark.parametrize(("side", "api_id"), sorted(REPLICATED), ids=lambda v: str(v))
def test_replica_table(matrix: Matrix, captured: ChangeEvent, side: str, api_id: str) -> None:
    change = as_(captured, side, api_id)
    decision = route_replica(change, matrix, REPLICA_STORE)
    if not REPLICATED[(side, api_id)]:
        assert decision.writes == () and decision.skipped and "not replicated" in decision.skipped
        return
    assert decision.skipped is None and len(decision.writes) == 1
    write = decision.writes[0]
    assert (write.target_store, write.table, write.op, write.key, write.version) == (
        REPLICA_STORE, "signed_records", "upsert", change.key, change.version)
    assert write.row == change.row and write.origin_side == side and write.api_id == api_id


@pytest.mark.parametrize("side", ["local", "remote"])
def test_a_delete_is_replicated_as_a_delete(matrix: Matrix, captured: ChangeEvent, side: str) -> None:
    change = as_(captured, side, "PRV_DOC_009", op="d", row=None, before=captured.row)
    (write,) = route_replica(change, matrix, REPLICA_STORE).writes
    assert (write.op, write.row, write.before) == ("delete", None, None)


def test_meta_and_keycloak_never_reach_the_region(matrix: Matrix, captured: ChangeEvent) -> None:
    for side in ("local", "remote"):
        for store in SIDE_STORES[side]:
            if store in ("fructos_own", REPLICA_STORE):
                continue
            api = "PRV_ATH_001" if store == "keycloak" else "PRV_DOC_009"
            decision = route_replica(as_(captured, side, api, source_store=store), matrix, REPLICA_STORE)
            assert decision.writes == () and "not replicated" in str(decision.skipped), (side, store)


def test_echoes_and_probes_are_skipped(matrix: Matrix, captured: ChangeEvent) -> None:
    echo = dataclasses.replace(as_(captured, "local", "PRV_DOC_009"), origin_side="remote")
    assert "echo" in str(route_replica(echo, matrix, REPLICA_STORE).skipped)
    probe = as_(captured, "local", "PRV_DOC_009", op="probe")
    assert "probe" in str(route_replica(probe, matrix, REPLICA_STORE).skipped)


def test_bad_changes_raise_precise_errors(matrix: Matrix, captured: ChangeEvent) -> None:
    with pytest.raises(UnknownApiError, match="'PRV_NOPE_001', which the matrix does not list for local_to_remote"):
        route_replica(as_(captured, "local", "PRV_NOPE_001"), matrix, REPLICA_STORE)
    with pytest.raises(UndeclaredSourceError, match="PRV_STF_001 wrote local 'fructos_own'"):
        route_replica(as_(captured, "local", "PRV_STF_001"), matrix, REPLICA_STORE)
    with pytest.raises(RoutingError, match="unknown source side 'region-1'"):
        route_replica(as_(captured, "region-1", "PRV_DOC_009"), matrix, REPLICA_STORE)


def test_the_replica_router_imports_no_io_clients() -> None:
    assert_imports_no_io_clients("streams.routing.replica")
