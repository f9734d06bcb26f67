"""The session's embedded stack runs with ``broker_security_protocol = "sasl_ssl"``
(tests/e2e/conftest.py): every process (captures, Faust workers, mode servers, operator tools)
reaches the broker through TLS + SCRAM as its own principal, and the API matrix still syncs both ways."""

from __future__ import annotations

import json
import stat

import psycopg
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connectors.reference_api.service import ReferenceApi
from infra.local.link import enforced_state
from infra.local.stack import Stack
from streams.apply.barrier import wait_synced
from streams.runtime.connections import libpq_dsn
from streams.runtime.kafka_config import users_file
from streams.runtime.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_broker]


def patient(settings: Settings, side: str, patient_id: str) -> tuple | None:
    with psycopg.connect(libpq_dsn(settings, side, "meta")) as conn:
        return conn.execute("SELECT family_name FROM patients WHERE id = %s", (patient_id,)).fetchone()


def test_api_calls_sync_both_ways_over_tls_and_sasl(stack: Stack) -> None:
    s = stack.settings
    assert s.broker_security_protocol == "sasl_ssl"
    made = {}
    for side in ("local", "remote"):
        with ReferenceApi(s, side) as api:
            made[side] = api.call("PRV_PAT_001", {
                "family_name": f"安全-{side}", "given_name": "太郎", "birth_date": "1970-03-04", "sex": "male",
                "institution_code": "1310000001"})["written"]["meta"]["patients"][0]
    assert wait_synced(s, 45) == []
    assert patient(s, "remote", made["local"]) == ("安全-local",)
    assert patient(s, "local", made["remote"]) == ("安全-remote",)
    # Every engine process authenticated as its own principal; nobody got in without TLS + SASL.
    users = json.loads(users_file(s).read_text())
    assert "platsync-capture-local" in users and stat.S_IMODE(users_file(s).stat().st_mode) == 0o600
    state = enforced_state(s)
    assert state["connections"] > 0 and state.get("auth_failed", 0) == 0, state
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": s.broker_bootstrap, "log_level": 0}).list_topics(timeout=2)
