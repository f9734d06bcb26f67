"""Test helpers that start real PostgreSQL instances and the real broker on free ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.local.broker import Broker
from infra.local.databases import postgres_instance, provision_side
from infra.local.isolated import PORT_SETTINGS, isolated_settings, make_data_dir
from infra.local.process import read_pid, start_process, stop_process, wait_until
from streams.core.model import SIDES
from streams.runtime.settings import Settings

__all__ = ["PORT_SETTINGS", "isolated_settings", "make_data_dir", "remove_data_dir", "running_broker",
           "running_keycloak_standins", "running_postgres"]


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
