"""The network link between the hospital (local) and the cloud (remote) on the embedded stack.

Where the processes stand: the broker stands in for the cloud's Kafka, so it is on the remote
side with the remote PostgreSQL and Keycloak. Each worker runs on the side of the stores it
writes (``local_to_remote`` in the cloud, ``remote_to_local`` in the hospital) and each capture
beside its databases. The only traffic that crosses the link is therefore the hospital
processes' Kafka traffic: ``capture-local`` producing and ``worker-remote_to_local`` (and the
local mode server) consuming.

This module is that link: a TCP proxy in front of the broker. Every Kafka client connects
through it (the broker advertises the proxy's port); the proxy reads the first request of each
connection, whose header carries the Kafka ``client.id``, and every engine client names its
side there (``platsync-<side>-...``). ``platsync link down`` makes the proxy reset every
connection of local-side clients and refuse new ones, so those processes really lose the
broker (connection resets, timeouts), while the cloud side keeps working; ``link up`` lets
them reconnect. Clients that name no side (operator tools) are never cut.

With ``broker_security_protocol`` ``ssl`` or ``sasl_ssl`` the proxy is also the broker's TLS
endpoint (the generated certificate, infra/local/broker_secrets.py) and, for ``sasl_ssl``, it
authenticates every connection (infra/local/kafka_sasl.py) before forwarding it: the embedded
broker can do neither (docs/broker_security.md). The client id is read from the first request
after the TLS handshake, as in plaintext; upstream, the broker is reached in plaintext on loopback.

State: ``<data_dir>/state/link.json`` is the wanted state (written by the CLI);
``<data_dir>/state/link.enforced.json`` is what the proxy enforces (written by it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.local.broker_secrets import endpoint_users, server_ssl_context
from infra.local.kafka_sasl import AuthFailed, UserStore, authenticate
from streams.core.model import SIDES
from streams.runtime.jsonfile import read_json, write_json
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.settings import LOOPBACK, Settings, SettingsError, load_settings

log = logging.getLogger("platsync.link")

#: The side whose processes lose the broker when the link is cut (the broker is in the cloud).
CUT_SIDE = "local"
CLIENT_ID_PREFIX = "platsync-"
_HEADER = struct.Struct(">ihhih")  # size, api_key, api_version, correlation_id, client_id length
_CHUNK = 256 * 1024


def wanted_path(settings: Settings) -> Path:
    """The wanted link state, written by ``platsync link up|down``."""
    return settings.data_dir / "state" / "link.json"


def enforced_path(settings: Settings) -> Path:
    """The link state the proxy enforces, written by the proxy."""
    return settings.data_dir / "state" / "link.enforced.json"


def link_is_up(settings: Settings) -> bool:
    """The wanted state: True unless ``platsync link down`` was run (and no ``link up`` since)."""
    return bool(read_json(wanted_path(settings)).get("up", True))


def set_link(settings: Settings, up: bool, note: str = "") -> dict[str, Any]:
    """Record the wanted state; the running proxy enforces it within ~0.1 s."""
    doc = {"up": up, "changed_ts_ms": time.time_ns() // 1_000_000, "note": note}
    write_json(wanted_path(settings), doc)
    return doc


def enforced_state(settings: Settings) -> dict[str, Any]:
    """What the proxy last reported (empty if it never ran)."""
    return read_json(enforced_path(settings))


def wait_enforced(settings: Settings, up: bool, timeout_s: float = 10.0) -> dict[str, Any] | None:
    """Wait until the proxy enforces ``up``; return its report, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    wanted_ts = read_json(wanted_path(settings)).get("changed_ts_ms", 0)
    while time.monotonic() < deadline:
        state = enforced_state(settings)
        if state.get("up") == up and state.get("wanted_ts_ms", -1) >= wanted_ts:
            return state
        time.sleep(0.05)
    return None


def client_side(client_id: str | None) -> str | None:
    """The side named by a Kafka ``client.id`` (``platsync-<side>-...``), or None."""
    if not client_id or not client_id.startswith(CLIENT_ID_PREFIX):
        return None
    side = client_id[len(CLIENT_ID_PREFIX):].split("-", 1)[0]
    return side if side in SIDES else None


def parse_client_id(first_bytes: bytes) -> str | None:
    """The ``client.id`` in the header of a Kafka request (request header v1+: nullable STRING).

    Every request version the engine's clients send carries the client id right after the
    correlation id, as a 16-bit length and UTF-8 bytes (also in flexible versions: the header's
    client id is never a compact string). Returns None if it is absent or unreadable.
    """
    if len(first_bytes) < _HEADER.size:
        return None
    _size, _key, _version, _corr, length = _HEADER.unpack_from(first_bytes)
    if length < 0:
        return None
    raw = first_bytes[_HEADER.size:_HEADER.size + length]
    if len(raw) != length:
        return None
    return raw.decode("utf-8", "replace")


