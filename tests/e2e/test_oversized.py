"""Large signed records: one above Kafka clients' 1 MB default syncs; one above ``kafka_message_max_bytes``
is dead-lettered by the capture (without its bytes, with where it is) and does not hold up later changes."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from connectors.reference_api.service import ReferenceApi
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from tests.support.cleanup import forget_rows
from tests.support.helpers import platsync

pytestmark = pytest.mark.e2e


def _doc(tag: str, size: int) -> dict:
    return {"documents": [{"patient_id": f"p-{tag}", "doc_type": "scan", "title": f"scan-{tag}",
                           "media_type": "text/plain", "content_text": "x" * size, "signed_by": "dr"}]}


def _remote_record_sizes(stack: Stack, record_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(libpq_dsn(stack.settings, "remote", "fructos_own")) as conn:
        rows = conn.execute("SELECT id, length(content) FROM signed_records WHERE id = ANY(%s)", (record_ids,))
        return dict(rows.fetchall())


def test_large_records_sync_and_an_oversized_one_is_dead_lettered_without_stalling(stack: Stack) -> None:
    s = stack.settings
    assert s.kafka_message_max_bytes == 2_097_152  # tests/e2e/conftest.py
    tag = uuid.uuid4().hex[:8]
    with ReferenceApi(s, "local") as api:
        large = api.call("PRV_DOC_006", _doc(f"{tag}-large", 1_500_000))["written"]["fructos_own"]["signed_records"]
        huge = api.call("PRV_DOC_006", _doc(f"{tag}-huge", 3_000_000))["written"]["fructos_own"]["signed_records"]
        after = api.call("PRV_DOC_006", _doc(f"{tag}-after", 10))["written"]["fructos_own"]["signed_records"]
    assert wait_synced(s, 120) == []
    assert _remote_record_sizes(stack, large + huge + after) == {large[0]: 1_500_000, after[0]: 10}

    listed = platsync(s, "dlq", "list", "--json", "--kind", "oversized", "--route", "local_to_remote")
    assert listed.returncode == 0, listed.stderr
    letters = [d for d in json.loads(listed.stdout) if d["key"] == f"signed_records:{huge[0]}"]
    assert len(letters) == 1, letters
    letter = letters[0]
    assert letter["source"] == f"{s.topic('local', 'fructos_own')}[-1]@-1" and letter["bytes"] == 0
    assert "exceeds" in letter["error"] and "PRV_DOC_006" in letter["error"]
    assert "platsync resync --side local" in letter["hint"]
    retried = platsync(s, "dlq", "retry", letter["id"])
    assert retried.returncode == 0 and "nothing to re-drive (oversized)" in retried.stdout
    # The oversized record stays on the local side only: forget it there, so later tests comparing both
    # sides find converged stores.
    assert forget_rows(s, "local", "fructos_own", "signed_records", huge, "local") == 1
