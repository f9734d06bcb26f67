"""The real embedded stack (PostgreSQL x2, broker, Debezium captures, Faust workers), once per session.

With ``PLATSYNC_E2E_KAFKA=testcontainers`` (set by tests/e2e/test_real_kafka.py wherever Docker runs)
the session stack uses a real Kafka and a real Confluent Schema Registry in containers instead of the
embedded broker, and tests marked ``embedded_broker`` are skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from infra.local.stack import Stack
from streams.core.codec import MessageCodec
from streams.ops.dlq import message_codec
from streams.runtime.settings import Settings
from tests.support.real_kafka import E2E_KAFKA_ENV, E2E_KAFKA_TESTCONTAINERS, kafka_and_registry
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir


def _real_kafka() -> bool:
    mode = os.environ.get(E2E_KAFKA_ENV, "")
    if mode not in ("", E2E_KAFKA_TESTCONTAINERS):
        raise pytest.UsageError(f"{E2E_KAFKA_ENV}={mode!r}: expected empty or {E2E_KAFKA_TESTCONTAINERS!r}")
    return mode == E2E_KAFKA_TESTCONTAINERS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a real Kafka, skip what needs the embedded broker itself."""
    if not _real_kafka():
        return
    skip = pytest.mark.skip(reason="needs the embedded broker (its cuttable link, log loss or TLS/SASL endpoint); "
                                   f"this run uses a real Kafka ({E2E_KAFKA_ENV})")
    own = pytest.mark.skip(reason="does not use the session stack: it runs the same in the embedded run")
    for item in items:
        if item.get_closest_marker("embedded_broker"):
            item.add_marker(skip)
        elif "stack" not in getattr(item, "fixturenames", ()):
            item.add_marker(own)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """A running two-site stack on free ports; drained and stopped at the end of the session."""
    with ExitStack() as cleanup:
        data_dir = make_data_dir("platsync-e2e-")
        cleanup.callback(remove_data_dir, data_dir)
        # A small message limit, so that test_oversized can pass it with a few MB instead of 16.
        # Distinctive secrets, so that tests/e2e/test_observability.py can prove no log contains them.
        # TLS + SASL on the broker connection (the link proxy terminates them), so every e2e test also
        # proves that every process and tool connects that way (tests/e2e/test_broker_security_stack.py).
        overrides: dict[str, Any] = {"broker_security_protocol": "sasl_ssl"}
        if _real_kafka():
            bootstrap, registry_url = cleanup.enter_context(kafka_and_registry())
            # The containers speak plaintext; on some Docker set-ups their address is not loopback.
            overrides = {"broker_bootstrap_servers": bootstrap, "schema_registry_url": registry_url,
                         "broker_plaintext_hosts": bootstrap.rsplit(":", 1)[0]}
        settings = isolated_settings(data_dir, kafka_message_max_bytes=2_097_152,
                                     pg_password=f"pw-{secrets.token_hex(8)}",
                                     keycloak_admin_password=f"kc-{secrets.token_hex(8)}", **overrides)
        running = Stack(settings)
        try:
            running.up(say=lambda m: print(f"[stack] {m}"))
            yield running
        finally:
            running.down(say=lambda m: print(f"[stack] {m}"), drain_timeout_s=30)


@pytest.fixture(scope="session")
def stack_settings(stack: Stack) -> Settings:
    """Settings of the session's running stack."""
    return stack.settings


@pytest.fixture(scope="session")
def codec(stack: Stack) -> MessageCodec:
    """How the session stack's messages are framed (plain, or the Confluent wire format of its registry)."""
    return message_codec(stack.settings)
