"""A private stack (tests, the benchmark): a fresh data dir and free ports, never colliding with a running one."""

from __future__ import annotations

import tempfile
from pathlib import Path

from infra.local.process import free_port
from streams.runtime.settings import Settings, load_settings

#: Every port setting of the stack (a private stack gets free ones).
PORT_SETTINGS = ("broker_port", "broker_listen_port", "pg_local_port", "pg_remote_port", "keycloak_local_port",
                 "keycloak_remote_port", "mode_local_port", "mode_remote_port", "api_local_port", "api_remote_port",
                 "metrics_capture_local_port", "metrics_capture_remote_port", "metrics_worker_local_to_remote_port",
                 "metrics_worker_remote_to_local_port", "metrics_mode_local_port", "metrics_mode_remote_port",
                 "fhir_standin_port")


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings on free ports rooted in ``data_dir``, ignoring the caller's environment."""
    return load_settings(
        env={}, data_dir=data_dir, **{**{name: free_port() for name in PORT_SETTINGS}, **overrides})


def make_data_dir(prefix: str = "platsync-test-", parent: Path | None = None) -> Path:
    """A fresh data dir the unprivileged PostgreSQL user can traverse (pytest's tmp is 0700),
    in ``parent`` (created if missing) or the system's temp dir."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o755)
    return path
