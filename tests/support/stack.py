"""Test helpers that start real PostgreSQL instances and the real broker on free ports."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.local.broker import Broker
from infra.local.databases import postgres_instance, provision_side
from infra.local.process import free_port, read_pid, start_process, stop_process, wait_until
from streams.model import SIDES
from streams.settings import Settings, load_settings


def make_data_dir(prefix: str = "platsync-test-") -> Path:
    """A fresh data dir the unprivileged PostgreSQL user can traverse (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings on free ports rooted in ``data_dir``, ignoring the caller's environment."""
    return load_settings(
        env={}, data_dir=data_dir, **{**{name: free_port() for name in PORT_SETTINGS}, **overrides})


#: Every port setting of the stack (each test stack gets free ones).
PORT_SETTINGS = ("broker_port", "broker_listen_port", "pg_local_port", "pg_remote_port", "keycloak_local_port",
                 "keycloak_remote_port", "mode_local_port", "mode_remote_port")


@contextmanager
def running_postgres(settings: Settings) -> Iterator[Settings]:
    """Both sides' PostgreSQL instances, provisioned with the store schemas; stopped on exit."""
    started = []
    try:
        for side in SIDES:
            pg = postgres_instance(settings, side)
            pg.init()
            started.append(pg)
            pg.start()
            provision_side(settings, side)
        yield settings
    finally:
        for pg in started:
            stop_process(settings.data_dir, pg.name)


@contextmanager
def running_broker(settings: Settings) -> Iterator[Broker]:
    """The real broker on the settings' port; stopped on exit."""
    broker = Broker(settings.host, settings.broker_port)
    start_process(settings.data_dir, broker.spec())
    try:
        wait_until(broker.ready, 30, "broker", alive=lambda: read_pid(settings.data_dir, "broker") is not None)
        yield broker
    finally:
        stop_process(settings.data_dir, broker.name)


def remove_data_dir(path: Path) -> None:
    """Delete a test data dir (after every process using it stopped)."""
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_keycloak_standins(settings: Settings) -> Iterator[Settings]:
    """The embedded Keycloak stand-in of both sides (PostgreSQL must run); stopped on exit."""
    from infra.local.stack import Stack, embedded_keycloak_sides

    try:
        Stack(settings).keycloak_up(say=lambda _m: None)
        yield settings
    finally:
        for side in embedded_keycloak_sides(settings):
            stop_process(settings.data_dir, f"keycloak-{side}")
