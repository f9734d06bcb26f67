"""The end-to-end suite against a real Apache Kafka and a real Confluent Schema Registry (testcontainers).

Wherever Docker is available this runs the e2e suite again in a child pytest whose session stack
(tests/e2e/conftest.py) uses the containers instead of the embedded broker, with the Confluent wire
format; tests that need the embedded broker itself (the cuttable link in front of it, its loss of
log, its TLS/SASL endpoint) are skipped there with that reason. Skipped here, with the reason, when
no Docker engine answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.real_kafka import (
    E2E_KAFKA_ENV,
    E2E_KAFKA_TESTCONTAINERS,
    KAFKA_IMAGE,
    REGISTRY_IMAGE,
    docker_unavailable_reason,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_the_e2e_suite_passes_on_a_real_kafka_and_schema_registry() -> None:
    if os.environ.get(E2E_KAFKA_ENV):
        pytest.skip("already the real-Kafka run (this test starts it)")
    reason = docker_unavailable_reason(f"the e2e suite on a real Kafka ({KAFKA_IMAGE}) and schema registry "
                                       f"({REGISTRY_IMAGE})")
    if reason is not None:
        pytest.skip(reason)
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "e2e", str(REPO / "tests" / "e2e"),
         "--deselect", f"{Path(__file__).relative_to(REPO)}"],
        cwd=REPO, env={**os.environ, E2E_KAFKA_ENV: E2E_KAFKA_TESTCONTAINERS}, capture_output=True, text=True,
        timeout=3600)
    print(child.stdout[-20000:])
    assert child.returncode == 0, child.stdout[-5000:] + child.stderr[-3000:]
    assert " passed" in child.stdout


def test_a_stack_on_a_kafka_cluster_of_its_own_runs_no_broker_or_link_and_syncs() -> None:
    """``broker_bootstrap_servers`` (here: the broker binary started beside the stack, as a cluster the
    stack does not own) replaces the embedded broker and the link: the stack starts neither, creates its
    topics there, syncs both ways, and ``platsync link`` says the link does not exist."""
    from connectors.reference_api.service import ReferenceApi
    from infra.local.process import free_port, read_pid
    from infra.local.stack import Stack, components
    from streams.barrier import wait_synced
    from tests.support.helpers import platsync
    from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir, running_broker

    cluster_dir = make_data_dir("platsync-cluster-")
    data_dir = make_data_dir("platsync-external-")
    cluster = isolated_settings(cluster_dir, broker_port=free_port())
    try:
        with running_broker(cluster):
            s = isolated_settings(data_dir, broker_bootstrap_servers=cluster.broker_bootstrap)
            assert {c.kind for c in components(s)}.isdisjoint({"broker", "link"})
            stack = Stack(s)
            try:
                stack.up(say=lambda m: print(f"[external] {m}"))
                assert read_pid(s.data_dir, "broker") is None and read_pid(s.data_dir, "link") is None
                made = {}
                for side in ("local", "remote"):
                    with ReferenceApi(s, side) as api:
                        made[side] = api.call("PRV_STF_001", {"staff_code": f"ext-{side}", "display_name": "外部",
                                                              "role": "clerk"})["written"]["meta"]["staff"][0]
                assert wait_synced(s, 90) == []
                for side, other in (("local", "remote"), ("remote", "local")):
                    shown = platsync(s, "inspect", "--side", other, "--store", "meta", "--entity", "staff",
                                     "--id", made[side])
                    assert shown.returncode == 0, shown.stderr
                cut = platsync(s, "link", "down")
                assert cut.returncode == 2 and "only in front of the embedded broker" in cut.stderr
            finally:
                stack.down(say=lambda m: print(f"[external] {m}"), drain_timeout_s=30)
    finally:
        remove_data_dir(data_dir)
        remove_data_dir(cluster_dir)
