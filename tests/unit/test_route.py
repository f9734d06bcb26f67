"""route(): every API x direction x source store against a literal table, plus skips and errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.core.model import ROUTES, SIDE_STORES, ChangeEvent, Write
from streams.routing.matrix_model import Matrix, load_matrix
from streams.routing.route import RoutingError, UndeclaredSourceError, UnknownApiError, route

REPO = Path(__file__).resolve().parents[2]

# (route, API) -> {source store: target stores written on the other side}. Written by hand from the
# seed tables and the feeds rule (fructos_patient <- fructos_own); a store absent here is one the API
# may not write (UndeclaredSourceError); () means captured but deliberately skipped.
EXPECTED: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("local_to_remote", "PRV_USR_001"): {"meta": ("meta",), "fructos_own": ("fructos_own", "fructos_patient")},
    ("local_to_remote", "PRV_PAT_001"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("local_to_remote", "PRV_STF_001"): {"meta": ("meta",)},
    ("local_to_remote", "PRV_STF_003"): {"meta": ("meta",), "keycloak": ("keycloak",)},
    ("local_to_remote", "PRV_ATH_001"): {"keycloak": ("keycloak",)},
    ("local_to_remote", "PRV_DOC_006"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("local_to_remote", "PRV_DOC_007"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("local_to_remote", "PRV_DOC_008"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("local_to_remote", "PRV_DOC_009"): {"meta": ("meta",), "fructos_own": ("fructos_own", "fructos_patient")},
    ("remote_to_local", "PRV_USR_001"): {"meta": ("meta",), "fructos_own": ("fructos_own",), "fructos_patient": ()},
    ("remote_to_local", "PRV_PAT_001"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("remote_to_local", "PRV_STF_001"): {"meta": ("meta",)},
    ("remote_to_local", "PRV_STF_003"): {"meta": ("meta",), "keycloak": ("keycloak",)},
    ("remote_to_local", "PRV_ATH_001"): {"keycloak": ("keycloak",)},
    ("remote_to_local", "PRV_DOC_006"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("remote_to_local", "PRV_DOC_007"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("remote_to_local", "PRV_DOC_008"): {"meta": ("meta",), "fructos_own": ("fructos_own",)},
    ("remote_to_local", "PRV_DOC_009"): {"meta": ("meta",), "fructos_own": ("fructos_own",), "fructos_patient": ()},
    # The engine's own, one way (docs/master.md): the hospital's master reaches the cloud's META; the cloud has no
    # master API, so a change stamped with one there is refused.
    ("local_to_remote", "PLAT_MST_001"): {"meta": ("meta",)},
    ("local_to_remote", "PLAT_MST_002"): {"meta": ("meta",)},
    ("remote_to_local", "PLAT_MST_001"): {},
    ("remote_to_local", "PLAT_MST_002"): {},
}

CASES = [(name, api_id, store) for (name, api_id) in EXPECTED for store in SIDE_STORES[ROUTES[name][0]]]


def make_change(**overrides: Any) -> ChangeEvent:
    """A plausible captured insert on local META by PRV_DOC_006; override any field."""
    fields: dict[str, Any] = {
        "event_id": "evt-1",
        "source_side": "local",
        "source_store": "meta",
        "table": "documents",
        "op": "c",
        "key": '{"id": 42}',
        "version": 3,
        "row": {"id": 42, "title": "紹介状", "version": 3},
        "api_id": "PRV_DOC_006",
        "call_id": "call-1",
        "origin_side": overrides.get("source_side", "local"),
        "lsn": 1000,
        "txid": 77,
        "commit_ts_ms": 1_700_000_000_000,
        "captured_ts_ms": 1_700_000_000_015,
    }
    fields.update(overrides)
    return ChangeEvent(**fields)


def test_cases_cover_every_api_direction_and_store() -> None:
    assert len(CASES) == 11 * 3 + 11 * 4
    assert {api for _, api in EXPECTED} == {api for api in load_matrix().direction("local_to_remote").api_ids}


@pytest.mark.parametrize(("name", "api_id", "store"), CASES, ids=lambda v: str(v))
def test_route_table(matrix: Matrix, name: str, api_id: str, store: str) -> None:
    source_side, target_side = ROUTES[name]
    change = make_change(source_side=source_side, source_store=store, api_id=api_id)
    expected = EXPECTED[(name, api_id)]
    if store not in expected:
        with pytest.raises(UndeclaredSourceError, match=f"{api_id} wrote {source_side} '{store}'"):
            route(change, matrix)
        return
    decision = route(change, matrix)
    if not expected[store]:
        assert decision.writes == ()
        assert decision.skipped is not None and decision.skipped.startswith(f"no target: {source_side} {store}")
        return
    assert decision.skipped is None
    assert decision.writes == tuple(
        Write(
            target_side=target_side,
            target_store=target,
            table="documents",
            op="upsert",
            key='{"id": 42}',
            version=3,
            row={"id": 42, "title": "紹介状", "version": 3},
            event_id="evt-1",
            api_id=api_id,
            origin_side=source_side,
        )
        for target in expected[store]
    )


@pytest.mark.parametrize(("op", "sink_op"), [("c", "upsert"), ("u", "upsert"), ("r", "upsert"), ("d", "delete")])
def test_ops_map_to_sink_ops(matrix: Matrix, op: str, sink_op: str) -> None:
    row = None if op == "d" else {"id": 42}
    decision = route(make_change(op=op, row=row, source_store="fructos_own", api_id="PRV_DOC_009"), matrix)
    assert [(w.target_store, w.op, w.row) for w in decision.writes] == [
        ("fructos_own", sink_op, row),
        ("fructos_patient", sink_op, row),
    ]


def test_update_carries_its_before_image_into_every_write(matrix: Matrix) -> None:
    before = {"id": 42, "title": "old", "version": 2, "content": b"\x00old"}
    change = make_change(op="u", source_store="fructos_own", api_id="PRV_DOC_009", before=before)
    writes = route(change, matrix).writes
    assert [(w.target_store, w.before) for w in writes] == [("fructos_own", before), ("fructos_patient", before)]
    assert route(make_change(), matrix).writes[0].before is None  # an insert has none


def test_delete_by_prv_doc_008_from_remote(matrix: Matrix) -> None:
    change = make_change(source_side="remote", op="d", row=None, api_id="PRV_DOC_008", version=9)
    (write,) = route(change, matrix).writes
    assert (write.target_side, write.target_store, write.op, write.row, write.version) == (
        "local",
        "meta",
        "delete",
        None,
        9,
    )


def test_echo_is_skipped_before_any_other_rule(matrix: Matrix) -> None:
    # Applied on remote by the engine on behalf of a local change: captured on remote, must not go back.
    echo = make_change(source_side="remote", origin_side="local")
    decision = route(echo, matrix)
    assert decision.writes == ()
    assert decision.skipped is not None and decision.skipped.startswith("echo: ")
    # Even an echo without an API id or of an unlisted store is dropped, not raised.
    assert route(dataclasses.replace(echo, api_id=None, source_store="keycloak"), matrix).skipped == decision.skipped


def test_probe_is_skipped(matrix: Matrix) -> None:
    decision = route(make_change(op="probe", api_id=None, row=None), matrix)
    assert decision.writes == ()
    assert decision.skipped is not None and decision.skipped.startswith("probe")


@pytest.mark.parametrize("api_id", [None, "PRV_XYZ_999"])
def test_unknown_api(matrix: Matrix, api_id: str | None) -> None:
    with pytest.raises(UnknownApiError) as info:
        route(make_change(api_id=api_id), matrix)
    message = str(info.value)
    assert isinstance(info.value, RoutingError)
    assert "event evt-1 (local.meta.documents" in message
    assert "local_to_remote" in message and "PRV_DOC_009" in message and "matrix.toml" in message
    assert ("no API id" if api_id is None else "'PRV_XYZ_999'") in message


def test_undeclared_source_names_the_allowed_stores(matrix: Matrix) -> None:
    with pytest.raises(UndeclaredSourceError) as info:
        route(make_change(api_id="PRV_STF_001", source_store="fructos_own"), matrix)
    assert isinstance(info.value, RoutingError)
    assert "local_to_remote.PRV_STF_001.source allows only meta" in str(info.value)


def test_unknown_op_and_unknown_side_raise(matrix: Matrix) -> None:
    with pytest.raises(RoutingError, match="unknown op 'x'"):
        route(make_change(op="x"), matrix)
    with pytest.raises(RoutingError, match="unknown source side 'moon'"):
        route(make_change(source_side="moon"), matrix)


def test_route_is_deterministic_and_sorted(matrix: Matrix) -> None:
    change = make_change(source_store="fructos_own", api_id="PRV_USR_001")
    first, second = route(change, matrix), route(change, matrix)
    assert first == second
    stores = [w.target_store for w in first.writes]
    assert stores == sorted(stores) == ["fructos_own", "fructos_patient"]


def assert_imports_no_io_clients(module: str) -> None:
    """Importing ``module`` in a fresh interpreter loads no Kafka, database, Keycloak or socket module."""
    code = (
        f"import sys, {module}\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('confluent_kafka', 'faust', 'aiokafka', 'sqlalchemy', 'psycopg', 'keycloak', 'socket')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})


def test_route_module_imports_no_io_clients() -> None:
    assert_imports_no_io_clients("streams.routing.route")