class LinkProxy:
    """The cuttable TCP proxy in front of the broker."""

    def __init__(self, settings: Settings, upstream_port: int, users: UserStore | None = None) -> None:
        self.settings = settings
        self.upstream_port = upstream_port
        self.users = users  # set: every connection must authenticate (SASL) before anything is forwarded
        self.up = link_is_up(settings)
        self._wanted_ts = 0
        self._connections: dict[asyncio.StreamWriter, str | None] = {}
        self.counters = {"connections": 0, "cut": 0, "refused": 0, "auth_failed": 0}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Classify one client connection by its first request, then pipe it to the broker."""
        self.counters["connections"] += 1
        try:
            head = await asyncio.wait_for(reader.readexactly(_HEADER.size), timeout=30)
            length = _HEADER.unpack_from(head)[4]
            rest = await reader.readexactly(length) if length > 0 else b""
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        side = client_side(parse_client_id(head + rest))
        if side == CUT_SIDE and not self.up:
            self.counters["refused"] += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError:
            writer.close()
            return
        self._connections[writer] = side
        if self.users is not None and not await self._authenticate(head + rest, reader, writer, up_reader, up_writer):
            return
        if self.users is None:
            up_writer.write(head + rest)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._connections.pop(writer, None)
            for w in (writer, up_writer):
                w.close()

    async def _authenticate(self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> bool:
        """SASL-authenticate a connection (infra/local/kafka_sasl.py); on failure close it and return False."""
        assert self.users is not None
        try:
            frame = first[4:] + await reader.readexactly(_HEADER.unpack_from(first)[0] - (len(first) - 4))
            user = await asyncio.wait_for(
                authenticate(frame, reader, writer, up_reader, up_writer, self.users), timeout=30)
            log.debug("authenticated %s", user)
            return True
        except (AuthFailed, TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, struct.error,
                ValueError) as exc:
            self.counters["auth_failed"] += 1
            log.warning("connection refused: %s", exc)
            self._connections.pop(writer, None)
            for w in (writer, up_writer):
                w.close()
            return False

    def enforce(self) -> None:
        """Apply the wanted state; on a cut, reset every connection of the cut side now."""
        wanted = read_json(wanted_path(self.settings))
        up = bool(wanted.get("up", True))
        wanted_ts = int(wanted.get("changed_ts_ms", 0))
        if up == self.up and wanted_ts == self._wanted_ts:
            return
        self.up, self._wanted_ts = up, wanted_ts
        if not up:
            victims = [w for w, side in self._connections.items() if side == CUT_SIDE]
            for writer in victims:
                _reset(writer)
            self.counters["cut"] += len(victims)
            log.warning("link DOWN: %d connection(s) of %s-side processes reset; new ones refused",
                        len(victims), CUT_SIDE)
        else:
            log.warning("link UP: %s-side processes may reach the broker again", CUT_SIDE)
        self.report()

    def report(self) -> None:
        """Write what is enforced (the CLI waits for it)."""
        write_json(enforced_path(self.settings), {
            "up": self.up, "wanted_ts_ms": self._wanted_ts, "pid": os.getpid(),
            "cut_side": CUT_SIDE, "updated_ts_ms": time.time_ns() // 1_000_000,
            "open_connections": {str(s): sum(1 for v in self._connections.values() if v == s)
                                 for s in (*SIDES, None)}, **self.counters})


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort a connection (RST, like a network cut seen from the client), not a polite close."""
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError, OSError):
        pass
    finally:
        writer.close()


def endpoint_security(settings: Settings) -> tuple[ssl.SSLContext | None, UserStore | None]:
    """The proxy's TLS server context and SASL users for ``broker_security_protocol`` (None, None: plaintext).

    The broker behind the proxy cannot do TLS or provision SASL users itself (docs/broker_security.md),
    so the proxy, the only endpoint clients are given, terminates TLS and authenticates.
    """
    if settings.broker_security_protocol == "plaintext":
        return None, None

    users = UserStore(endpoint_users(settings)) if settings.broker_security_protocol == "sasl_ssl" else None
    return server_ssl_context(settings), users


async def serve(settings: Settings, listen_port: int, upstream_port: int, stop: asyncio.Event) -> None:
    """Run the proxy until ``stop`` is set."""
    tls, users = endpoint_security(settings)
    proxy = LinkProxy(settings, upstream_port, users)
    server = await asyncio.start_server(proxy.handle, settings.host, listen_port, reuse_address=True, ssl=tls,
                                        ssl_handshake_timeout=30 if tls else None)
    proxy.report()
    log.info("link proxy on %s:%d (%s) -> broker %s:%d (link %s)", settings.host, listen_port,
             settings.broker_security_protocol, LOOPBACK, upstream_port, "up" if proxy.up else "DOWN")
    ticks = 0
    async with server:
        while not stop.is_set():
            proxy.enforce()
            ticks += 1
            if ticks % 20 == 0:
                proxy.report()
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.1)
            except TimeoutError:
                pass
        server.close()
        for writer in list(proxy._connections):
            writer.transport.abort()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.local.link``: run the link proxy of the embedded stack."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.link", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging("link")
    try:
        settings = load_settings(config=args.config, data_dir=args.data_dir)
        configure_for(settings, "link")
    except (SettingsError, ValueError) as exc:
        log.error("bad settings: %s", exc)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, settings.broker_port, settings.broker_listen_port, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
