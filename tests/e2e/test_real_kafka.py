"""The end-to-end suite against a real Apache Kafka and a real Confluent Schema Registry (testcontainers).

Wherever Docker is available this runs the e2e suite again in a child pytest whose session stack
(tests/e2e/conftest.py) uses the containers instead of the embedded broker, with the Confluent wire
format; tests that need the embedded broker itself (the cuttable link in front of it, its loss of
log, its TLS/SASL endpoint) are skipped there with that reason. Skipped here, with the reason, when
no Docker engine answers. A stack on a Kafka cluster it does not own (``broker_bootstrap_servers``) is
also tested here, without Docker: tests/e2e/test_schema_registry_stack.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.docker import docker_unavailable_reason
from tests.support.real_kafka import (
    E2E_KAFKA_ENV,
    E2E_KAFKA_TESTCONTAINERS,
    KAFKA_IMAGE,
    REGISTRY_IMAGE,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_the_e2e_suite_passes_on_a_real_kafka_and_schema_registry() -> None:
    if os.environ.get(E2E_KAFKA_ENV):
        pytest.skip("already the real-Kafka run (this test starts it)")
    reason = docker_unavailable_reason(f"the e2e suite on a real Kafka ({KAFKA_IMAGE}) and schema registry "
                                       f"({REGISTRY_IMAGE}) runs")
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

