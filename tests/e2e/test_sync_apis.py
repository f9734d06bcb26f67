"""Every API in both directions through the real stack: after wait-synced, every target store of
the other side holds exactly the change, and no other store on either side changed."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.core.model import other_side
from streams.runtime.settings import Settings
from tests.support.snapshot import changed, snapshot

pytestmark = pytest.mark.e2e

# Written independently of streams/routing/matrix.toml: the seed's tables, target stores per API.
TARGETS: dict[str, dict[str, set[str]]] = {
    "local": {
        "PRV_USR_001": {"meta", "fructos_own", "fructos_patient"},
        "PRV_PAT_001": {"meta", "fructos_own"},
        "PRV_STF_001": {"meta"},
        "PRV_STF_003": {"meta"},  # + keycloak: tests/e2e/test_keycloak_sync.py
        "PRV_DOC_006": {"meta", "fructos_own"},
        "PRV_DOC_007": {"meta", "fructos_own"},
        "PRV_DOC_008": {"meta", "fructos_own"},
        "PRV_DOC_009": {"meta", "fructos_own", "fructos_patient"},
    },
    "remote": {
        "PRV_USR_001": {"meta", "fructos_own"},
        "PRV_PAT_001": {"meta", "fructos_own"},
        "PRV_STF_001": {"meta"},
        "PRV_STF_003": {"meta"},
        "PRV_DOC_006": {"meta", "fructos_own"},
        "PRV_DOC_007": {"meta", "fructos_own"},
        "PRV_DOC_008": {"meta", "fructos_own"},
        "PRV_DOC_009": {"meta", "fructos_own"},
    },
}
FED_BY = {"meta": "meta", "fructos_own": "fructos_own", "fructos_patient": "fructos_own"}


def synced(settings: Settings) -> None:
    pending = wait_synced(settings, timeout_s=60)
    assert pending == [], f"not synced: {pending}"


def new_documents(api: ReferenceApi, patient_id: str, count: int = 2) -> list[str]:
    result = api.call("PRV_DOC_006", {"documents": [
        {"patient_id": patient_id, "doc_type": "referral", "title": f"紹介状 {i}", "media_type": "text/plain",
         "content_text": f"本文 {i}", "signed_by": "dr-suzuki"} for i in range(count)]})
    return result["written"]["meta"]["documents"]


def payload_for(api_id: str, api: ReferenceApi, settings: Settings, tag: str) -> dict[str, Any]:
    if api_id == "PRV_USR_001":
        return {"login_id": f"user-{tag}", "display_name": "佐藤 一郎", "institution_code": "1310000001"}
    if api_id == "PRV_PAT_001":
        return {"family_name": "山田", "given_name": "花子", "birth_date": "1980-01-02", "sex": "F",
                "institution_code": "1310000001"}
    if api_id == "PRV_STF_001":
        return {"staff_code": f"S-{tag}", "display_name": "看護 師子", "role": "nurse"}
    if api_id == "PRV_STF_003":
        return {"staff_code": f"C-{tag}", "display_name": "医師 太郎", "role": "doctor",
                "username": f"dr-{tag}".lower(), "email": f"dr-{tag}@example.jp".lower(),
                "password": "correct horse battery staple"}
    if api_id == "PRV_DOC_006":
        return {"documents": [{"patient_id": f"p-{tag}", "doc_type": "discharge", "title": f"退院サマリ {i}",
                               "media_type": "text/plain", "content_text": f"内容 {i}", "signed_by": "dr"}
                              for i in range(3)]}
    docs = new_documents(api, f"p-{tag}")
    synced(settings)
    if api_id == "PRV_DOC_007":
        return {"documents": [{"id": d, "title": "改訂版", "content_text": "改訂本文", "signed_by": "dr"}
                              for d in docs]}
    if api_id == "PRV_DOC_008":
        return {"ids": docs}
    if api_id == "PRV_DOC_009":
        return {"documents": [{"id": d, "approved_by": "dr-tanaka"} for d in docs]}
    raise AssertionError(api_id)


@pytest.mark.parametrize("side", ["local", "remote"])
@pytest.mark.parametrize("api_id", sorted(TARGETS["local"]))
def test_api_syncs_exactly_its_targets(stack: Stack, side: str, api_id: str) -> None:
    settings = stack.settings
    target_side = other_side(side)
    with ReferenceApi(settings, side) as api:
        payload = payload_for(api_id, api, settings, f"{side}-{api_id}")
        before = snapshot(settings)
        result = api.call(api_id, payload)
    synced(settings)
    after = snapshot(settings)
    diff = changed(before, after)

    # Keycloak accounts are not in these PostgreSQL snapshots: tests/e2e/test_keycloak_sync.py covers them.
    written = {(side, store, table): set(ids) for store, tables in result["written"].items()
               for table, ids in tables.items() if ids and store != "keycloak"}
    expected = dict(written)
    for target in TARGETS[side][api_id]:
        for (_, store, table), ids in written.items():
            if store == FED_BY[target]:
                expected[(target_side, target, table)] = set(ids)
    assert diff == expected

    for (tside, tstore, table), ids in expected.items():
        if tside != target_side:
            continue
        for row_id in ids:
            source_row = after[(side, FED_BY[tstore], table)][row_id]
            assert after[(tside, tstore, table)][row_id] == source_row, (tstore, table, row_id)
