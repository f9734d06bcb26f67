"""Test helpers: the schema-registry stand-in as a real process on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.local.process import free_port, log_path, read_pid, start_process, stop_process, wait_until
from infra.local.schema_registry_standin import standin_ready, standin_spec


@contextmanager
def running_registry_standin(data_dir: Path, name: str = "schema-registry", port: int | None = None,
                             state_file: Path | None = None, basic_auth: str = "") -> Iterator[str]:
    """A stand-in registry process (pid and log in ``data_dir``); yields its URL, stopped on exit."""
    port = port or free_port()
    start_process(data_dir, standin_spec(name, "127.0.0.1", port, state_file, basic_auth))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: standin_ready(url), 30, "schema registry stand-in",
                   alive=lambda: read_pid(data_dir, name) is not None, log=log_path(data_dir, name))
        yield url
    finally:
        stop_process(data_dir, name)
