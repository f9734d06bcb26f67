"""The real broker behind the link proxy, with the settings' broker security (tests only).

The broker listens (plaintext) on ``broker_listen_port``; the link proxy (infra/local/link.py)
serves ``broker_port`` with TLS/SASL as ``broker_security_protocol`` says, in a thread of the
test process, exactly as ``python -m infra.local.link`` runs it on the stack.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from infra.local.broker import Broker
from infra.local.broker_secrets import ensure_broker_secrets
from infra.local.link import serve
from infra.local.process import read_pid, start_process, stop_process, wait_until
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings


@contextmanager
def running_link_proxy(settings: Settings) -> Iterator[None]:
    """The link proxy on ``broker_port`` in front of ``broker_listen_port``; stopped on exit."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(settings, settings.broker_port, settings.broker_listen_port, stop))
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failure.append(exc)
        finally:
            pending = asyncio.all_tasks(loop)  # connection handlers of aborted connections
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=run, name="link-proxy", daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        if failure:
            raise RuntimeError(f"the link proxy failed: {failure[0]!r}") from failure[0]


@contextmanager
def running_secure_broker(settings: Settings) -> Iterator[Broker]:
    """Broker + link proxy, with the embedded secrets generated; yields a :class:`Broker` whose admin
    calls go through the proxy with the settings' TLS/SASL."""
    if settings.broker_security_protocol != "plaintext":
        ensure_broker_secrets(settings)
    broker = Broker(settings.host, settings.broker_port, settings.broker_listen_port,
                    client_options=client_config(settings))
    start_process(settings.data_dir, broker.spec())
    try:
        with running_link_proxy(settings):
            wait_until(broker.ready, 30, "broker behind the link proxy",
                       alive=lambda: read_pid(settings.data_dir, "broker") is not None)
            yield broker
    finally:
        stop_process(settings.data_dir, broker.name)
