"""The reference APIs against real PostgreSQL on both sides.

Every API call is checked against a full before/after snapshot of every synced table (and the
marker table) of every database of BOTH sides: exactly the matrix's source stores of the
calling side change, every written transaction carries exactly one marker with the right
API id, call id and origin side, and the marker's txid is the transaction of the written rows.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from connectors.keycloak.admin import KeycloakAuthError, login
from connectors.reference_api.errors import ApiError, PayloadError
from connectors.reference_api.service import ReferenceApi
from connectors.stores.fructos import PostgresSignedRecordStore, RecordNotFoundError, SignedRecord
from connectors.stores.serials import PATIENT_NUMBER_RANGES
from connectors.stores.tables import SYNCED_TABLES
from infra.local.process import free_port
from infra.local.stack import write_settings_file
from streams.core.model import DATABASE_STORES, SIDES
from streams.runtime.connections import dsn, libpq_dsn, pg_credentials
from streams.runtime.settings import Settings
from tests.support.stack import isolated_settings as stack_settings
from tests.support.stack import make_data_dir, remove_data_dir, running_keycloak_standins, running_postgres

pytestmark = pytest.mark.e2e

MARKER = "platsync_txn_marker"

#: The stores (and their table) each API must write on the side where it runs -- the matrix's
#: source column without keycloak. Anything else changing anywhere, on either side, is a bug.
EXPECTED_WRITES: dict[str, dict[str, dict[str, str]]] = {
    #  API            local side                                            remote side
    "PRV_USR_001": {"local": {"meta": "plat_users", "fructos_own": "signed_records"},
                    "remote": {"meta": "plat_users", "fructos_own": "signed_records",
                               "fructos_patient": "signed_records"}},
    "PRV_PAT_001": {"local": {"meta": "patients", "fructos_own": "signed_records"},
                    "remote": {"meta": "patients", "fructos_own": "signed_records"}},
    "PRV_STF_001": {"local": {"meta": "staff"},
                    "remote": {"meta": "staff"}},
    "PRV_STF_003": {"local": {"meta": "staff"},
                    "remote": {"meta": "staff"}},
    "PRV_DOC_006": {"local": {"meta": "documents", "fructos_own": "signed_records"},
                    "remote": {"meta": "documents", "fructos_own": "signed_records"}},
    "PRV_DOC_007": {"local": {"meta": "documents", "fructos_own": "signed_records"},
                    "remote": {"meta": "documents", "fructos_own": "signed_records"}},
    "PRV_DOC_008": {"local": {"meta": "documents", "fructos_own": "signed_records"},
                    "remote": {"meta": "documents", "fructos_own": "signed_records"}},
    "PRV_DOC_009": {"local": {"meta": "documents", "fructos_own": "signed_records"},
                    "remote": {"meta": "documents", "fructos_own": "signed_records",
                               "fructos_patient": "signed_records"}},
}

PASSWORD = "pa55-ひみつ-word"
USER = {"login_id": "hanako", "display_name": "山田 花子", "institution_code": "1310000001",
        "profile": "内科"}
PATIENT = {"family_name": "山田", "given_name": "太郎", "birth_date": "1980-02-29", "sex": "male",
           "institution_code": "1310000001", "patient_number": "000123"}
STAFF = {"staff_code": "S-1", "display_name": "佐藤", "role": "nurse"}

Key = tuple[str, str, str]  # side, store, table


def patient(side: str) -> dict[str, Any]:
    """PATIENT with a fresh given patient number of ``side``'s range (a given number must be unused)."""
    low, _high = PATIENT_NUMBER_RANGES[side]
    return PATIENT | {"patient_number": f"{low + secrets.randbelow(10**8):09d}"}
Snapshot = dict[Key, dict[str, dict[str, Any]]]


def new_doc(i: int = 0, patient_id: str = "patient-1") -> dict[str, Any]:
    """A PRV_DOC_006 document payload."""
    return {"patient_id": patient_id, "doc_type": "referral", "title": f"紹介状 {i}",
            "media_type": "text/plain", "content_text": f"本文 {i}", "signed_by": "dr-tanaka"}


