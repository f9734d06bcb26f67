"""One exception root for the engine, one marker for "retry later" (streams/core/errors.py, issue 14)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from streams.core.errors import PlatSyncError, RetryableError

REPO = Path(__file__).resolve().parents[2]
#: Stand-ins of servers we cannot install and the link's SASL handshake: their errors are the
#: simulated servers' own, never raised into the engine.
NOT_ENGINE = ("infra/local/keycloak_standin/", "infra/local/schema_registry_standin/", "infra/local/kafka_sasl.py")


def engine_error_classes() -> list[tuple[str, str]]:
    """(module, class) of every exception class the engine defines."""
    found = []
    for package in ("streams", "connectors", "infra", "bench"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if any(rel.startswith(prefix) for prefix in NOT_ENGINE):
                continue
            module = rel[:-3].replace("/", ".")
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    cls = getattr(importlib.import_module(module), node.name)
                    if issubclass(cls, BaseException):  # not a record of an error (a dataclass)
                        found.append((module, node.name))
    return found


ERRORS = engine_error_classes()


def test_the_scan_finds_the_engines_errors() -> None:
    names = {name for _, name in ERRORS}
    assert {"SettingsError", "StoreUnavailableError", "DeliveryError", "ApiError", "ProcessError"} <= names


@pytest.mark.parametrize(("module", "name"), ERRORS, ids=[f"{m}.{n}" for m, n in ERRORS])
def test_every_engine_error_is_a_platsync_error(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, PlatSyncError), f"{module}.{name} does not derive from streams.core.errors.PlatSyncError"


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, n in ERRORS if "Unavailable" in n or "Unreachable" in n])
def test_every_unavailable_error_is_retryable(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, RetryableError)


def test_the_registry_is_retried_without_posing_as_a_sink_store() -> None:
    from connectors.sinks.base import StoreUnavailableError
    from streams.runtime.schema_registry import SchemaRegistryUnavailableError

    assert issubclass(SchemaRegistryUnavailableError, RetryableError)
    assert not issubclass(SchemaRegistryUnavailableError, StoreUnavailableError)
