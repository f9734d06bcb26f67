"""A stand-in of a Confluent-compatible schema registry for the embedded stack and the tests.

No registry server installs here (none is on PyPI), so this package serves the part of
Confluent Schema Registry's REST API the engine uses, with its documented behaviour (global,
stable ids; versions per subject; compatibility levels enforced; Confluent's error codes).
Production uses a real registry (docs/schema_registry.md); ``tests/e2e/test_schema_registry_real.py``
runs the same client cases against ``confluentinc/cp-schema-registry`` wherever Docker runs.

Run: ``python -m infra.local.schema_registry_standin --port 18085 [--state-file F] [--basic-auth U:P]``.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from infra.local.process import ProcessSpec

__all__ = ["standin_ready", "standin_spec"]


def standin_spec(name: str, host: str, port: int, state_file: Path | None = None, basic_auth: str = "",
                 compatibility: str = "BACKWARD") -> ProcessSpec:
    """The process spec of a stand-in listening on ``host:port``."""
    argv = [sys.executable, "-m", "infra.local.schema_registry_standin", "--host", host, "--port", str(port),
            "--compatibility", compatibility]
    if state_file is not None:
        argv += ["--state-file", str(state_file)]
    env = {"PLATSYNC_SCHEMA_REGISTRY_STANDIN_AUTH": basic_auth} if basic_auth else None
    return ProcessSpec(name=name, argv=argv, env=env)


def standin_ready(url: str) -> bool:
    """True once the registry at ``url`` answers ``GET /`` (401 counts: it is serving)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=1) as response:  # noqa: S310 - our URL
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