@pytest.fixture(scope="module")
def pg() -> Iterator[Settings]:
    data_dir = make_data_dir()
    try:
        with running_postgres(stack_settings(data_dir)) as settings, running_keycloak_standins(settings):
            yield settings
    finally:
        remove_data_dir(data_dir)


@pytest.fixture(scope="module")
def apis(pg: Settings) -> Iterator[dict[str, ReferenceApi]]:
    made = {side: ReferenceApi(pg, side) for side in SIDES}
    try:
        yield made
    finally:
        for api in made.values():
            api.close()


@pytest.fixture(scope="module")
def engines(pg: Settings) -> Iterator[dict[tuple[str, str], Engine]]:
    made = {(side, store): create_engine(dsn(pg, side, store))
            for side in SIDES for store in DATABASE_STORES[side]}
    try:
        yield made
    finally:
        for engine in made.values():
            engine.dispose()


def snapshot(engines: dict[tuple[str, str], Engine]) -> Snapshot:
    """Every row (with its xmin) of every synced table and marker table of both sides."""
    snap: Snapshot = {}
    for (side, store), engine in engines.items():
        with engine.connect() as conn:
            for table in (*SYNCED_TABLES[store], MARKER):
                rows = conn.execute(text(f"SELECT *, xmin::text::bigint AS xmin FROM {table}")).mappings()
                snap[(side, store, table)] = {str(row["id"]): dict(row) for row in rows}
    return snap


def diff(before: Snapshot, after: Snapshot) -> dict[Key, set[str]]:
    """Ids created, changed or removed, per table that changed."""
    out: dict[Key, set[str]] = {}
    for key in after:
        old, new = before[key], after[key]
        ids = {i for i in old.keys() | new.keys() if old.get(i) != new.get(i)}
        if ids:
            out[key] = ids
    return out


def check_call(engines: dict[tuple[str, str], Engine], api: ReferenceApi, api_id: str,
               payload: dict[str, Any], also: dict[str, str] | None = None,
               tombstoned: tuple[str, ...] = ()) -> tuple[dict[str, Any], Snapshot, Snapshot]:
    """Run one call and assert it wrote exactly its expected stores (and ``also``: on the cloud, a change of an
    approved document keeps the shared store current), each in one marked transaction; ``tombstoned``: stores
    where the call only left a withdrawal's tombstone (marked too, no synced table changed)."""
    side = api.side
    before = snapshot(engines)
    result = api.call(api_id, payload)
    after = snapshot(engines)
    changed = diff(before, after)
    expected = {**EXPECTED_WRITES[api_id][side], **(also or {})}

    assert result["api"] == api_id and result["side"] == side
    assert {k for k in changed if k[2] != MARKER} == {(side, s, t) for s, t in expected.items()}
    assert {k for k in changed if k[2] == MARKER} == {(side, s, MARKER) for s in (*expected, *tombstoned)}
    written_dbs = {s: set(tables) for s, tables in result["written"].items() if s != "keycloak"}
    assert written_dbs == {s: {t} for s, t in expected.items()}
    for store, table in expected.items():
        ids = changed[(side, store, table)]
        assert ids == set(result["written"][store][table])
        markers = [after[(side, store, MARKER)][i] for i in changed[(side, store, MARKER)]]
        assert len(markers) == 1, f"{store}: expected one marker, got {markers}"
        marker = markers[0]
        assert (marker["api_id"], marker["call_id"], marker["origin_side"], marker["applied_by_sync"]) == (
            api_id, result["call_id"], side, False)
        assert marker["txid"] == result["txids"][store]
        rows = after[(side, store, table)]
        assert {rows[i]["xmin"] for i in ids} == {marker["txid"] % 2**32}, f"{store}.{table}: one transaction"
        for i in ids:  # every write increments version; a fructos_patient copy keeps the own version
            old = before[(side, store, table)].get(i)
            if store == "fructos_patient":
                assert rows[i]["version"] == after[(side, "fructos_own", table)][i]["version"]
            else:
                assert rows[i]["version"] == (old["version"] + 1 if old else 1)
    return result, before, after


