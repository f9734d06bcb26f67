"""A side configured with its own number ranges (issue 14: a network node's ranges) draws from them,
refuses a given number outside them, and its sequence moves to a new range only when that is safe
(real PostgreSQL). Each test provisions stores of its own (a ``db_suffix``) on the session's server."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from connectors.stores.serials import DOCUMENT_NUMBER, PATIENT_NUMBER, SerialExhaustedError, SerialRangeError
from infra.local.databases import provision_side
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings
from tests.e2e.test_serials import PATIENT, doc, document_numbers, numbers, refused, sequence_next

pytestmark = pytest.mark.e2e

#: Block 1 of docs/topology.md (hosp-b in infra/topologies/two_hospitals.toml).
BLOCK_1 = {"patient_numbers": (10_000_000, 19_999_999), "document_numbers": (100_000_000, 199_999_999)}


def provisioned(pg_settings: Settings, **ranges: Any) -> Settings:
    """The local side's stores in databases of their own (``meta_<suffix>``), provisioned with ``ranges``."""
    settings = pg_settings.with_node("local", db_suffix=f"_r{uuid.uuid4().hex[:8]}", **ranges)
    provision_side(settings, "local")
    return settings


def bounds(settings: Settings, sequence: str) -> tuple[int, int, int]:
    """(min, max, next value) of the local side's ``sequence``."""
    with psycopg.connect(libpq_dsn(settings, "local", "meta")) as conn:
        low, high = conn.execute("SELECT min_value, max_value FROM pg_sequences WHERE sequencename = %s",
                                 (sequence,)).fetchone()
    return low, high, sequence_next(settings, "local", sequence)


def test_a_side_with_its_own_ranges_draws_from_them(pg_settings: Settings) -> None:
    ranged = provisioned(pg_settings, **BLOCK_1)
    assert bounds(ranged, PATIENT_NUMBER.sequence) == (10_000_000, 19_999_999, 10_000_000)
    assert bounds(ranged, DOCUMENT_NUMBER.sequence) == (100_000_000, 199_999_999, 100_000_000)
    with ReferenceApi(ranged, "local") as api:
        pids = [api.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"][0] for _ in range(3)]
        dids = api.call("PRV_DOC_006", {"documents": [doc(f"r{i}") for i in range(5)]})["written"]["meta"]["documents"]
    assert numbers(ranged, "local", pids) == ["010000000", "010000001", "010000002"]
    assert document_numbers(ranged, "local", dids) == [f"{n:010d}" for n in range(100_000_000, 100_000_005)]


def test_a_given_number_outside_the_configured_range_is_refused(pg_settings: Settings) -> None:
    ranged = provisioned(pg_settings, **BLOCK_1)
    with ReferenceApi(ranged, "local") as api:
        # 5 is in the local side's default range, not in this node's: another node may draw it
        for number in ("000000005", "5", "009999999", "020000000", "500000000"):
            err = refused(api, "PRV_PAT_001", PATIENT | {"patient_number": number}, "patient_number",
                          "outside the local side's patient number range 010000000-019999999")
            assert len(number) < 3 or number not in str(err)
        refused(api, "PRV_DOC_006", {"documents": [doc("a"), doc("b", document_number="0000000001")]},
                "documents[1].document_number", "outside the local side's document number range "
                                                "0100000000-0199999999")
        (pid,) = api.call("PRV_PAT_001", PATIENT | {"patient_number": "015000000"})["written"]["meta"]["patients"]
        (drawn,) = api.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"]
    assert numbers(ranged, "local", [pid, drawn]) == ["015000000", "015000001"]  # never drawn again


def test_an_exhausted_configured_range_names_the_node_and_its_range(pg_settings: Settings) -> None:
    ranged = dataclasses.replace(provisioned(pg_settings, **BLOCK_1), network_link="hosp-b")
    with psycopg.connect(libpq_dsn(ranged, "local", "meta"), autocommit=True) as conn:
        conn.execute(f"ALTER SEQUENCE {PATIENT_NUMBER.sequence} RESTART WITH 19999999")
    with ReferenceApi(ranged, "local") as api:
        (last,) = api.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"]
        with pytest.raises(SerialExhaustedError, match=r"the local side \(node hosp-b\) has used every patient "
                                                       r"number of its range 10000000-19999999; give it a larger "
                                                       r"range .*\[nodes.local\] patient_numbers"):
            api.call("PRV_PAT_001", PATIENT)
    assert numbers(ranged, "local", [last]) == ["019999999"]


def test_a_sequence_moves_to_a_new_range_only_when_no_number_can_be_handed_out_twice(pg_settings: Settings) -> None:
    # Never drawn from: it restarts at the new range's start.
    fresh = provisioned(pg_settings)
    assert bounds(fresh, PATIENT_NUMBER.sequence) == (1, 499_999_999, 1)
    moved = fresh.with_node("local", **BLOCK_1)
    provision_side(moved, "local")
    assert bounds(moved, PATIENT_NUMBER.sequence) == (10_000_000, 19_999_999, 10_000_000)
    assert bounds(moved, DOCUMENT_NUMBER.sequence) == (100_000_000, 199_999_999, 100_000_000)
    # Used: extended from the same start, it keeps its next number.
    with ReferenceApi(moved, "local") as api:
        api.call("PRV_PAT_001", PATIENT)
    extended = moved.with_node("local", patient_numbers=(10_000_000, 29_999_999))
    provision_side(extended, "local")
    assert bounds(extended, PATIENT_NUMBER.sequence) == (10_000_000, 29_999_999, 10_000_001)
    # Used: another block (or one that leaves out numbers it may have handed out) stops provisioning, unchanged.
    for low, high in ((30_000_000, 39_999_999), (10_000_001, 29_999_999), (1, 10_000_000)):
        with pytest.raises(SerialRangeError, match=(
                rf"the local side is configured to draw patient numbers from {low}-{high}, but its sequence "
                r"platsync_patient_number_seq has range 10000000-29999999 and may already have handed out "
                r"10000000-10000000: .* Configure a range that holds 10000000-10000001 \(\[nodes.local\] "
                r"patient_numbers")):
            provision_side(extended.with_node("local", patient_numbers=(low, high)), "local")
        assert bounds(extended, PATIENT_NUMBER.sequence) == (10_000_000, 29_999_999, 10_000_001)
    with ReferenceApi(extended, "local") as api:
        (pid,) = api.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"]
    assert numbers(extended, "local", [pid]) == ["010000001"]
