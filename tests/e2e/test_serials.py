"""Patient and document numbers assigned on both sides never collide: disjoint per-side ranges
(real PostgreSQL)."""

from __future__ import annotations

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from connectors.stores.serials import DOCUMENT_NUMBER_RANGES, PATIENT_NUMBER_RANGES, SEQUENCE, SerialExhaustedError
from streams.settings import Settings

pytestmark = pytest.mark.e2e

PATIENT = {"family_name": "鈴木", "given_name": "一郎", "birth_date": "1975-05-05", "sex": "male",
           "institution_code": "1310000001"}


def numbers(settings: Settings, side: str, ids: list[str]) -> list[str]:
    with psycopg.connect(settings.libpq_dsn(side, "meta")) as conn:
        rows = conn.execute("SELECT id, patient_number FROM patients WHERE id = ANY(%s)", (ids,)).fetchall()
    by_id = dict(rows)
    return [by_id[i] for i in ids]


def test_both_sides_number_patients_in_disjoint_ranges(pg_settings: Settings) -> None:
    assigned: dict[str, list[str]] = {}
    for side in ("local", "remote"):
        with ReferenceApi(pg_settings, side) as api:
            ids = [api.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"][0] for _ in range(5)]
        assigned[side] = numbers(pg_settings, side, ids)
    for side, nums in assigned.items():
        low, high = PATIENT_NUMBER_RANGES[side]
        assert all(len(n) == 9 and low <= int(n) <= high for n in nums), (side, nums)
        assert [int(n) for n in nums] == sorted(int(n) for n in nums)
    assert not set(assigned["local"]) & set(assigned["remote"])


def test_a_given_patient_number_is_kept(pg_settings: Settings) -> None:
    with ReferenceApi(pg_settings, "local") as api:
        (pid,) = api.call("PRV_PAT_001", PATIENT | {"patient_number": "H-0042"})["written"]["meta"]["patients"]
    assert numbers(pg_settings, "local", [pid]) == ["H-0042"]


def test_an_exhausted_range_is_a_clear_error_and_writes_nothing(pg_settings: Settings) -> None:
    low, high = PATIENT_NUMBER_RANGES["remote"]
    dsn = pg_settings.libpq_dsn("remote", "meta")
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = conn.execute(f"SELECT last_value, is_called FROM {SEQUENCE}").fetchone()
        count = conn.execute("SELECT count(*) FROM patients").fetchone()
    with psycopg.connect(pg_settings.libpq_dsn("remote", "fructos_own")) as conn:
        records = conn.execute("SELECT count(*) FROM signed_records").fetchone()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER SEQUENCE {SEQUENCE} RESTART WITH {high}")
    try:
        with ReferenceApi(pg_settings, "remote") as api:
            (last,) = api.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"]
            assert numbers(pg_settings, "remote", [last]) == [f"{high:09d}"]
            with pytest.raises(SerialExhaustedError, match=f"range {low}-{high}"):
                api.call("PRV_PAT_001", PATIENT)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM patients").fetchone() == (count[0] + 1,)
        with psycopg.connect(pg_settings.libpq_dsn("remote", "fructos_own")) as conn:
            assert conn.execute("SELECT count(*) FROM signed_records").fetchone() == (records[0] + 1,)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SELECT setval('{SEQUENCE}', %s, %s)", saved)


def doc(title: str, **extra: str) -> dict[str, str]:
    return {"patient_id": "p-serial", "doc_type": "slip", "title": title, "media_type": "text/plain",
            "content_text": f"{title} body", "signed_by": "dr", **extra}


def document_numbers(settings: Settings, side: str, ids: list[str]) -> list[str]:
    with psycopg.connect(settings.libpq_dsn(side, "meta")) as conn:
        by_id = dict(conn.execute("SELECT id, document_number FROM documents WHERE id = ANY(%s)", (ids,)).fetchall())
    return [by_id[i] for i in ids]


def test_document_numbers_come_from_disjoint_side_ranges_also_in_bulk(pg_settings: Settings) -> None:
    assigned: dict[str, list[str]] = {}
    for side in ("local", "remote"):
        with ReferenceApi(pg_settings, side) as api:
            ids = api.call("PRV_DOC_006", {"documents": [doc(f"{side}-{i}") for i in range(25)]})["written"][
                "meta"]["documents"]
            ids += api.call("PRV_DOC_006", doc(f"{side}-single"))["written"]["meta"]["documents"]
        assigned[side] = document_numbers(pg_settings, side, ids)
    for side, nums in assigned.items():
        low, high = DOCUMENT_NUMBER_RANGES[side]
        assert all(len(n) == 10 and low <= int(n) <= high for n in nums), (side, nums)
        assert len(set(nums)) == len(nums) == 26
        assert [int(n) for n in nums] == sorted(int(n) for n in nums)  # in the order of the bulk
    assert not set(assigned["local"]) & set(assigned["remote"])


def test_a_given_document_number_is_kept_and_others_in_the_bulk_are_assigned(pg_settings: Settings) -> None:
    with ReferenceApi(pg_settings, "local") as api:
        ids = api.call("PRV_DOC_006", {"documents": [doc("given", document_number="LEGACY-7"), doc("auto")]})[
            "written"]["meta"]["documents"]
    given, auto = document_numbers(pg_settings, "local", ids)
    assert given == "LEGACY-7"
    low, high = DOCUMENT_NUMBER_RANGES["local"]
    assert low <= int(auto) <= high