def make_docs(api: ReferenceApi, count: int) -> list[str]:
    result = api.register_documents({"documents": [new_doc(i) for i in range(count)]})
    return result["written"]["meta"]["documents"]


def record_of(after: Snapshot, side: str, doc_id: str, store: str = "fructos_own") -> dict[str, Any]:
    doc = after[(side, "meta", "documents")][doc_id]
    return after[(side, store, "signed_records")][doc["record_id"]]


PayloadMaker = Callable[[ReferenceApi], dict[str, Any]]
PAYLOADS: dict[str, PayloadMaker] = {
    "PRV_USR_001": lambda api: USER,
    "PRV_PAT_001": lambda api: patient(api.side),
    "PRV_STF_001": lambda api: STAFF,
    "PRV_STF_003": lambda api: STAFF | {"username": f"sato-{api.side}", "password": PASSWORD,
                                        "email": f"sato-{api.side}@example.jp"},
    "PRV_DOC_006": lambda api: {"documents": [new_doc(1), new_doc(2), new_doc(3)]},
    "PRV_DOC_007": lambda api: {"documents": [
        {"id": i, "title": "改訂", "content_text": "新しい本文", "signed_by": "dr-2"} for i in make_docs(api, 2)]},
    "PRV_DOC_008": lambda api: {"ids": make_docs(api, 2)},
    "PRV_DOC_009": lambda api: {"documents": [{"id": i, "approved_by": "chief"} for i in make_docs(api, 2)]},
}


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("api_id", sorted(EXPECTED_WRITES))
def test_api_writes_exactly_its_source_stores(engines: dict[tuple[str, str], Engine],
                                              apis: dict[str, ReferenceApi], api_id: str, side: str) -> None:
    api = apis[side]
    payload = PAYLOADS[api_id](api)
    # On the cloud, deleting a shared document not approved yet withdraws it from the shared store (docs/sharing.md):
    # there is no copy to remove, only a tombstone to leave, which beats an approval made during a cut.
    deleting_shared = api_id == "PRV_DOC_008" and side == "remote"
    result, before, after = check_call(engines, api, api_id, payload,
                                       tombstoned=("fructos_patient",) if deleting_shared else ())
    meta = {t: after[(side, "meta", t)] for t in SYNCED_TABLES["meta"]}
    if api_id in ("PRV_USR_001", "PRV_PAT_001"):
        table, entity = ("plat_users", "plat_user") if api_id == "PRV_USR_001" else ("patients", "patient")
        (row_id,) = result["written"]["meta"][table]
        record = after[(side, "fructos_own", "signed_records")][meta[table][row_id]["record_id"]]
        assert (record["entity"], record["subject_id"], record["media_type"]) == (
            entity, row_id, "application/json")
        assert record["content_hash"] == hashlib.sha256(record["content"]).hexdigest()
        profile = json.loads(record["content"].decode("utf-8"))
        assert profile == payload  # the given patient number is kept as given
    if api_id == "PRV_STF_003":
        (staff_id,) = result["written"]["meta"]["staff"]
        assert meta["staff"][staff_id]["username"] == f"sato-{side}"
        assert result["written"]["keycloak"] == {"users": [f"sato-{side}"]}
        assert PASSWORD not in repr(result) and PASSWORD not in repr(after)
        assert login(api.settings.keycloak_url(side), api.settings.keycloak_realm, f"sato-{side}", PASSWORD)
    if api_id == "PRV_DOC_006":
        for doc_id in result["written"]["meta"]["documents"]:
            doc, record = meta["documents"][doc_id], record_of(after, side, doc_id)
            assert (doc["status"], record["entity"], record["subject_id"]) == ("registered", "document", doc_id)
            assert doc["content_hash"] == record["content_hash"] == hashlib.sha256(record["content"]).hexdigest()
    if api_id == "PRV_DOC_007":
        for doc_id in result["written"]["meta"]["documents"]:
            doc, record = meta["documents"][doc_id], record_of(after, side, doc_id)
            assert (doc["title"], record["content"], record["signed_by"]) == ("改訂", "新しい本文".encode(), "dr-2")
            assert doc["content_hash"] == record["content_hash"] == hashlib.sha256(record["content"]).hexdigest()
    if api_id == "PRV_DOC_008":
        for doc_id in result["written"]["meta"]["documents"]:
            record = record_of(after, side, doc_id)
            assert meta["documents"][doc_id]["deleted"] and record["deleted"]
            if deleting_shared:
                with engines[(side, "fructos_patient")].connect() as conn:
                    kept = conn.execute(text("SELECT version, deleted, approved FROM platsync_tombstone WHERE "
                                             "table_name = 'signed_records' AND id = :id"), {"id": record["id"]}).one()
                assert tuple(kept) == (record["version"], True, False)
    if api_id == "PRV_DOC_009":
        for doc_id in result["written"]["meta"]["documents"]:
            doc, record = meta["documents"][doc_id], record_of(after, side, doc_id)
            assert (doc["status"], doc["approved_by"], record["approved"]) == ("approved", "chief", True)
            assert doc["approved_at"] is not None
    if side == "remote" and "fructos_patient" in result["written"]:
        for record_id in result["written"]["fructos_patient"]["signed_records"]:
            own = after[(side, "fructos_own", "signed_records")][record_id]
            copy = after[(side, "fructos_patient", "signed_records")][record_id]
            fields = ("id", "entity", "subject_id", "content", "content_hash", "version", "approved", "deleted")
            assert {f: copy[f] for f in fields} == {f: own[f] for f in fields}


