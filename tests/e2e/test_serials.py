"""Patient and document numbers assigned on both sides never collide: disjoint per-side ranges
(real PostgreSQL)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from connectors.reference_api.errors import PayloadError
from connectors.reference_api.service import ReferenceApi
from connectors.stores.serials import DOCUMENT_NUMBER_RANGES, PATIENT_NUMBER_RANGES, SEQUENCE, SerialExhaustedError
from streams.runtime.connections import libpq_dsn
from streams.runtime.settings import Settings

pytestmark = pytest.mark.e2e

PATIENT = {"family_name": "鈴木", "given_name": "一郎", "birth_date": "1975-05-05", "sex": "male",
           "institution_code": "1310000001"}


def numbers(settings: Settings, side: str, ids: list[str]) -> list[str]:
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
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
    dsn = libpq_dsn(pg_settings, "remote", "meta")
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = conn.execute(f"SELECT last_value, is_called FROM {SEQUENCE}").fetchone()
        count = conn.execute("SELECT count(*) FROM patients").fetchone()
    with psycopg.connect(libpq_dsn(pg_settings, "remote", "fructos_own")) as conn:
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
        with psycopg.connect(libpq_dsn(pg_settings, "remote", "fructos_own")) as conn:
            assert conn.execute("SELECT count(*) FROM signed_records").fetchone() == (records[0] + 1,)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SELECT setval('{SEQUENCE}', %s, %s)", saved)


def doc(title: str, **extra: str) -> dict[str, str]:
    return {"patient_id": "p-serial", "doc_type": "slip", "title": title, "media_type": "text/plain",
            "content_text": f"{title} body", "signed_by": "dr", **extra}


def document_numbers(settings: Settings, side: str, ids: list[str]) -> list[str]:
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
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


# -- given numbers (issue 13, item 6): the calling side's range only, never one already used --------------

def counts(settings: Settings, side: str) -> tuple[int, int, int]:
    """Rows of patients, documents (META) and signed records (fructos_own) of ``side``."""
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        patients, documents = conn.execute("SELECT (SELECT count(*) FROM patients), "
                                           "(SELECT count(*) FROM documents)").fetchone()
    with psycopg.connect(libpq_dsn(settings, side, "fructos_own")) as conn:
        (records,) = conn.execute("SELECT count(*) FROM signed_records").fetchone()
    return patients, documents, records


def sequence_next(settings: Settings, side: str, sequence: str) -> int:
    """The next value ``sequence`` of ``side`` would give (without drawing it)."""
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        last, called = conn.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
    return last + 1 if called else last


def refused(api: ReferenceApi, api_id: str, payload: dict, path: str, reason: str) -> PayloadError:
    """Call ``api_id``, expect a PayloadError at ``path`` whose message has ``reason``; nothing written."""
    before = counts(api.settings, api.side)
    with pytest.raises(PayloadError) as info:
        api.call(api_id, payload)
    assert (info.value.api, info.value.path) == (api_id, path), str(info.value)
    assert reason in info.value.expected, str(info.value)
    assert counts(api.settings, api.side) == before
    return info.value


def test_a_patient_number_of_the_other_sides_range_is_refused_and_the_other_side_keeps_it(
        pg_settings: Settings) -> None:
    # The black-box run of issue 13: local gave 500000000, remote then drew it too.
    low, _ = PATIENT_NUMBER_RANGES["remote"]
    with ReferenceApi(pg_settings, "local") as local, ReferenceApi(pg_settings, "remote") as remote:
        for number in (f"{low:09d}", str(low), f"{low + 4242:09d}", "999999999"):
            err = refused(local, "PRV_PAT_001", PATIENT | {"patient_number": number}, "patient_number",
                          "outside the local side's patient number range 000000001-499999999")
            assert number not in str(err)
        for number in ("000000001", "1", "499999999"):
            err = refused(remote, "PRV_PAT_001", PATIENT | {"patient_number": number}, "patient_number",
                          "outside the remote side's patient number range 500000000-999999999")
            assert len(number) < 3 or number not in str(err)
        (pid,) = remote.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"]
    low_r, high_r = PATIENT_NUMBER_RANGES["remote"]
    assert low_r <= int(numbers(pg_settings, "remote", [pid])[0]) <= high_r


def test_a_document_number_of_the_other_sides_range_is_refused_also_in_bulk(pg_settings: Settings) -> None:
    low, high = DOCUMENT_NUMBER_RANGES["remote"]
    with ReferenceApi(pg_settings, "local") as local, ReferenceApi(pg_settings, "remote") as remote:
        refused(local, "PRV_DOC_006", doc("single", document_number=f"{low:010d}"), "document_number",
                "outside the local side's document number range 0000000001-4999999999")
        refused(local, "PRV_DOC_006", {"documents": [doc("a"), doc("b", document_number=str(high))]},
                "documents[1].document_number", "outside the local side's document number range")
        refused(remote, "PRV_DOC_006", {"documents": [doc("c", document_number="0000000007")]},
                "documents[0].document_number", "outside the remote side's document number range")


def test_a_number_already_used_on_the_node_is_refused(pg_settings: Settings) -> None:
    start = sequence_next(pg_settings, "local", SEQUENCE)
    given = f"{start + 7:09d}"
    with ReferenceApi(pg_settings, "local") as local:
        (pid,) = local.call("PRV_PAT_001", PATIENT | {"patient_number": given})["written"]["meta"]["patients"]
        assert numbers(pg_settings, "local", [pid]) == [given]
        # the same number again, also written without its leading zeros (the same value)
        for again in (given, str(start + 7)):
            refused(local, "PRV_PAT_001", PATIENT | {"patient_number": again}, "patient_number", "already used")
        legacy = f"H-{uuid.uuid4().hex[:8]}"
        local.call("PRV_PAT_001", PATIENT | {"patient_number": legacy})
        refused(local, "PRV_PAT_001", PATIENT | {"patient_number": legacy}, "patient_number", "already used")
        # a number drawn by the side itself is used as well
        (drawn,) = numbers(pg_settings, "local", local.call("PRV_PAT_001", PATIENT)["written"]["meta"]["patients"])
        refused(local, "PRV_PAT_001", PATIENT | {"patient_number": drawn}, "patient_number", "already used")
    # A synced copy of the other side's record (as the sink writes it) counts as used too.
    copied = f"R-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_dsn(pg_settings, "local", "meta")) as conn:
        conn.execute("INSERT INTO patients (id, patient_number, family_name, given_name, institution_code) "
                     "VALUES (%s, %s, 'x', 'y', 'z')", (str(uuid.uuid4()), copied))
    with ReferenceApi(pg_settings, "local") as local:
        refused(local, "PRV_PAT_001", PATIENT | {"patient_number": copied}, "patient_number", "already used")


def test_a_used_or_repeated_document_number_is_refused_also_when_deleted(pg_settings: Settings) -> None:
    legacy = f"SLIP-{uuid.uuid4().hex[:8]}"
    with ReferenceApi(pg_settings, "remote") as remote:
        refused(remote, "PRV_DOC_006", {"documents": [doc("x", document_number=legacy), doc("y"),
                                                      doc("z", document_number=legacy)]},
                "documents[2].document_number", "duplicate number; the same number is already at index 0")
        (doc_id,) = remote.call("PRV_DOC_006", doc("kept", document_number=legacy))["written"]["meta"]["documents"]
        remote.call("PRV_DOC_008", {"ids": [doc_id]})
        refused(remote, "PRV_DOC_006", {"documents": [doc("again"), doc("again2", document_number=legacy)]},
                "documents[1].document_number", "already used")


def test_a_given_number_of_the_own_range_is_never_drawn_later(pg_settings: Settings) -> None:
    for side, serial_seq, api_id in (("remote", SEQUENCE, "PRV_PAT_001"),
                                     ("local", "platsync_document_number_seq", "PRV_DOC_006")):
        ahead = sequence_next(pg_settings, side, serial_seq) + 3
        with ReferenceApi(pg_settings, side) as api:
            if api_id == "PRV_PAT_001":
                api.call(api_id, PATIENT | {"patient_number": f"{ahead:09d}"})
                ids = [api.call(api_id, PATIENT)["written"]["meta"]["patients"][0] for _ in range(5)]
                drawn = [int(n) for n in numbers(pg_settings, side, ids)]
            else:
                api.call(api_id, doc("given", document_number=f"{ahead:010d}"))
                ids = api.call(api_id, {"documents": [doc(f"d{i}") for i in range(5)]})["written"]["meta"]["documents"]
                drawn = [int(n) for n in document_numbers(pg_settings, side, ids)]
        assert min(drawn) > ahead, (side, ahead, drawn)


@pytest.mark.parametrize("number", ["１２３", "12 3", " 123", "١٢٣", "x" * 65])
def test_a_malformed_given_number_is_refused_by_the_parser(pg_settings: Settings, number: str) -> None:
    with ReferenceApi(pg_settings, "local") as local:
        err = refused(local, "PRV_PAT_001", PATIENT | {"patient_number": number}, "patient_number", "expected")
    assert number.strip() not in str(err)