@pytest.mark.parametrize("side", SIDES)
def test_bulk_registration_is_one_transaction_per_store(engines: dict[tuple[str, str], Engine],
                                                        apis: dict[str, ReferenceApi], side: str) -> None:
    payload = {"documents": [new_doc(i) for i in range(50)]}
    result, _, after = check_call(engines, apis[side], "PRV_DOC_006", payload)
    assert len(result["written"]["meta"]["documents"]) == 50
    assert len(result["written"]["fructos_own"]["signed_records"]) == 50
    titles = [after[(side, "meta", "documents")][i]["title"] for i in result["written"]["meta"]["documents"]]
    assert titles == [f"紹介状 {i}" for i in range(50)]


@pytest.mark.parametrize("side", SIDES)
def test_document_lifecycle_versions_and_logical_delete(engines: dict[tuple[str, str], Engine],
                                                        apis: dict[str, ReferenceApi], side: str) -> None:
    api = apis[side]
    (doc_id,) = make_docs(api, 1)
    check_call(engines, api, "PRV_DOC_007", {"documents": [{"id": doc_id, "doc_type": "summary",
                                                            "signed_by": "dr-2"}]})
    check_call(engines, api, "PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "chief"}]})
    # On the cloud the approved document's deletion reaches the shared store too (kept current, docs/sharing.md).
    _, _, after = check_call(engines, api, "PRV_DOC_008", {"documents": [{"id": doc_id}]},
                             also={"fructos_patient": "signed_records"} if side == "remote" else None)
    doc, record = after[(side, "meta", "documents")][doc_id], record_of(after, side, doc_id)
    assert (doc["version"], doc["deleted"], doc["doc_type"], doc["status"]) == (4, True, "summary", "approved")
    assert (record["version"], record["deleted"], record["approved"], record["doc_type"]) == (4, True, True, "summary")
    if side == "remote":
        copy = after[(side, "fructos_patient", "signed_records")][record["id"]]
        assert (copy["version"], copy["deleted"], copy["content_hash"]) == (4, True, record["content_hash"])

    for api_id, payload in [("PRV_DOC_008", {"ids": [doc_id]}),
                            ("PRV_DOC_007", {"documents": [{"id": doc_id, "title": "x", "signed_by": "d"}]}),
                            ("PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "chief"}]})]:
        before = snapshot(engines)
        with pytest.raises(ApiError, match="is deleted") as info:
            api.call(api_id, payload)
        assert doc_id in str(info.value)
        assert snapshot(engines) == before


@pytest.mark.parametrize("api_id", ["PRV_DOC_007", "PRV_DOC_008", "PRV_DOC_009"])
@pytest.mark.parametrize("side", SIDES)
def test_unknown_id_is_refused_and_nothing_is_written(engines: dict[tuple[str, str], Engine],
                                                      apis: dict[str, ReferenceApi], side: str,
                                                      api_id: str) -> None:
    api = apis[side]
    live, unknown = make_docs(api, 1)[0], str(uuid.uuid4())
    payload = {
        "PRV_DOC_007": {"documents": [{"id": i, "title": "t", "signed_by": "d"} for i in (live, unknown)]},
        "PRV_DOC_008": {"ids": [live, unknown]},
        "PRV_DOC_009": {"documents": [{"id": i, "approved_by": "c"} for i in (live, unknown)]},
    }[api_id]
    before = snapshot(engines)
    with pytest.raises(ApiError, match=f"no document with id '{unknown}'"):
        api.call(api_id, payload)
    assert snapshot(engines) == before


def test_document_of_the_other_side_is_unknown_here(engines: dict[tuple[str, str], Engine],
                                                    apis: dict[str, ReferenceApi]) -> None:
    (doc_id,) = make_docs(apis["local"], 1)
    before = snapshot(engines)
    with pytest.raises(ApiError, match="on the remote side"):
        apis["remote"].delete_documents({"ids": [doc_id]})
    assert snapshot(engines) == before


def test_payload_error_names_the_path_and_writes_nothing(engines: dict[tuple[str, str], Engine],
                                                         apis: dict[str, ReferenceApi]) -> None:
    api = apis["local"]
    ids = make_docs(api, 2)
    before = snapshot(engines)
    bad = {"documents": [{"id": ids[0], "title": "ok", "signed_by": "d"},
                         {"id": ids[1], "title": "", "signed_by": "d"}]}
    with pytest.raises(PayloadError, match=r"documents\[1\]\.title: expected a non-empty string") as info:
        api.call("PRV_DOC_007", bad)
    assert (info.value.api, info.value.path) == ("PRV_DOC_007", "documents[1].title")
    with pytest.raises(PayloadError, match="birth_date"):
        api.register_patient(PATIENT | {"birth_date": "1980-13-01"})
    with pytest.raises(PayloadError, match="password: missing"):
        api.call("STF_003", STAFF | {"username": "sato", "email": "sato@example.jp"})
    assert snapshot(engines) == before


def test_content_hash_mismatch_is_rejected(engines: dict[tuple[str, str], Engine],
                                           apis: dict[str, ReferenceApi]) -> None:
    before = snapshot(engines)
    doc = new_doc() | {"content_hash": hashlib.sha256(b"something else").hexdigest()}
    with pytest.raises(PayloadError, match=r"documents\[0\]\.content_hash: does not match"):
        apis["remote"].call("PRV_DOC_006", {"documents": [doc]})
    assert snapshot(engines) == before

    with engines[("local", "fructos_own")].connect() as conn:
        conn.execute(text("SELECT platsync_mark_api('TEST', 'hash-check')"))
        store = PostgresSignedRecordStore(conn)
        record = SignedRecord.new(str(uuid.uuid4()), "document", "d", "text/plain", b"abc", "dr")
        with pytest.raises(ValueError, match="does not match the content"):
            store.put(dataclasses.replace(record, content=b"abd"))
        store.put(record)
        with pytest.raises(ValueError, match="does not match the content"):
            store.update(record.id, signed_by="dr", content=b"new", content_hash=record.content_hash)
        with pytest.raises(ValueError, match="does not match the content"):
            store.copy(dataclasses.replace(record, content_hash="0" * 64))
        conn.rollback()
    assert snapshot(engines) == before


def test_signed_record_store_semantics(engines: dict[tuple[str, str], Engine]) -> None:
    with engines[("remote", "fructos_patient")].connect() as conn:
        conn.execute(text("SELECT platsync_mark_api('TEST', 'store-semantics')"))
        store = PostgresSignedRecordStore(conn)
        record = SignedRecord.new(str(uuid.uuid4()), "document", "doc-1", "application/pdf",
                                  b"%PDF-1.7", "dr")
        assert store.put(record) == record
        updated = store.update(record.id, signed_by="dr-2", content=b"%PDF-2.0")
        assert (updated.version, updated.signed_by, updated.content_hash) == (
            2, "dr-2", hashlib.sha256(b"%PDF-2.0").hexdigest())
        assert store.approve(record.id).approved and store.get(record.id) == dataclasses.replace(
            updated, version=3, approved=True)
        assert store.delete(record.id) == dataclasses.replace(updated, version=4, approved=True, deleted=True)
        for op in (lambda: store.delete(record.id), lambda: store.approve("nope")):
            with pytest.raises(RecordNotFoundError):
                op()
        assert store.get("nope") is None
        stale = dataclasses.replace(record, version=3)
        assert not store.copy(stale)  # version guard: 3 < 4 already stored
        assert store.copy(dataclasses.replace(record, id=str(uuid.uuid4())))
        conn.rollback()


def test_ids_never_collide_across_sides(engines: dict[tuple[str, str], Engine],
                                        apis: dict[str, ReferenceApi]) -> None:
    for side in SIDES:
        apis[side].register_user(USER)
        apis[side].register_patient(patient(side))
        apis[side].register_staff(STAFF)
        make_docs(apis[side], 5)
    ids: list[str] = []
    for (side, store, table), rows in snapshot(engines).items():
        if table == MARKER or (side, store) == ("remote", "fructos_patient"):
            continue  # markers are per-database sequences; fructos_patient holds copies of own records
        ids.extend(rows)
    assert len(ids) > 30
    assert len(ids) == len(set(ids))
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_authentication_update_changes_only_keycloak(engines: dict[tuple[str, str], Engine],
                                                   apis: dict[str, ReferenceApi]) -> None:
    settings = apis["local"].settings
    for side in SIDES:
        api, user = apis[side], f"ath-{side}"
        api.call("PRV_STF_003", STAFF | {"username": user, "password": PASSWORD, "email": f"{user}@example.jp"})
        before = snapshot(engines)
        result = api.call("PRV_ATH_001", {"username": user, "password": PASSWORD + "2"})
        assert result["written"] == {"keycloak": {"users": [user]}}
        assert snapshot(engines) == before  # no PostgreSQL store of either side changed
        url, realm = settings.keycloak_url(side), settings.keycloak_realm
        assert login(url, realm, user, PASSWORD + "2")
        with pytest.raises(KeycloakAuthError):
            login(url, realm, user, PASSWORD)
        api.call("PRV_ATH_001", {"username": user, "enabled": False})
        with pytest.raises(KeycloakAuthError):
            login(url, realm, user, PASSWORD + "2")
        with pytest.raises(ApiError, match=f"no Keycloak account with that username on the {side} side") as absent:
            api.call("PRV_ATH_001", {"username": "nobody", "enabled": True})
        assert "nobody" not in str(absent.value)  # errors never echo payload values
    with pytest.raises(ApiError, match="already has a Keycloak account"):
        apis["local"].call("PRV_STF_003", STAFF | {"username": "ath-local", "password": "x", "email": "a@b.jp"})
    before = snapshot(engines)
    with pytest.raises(ApiError, match="unknown API 'PRV_XYZ_001'"):
        apis["local"].call("PRV_XYZ_001", {})
    assert snapshot(engines) == before


def test_store_of_the_wrong_side_is_refused(pg: Settings) -> None:
    swapped = pg.with_node("local", pg_port=pg.pg_port("remote"))
    # The local application's role password does not open the remote side's databases ...
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(libpq_dsn(swapped, "local", "meta", "app") + " connect_timeout=5").close()
    # ... and with the remote side's credentials, the side setting of the database still refuses.
    swapped = dataclasses.replace(swapped, pg_app_password=pg_credentials(pg, "remote", "app")[1])
    with ReferenceApi(swapped, "local") as api, pytest.raises(ApiError, match="platsync.side='remote'"):
        api.register_staff(STAFF)


def test_binary_content_round_trips(engines: dict[tuple[str, str], Engine],
                                    apis: dict[str, ReferenceApi]) -> None:
    raw = bytes(range(256)) * 4
    doc = {k: v for k, v in new_doc().items() if k != "content_text"}
    doc |= {"media_type": "application/pdf", "content_base64": base64.b64encode(raw).decode(),
            "content_hash": hashlib.sha256(raw).hexdigest()}
    result, _, after = check_call(engines, apis["remote"], "PRV_DOC_006", doc)
    (doc_id,) = result["written"]["meta"]["documents"]
    assert record_of(after, "remote", doc_id)["content"] == raw


# -- issue 13, items 7 and 8: refused text fields and `platsync call`'s one redacted line -----------------------

SECRET_VALUE = "PII-山田花子"


def run_call(pg: Settings, tmp_path: Any, api_id: str, side: str, payload: str,
             settings: Settings | None = None) -> subprocess.CompletedProcess[str]:
    """``platsync call`` as an operator runs it, on this module's stores."""
    config = write_settings_file(settings or pg, tmp_path / f"call-{uuid.uuid4().hex[:6]}.toml")
    payload_file = tmp_path / f"payload-{uuid.uuid4().hex[:6]}.json"
    payload_file.write_text(payload, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "streams.cli.main", "call", api_id, "--side", side,  # noqa: S603
                           "--file", str(payload_file), "--config", str(config), "--data-dir", str(pg.data_dir)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])


def assert_one_redacted_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit non-zero, nothing on stdout, exactly one line on stderr, no value, no SQLAlchemy dump."""
    assert done.returncode != 0 and done.stdout == "", (done.returncode, done.stdout)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    for leak in (SECRET_VALUE, "山田花子", "\\x00", "parameters", "[SQL", "Background on this error"):
        assert leak not in line, line
    for text_ in expected:
        assert text_ in line, line
    return line


def test_nul_character_is_refused_before_any_store_with_one_line(engines: dict[tuple[str, str], Engine],
                                                                 apis: dict[str, ReferenceApi], pg: Settings,
                                                                 tmp_path: Path) -> None:
    # The black-box run of issue 13: PRV_STF_001 with a NUL in display_name printed a SQLAlchemy dump with it.
    before = snapshot(engines)
    payload = json.dumps({"staff_code": "S-nul", "display_name": SECRET_VALUE + "\u0000b", "role": "doctor"})
    assert_one_redacted_line(run_call(pg, tmp_path, "PRV_STF_001", "local", payload),
                             "PRV_STF_001 payload: display_name: contains a NUL character")
    for api_id, side, bad in (("PRV_USR_001", "remote", USER | {"profile": SECRET_VALUE + "\u0000"}),
                              ("PRV_DOC_006", "local", {"documents": [new_doc() | {"title": SECRET_VALUE + "\u0000"}]}),
                              ("PRV_DOC_009", "remote", {"documents": [{"id": "x", "approved_by": "\u0000"}]})):
        with pytest.raises(PayloadError, match="NUL character") as info:
            apis[side].call(api_id, bad)
        assert SECRET_VALUE not in str(info.value)
    assert snapshot(engines) == before


def test_over_long_display_name_of_stf_003_is_refused_up_front_not_unreachable(
        engines: dict[tuple[str, str], Engine], pg: Settings, tmp_path: Path) -> None:
    # The black-box run of issue 13: a 300-character display name reported "the local Keycloak is unreachable".
    before = snapshot(engines)
    username = f"long-{uuid.uuid4().hex[:6]}"
    payload = json.dumps(STAFF | {"display_name": SECRET_VALUE + "長" * 296, "username": username,
                                  "password": PASSWORD, "email": f"{username}@example.jp"})
    line = assert_one_redacted_line(run_call(pg, tmp_path, "PRV_STF_003", "local", payload),
                                    "PRV_STF_003 payload: display_name: expected at most 255 UTF-16 code units")
    assert "unreachable" not in line and PASSWORD not in line
    assert snapshot(engines) == before
    from connectors.keycloak.admin import accounts_for
    assert accounts_for(pg, "local").find_user(username) is None


def test_a_value_keycloak_refuses_after_the_parser_is_reported_as_refused(
        engines: dict[tuple[str, str], Engine], apis: dict[str, ReferenceApi]) -> None:
    # A typed payload skips the parser: Keycloak's own 400 must read as a refusal, and META stays unwritten.
    from connectors.reference_api import payloads as p

    username = f"typed-{uuid.uuid4().hex[:6]}"
    typed = p.StaffCredentialsPayload("S-9", SECRET_VALUE + "長" * 300, "doctor", username, PASSWORD,
                                      f"{username}@example.jp")
    before = snapshot(engines)
    with pytest.raises(ApiError) as info:
        apis["remote"].register_staff_with_credentials(typed)
    message = str(info.value)
    assert "Keycloak refused the account (HTTP 400)" in message and "error-invalid-length-too-long" in message
    assert "unreachable" not in message and SECRET_VALUE not in message and username not in message
    assert snapshot(engines) == before


def test_every_call_failure_prints_one_redacted_line(engines: dict[tuple[str, str], Engine], pg: Settings,
                                                     tmp_path: Path) -> None:
    # A row the store itself refuses (a constraint the parser cannot know): the driver's error names the value.
    with engines[("local", "meta")].begin() as conn:
        conn.execute(text("ALTER TABLE staff ADD CONSTRAINT test_no_secret CHECK (display_name NOT LIKE 'PII-%')"))
    try:
        done = run_call(pg, tmp_path, "PRV_STF_001", "local",
                        json.dumps({"staff_code": "S-chk", "display_name": SECRET_VALUE, "role": "doctor"}))
        line = assert_one_redacted_line(done, "PRV_STF_001 on the local side failed", "SQLSTATE 23514",
                                        "call-errors.log")
    finally:
        with engines[("local", "meta")].begin() as conn:
            conn.execute(text("ALTER TABLE staff DROP CONSTRAINT test_no_secret"))
    detail = (pg.data_dir / "logs" / "call-errors.log").read_text(encoding="utf-8")
    assert "IntegrityError" in detail and "INSERT INTO staff" in detail and SECRET_VALUE not in detail
    assert str(pg.data_dir / "logs" / "call-errors.log") in line
    # Not JSON, an unknown API, a store that is down, a document that does not exist: one line each.
    assert_one_redacted_line(run_call(pg, tmp_path, "PRV_STF_001", "local", '{"staff_code": "S", '),
                             "the payload is not valid JSON")
    assert_one_redacted_line(run_call(pg, tmp_path, "PRV_XYZ_001", "local", "{}"), "unknown API")
    down = pg.with_node("local", pg_port=free_port())
    assert_one_redacted_line(run_call(pg, tmp_path, "PRV_STF_001", "local", json.dumps(STAFF), settings=down),
                             "PRV_STF_001 on the local side failed", "could not be reached")
    assert_one_redacted_line(run_call(pg, tmp_path, "PRV_DOC_008", "remote", json.dumps({"ids": [str(uuid.uuid4())]})),
                             "PRV_DOC_008 refused, nothing written: no document with id")
