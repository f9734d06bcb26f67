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
import re
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
from streams.runtime.kafka_config import users_file
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.settings import LOOPBACK, Settings, SettingsError, load_settings

log = logging.getLogger("platsync.link")

#: The side whose processes lose the broker when the link is cut (the broker is in the cloud).
CUT_SIDE = "local"
#: The client side of a regional server's processes (``platsync-<region>.replica-...``): a region's gate cuts them.
REPLICA_SIDE = "replica"
CUT_SIDES = (CUT_SIDE, REPLICA_SIDE)
CLIENT_ID_PREFIX = "platsync-"
_HEADER = struct.Struct(">ihhih")  # size, api_key, api_version, correlation_id, client_id length
_CHUNK = 256 * 1024


def wanted_path(settings: Settings) -> Path:
    """The wanted link state, written by ``platsync link up|down``."""
    return _wanted_file(settings.data_dir)


def enforced_path(settings: Settings) -> Path:
    """The link state the proxy enforces, written by the proxy."""
    return _enforced_file(settings.data_dir)


def _wanted_file(data_dir: Path) -> Path:
    return data_dir / "state" / "link.json"


def _enforced_file(data_dir: Path) -> Path:
    return data_dir / "state" / "link.enforced.json"


def link_data_dir(network_dir: Path, link: str) -> Path:
    """The data dir of one home link's two-party stack inside a network's data dir."""
    return network_dir / "links" / link


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


_CLIENT_TAG = re.compile(r"^(?:(?P<link>[a-z][a-z0-9_-]*)\.)?(?P<side>[a-z]+)-")


def client_link_side(client_id: str | None) -> tuple[str, str] | None:
    """(link, side) named by a Kafka ``client.id``: ``platsync-<side>-...`` gives ("", side), a network
    link's ``platsync-<link>.<side>-...`` gives (link, side) (:meth:`Settings.client_tag`); None if it
    names no side (operator tools)."""
    if not client_id or not client_id.startswith(CLIENT_ID_PREFIX):
        return None
    match = _CLIENT_TAG.match(client_id[len(CLIENT_ID_PREFIX):])
    if match is None or match["side"] not in (*SIDES, REPLICA_SIDE):
        return None
    return match["link"] or "", match["side"]


def client_side(client_id: str | None) -> str | None:
    """The side named by a Kafka ``client.id``, or None."""
    found = client_link_side(client_id)
    return found[1] if found else None


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


class LinkGate:
    """The wanted and enforced state of one link: its files live in its stack's data dir."""

    def __init__(self, name: str, data_dir: Path) -> None:
        self.name = name  # "" for a standalone two-party stack
        self.data_dir = data_dir
        self.up = bool(read_json(_wanted_file(data_dir)).get("up", True))
        self.wanted_ts = 0


class LinkProxy:
    """The cuttable TCP proxy in front of the broker: one gate per link (a network cuts each alone)."""

    def __init__(self, settings: Settings, upstream_port: int, users: UserStore | None = None,
                 links: Sequence[str] = ()) -> None:
        self.settings = settings
        self.upstream_port = upstream_port
        self.users = users  # set: every connection must authenticate (SASL) before anything is forwarded
        self.gates = ({name: LinkGate(name, link_data_dir(settings.data_dir, name)) for name in links} if links
                      else {"": LinkGate("", settings.data_dir)})
        self._connections: dict[asyncio.StreamWriter, tuple[str, str] | None] = {}
        self.counters = {"connections": 0, "cut": 0, "refused": 0, "auth_failed": 0}
        self._users_stamp: tuple[int, int] | None = None  # the users file as last read (reload_users)
        if users is not None and users_file(settings).exists():
            self._users_stamp = _stamp(users_file(settings))

    @property
    def up(self) -> bool:
        """True while every link is up."""
        return all(gate.up for gate in self.gates.values())

    def _cut(self, tag: tuple[str, str] | None) -> bool:
        gate = self.gates.get(tag[0]) if tag else None
        return gate is not None and tag is not None and tag[1] in CUT_SIDES and not gate.up

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
        tag = client_link_side(parse_client_id(head + rest))
        if self._cut(tag):
            self.counters["refused"] += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError:
            writer.close()
            return
        self._connections[writer] = tag
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

    def reload_users(self) -> bool:
        """Accept the users added to the users file since it was read (a hospital joining a running network:
        :func:`infra.local.broker_secrets.share_with_links`); True if it changed."""
        if self.users is None:
            return False
        try:
            stamp = _stamp(users_file(self.settings))
        except OSError:
            return False
        if stamp == self._users_stamp:
            return False
        self.users, self._users_stamp = UserStore(endpoint_users(self.settings)), stamp
        log.info("broker users reloaded from %s", users_file(self.settings))
        return True

    def enforce(self) -> None:
        """Apply each link's wanted state; on a cut, reset every connection of its cut side now."""
        for gate in self.gates.values():
            wanted = read_json(_wanted_file(gate.data_dir))
            up = bool(wanted.get("up", True))
            wanted_ts = int(wanted.get("changed_ts_ms", 0))
            if up == gate.up and wanted_ts == gate.wanted_ts:
                continue
            gate.up, gate.wanted_ts = up, wanted_ts
            what = f"link {gate.name}" if gate.name else "link"
            if not up:
                victims = [w for w, tag in self._connections.items() if self._cut(tag)]
                for writer in victims:
                    _reset(writer)
                self.counters["cut"] += len(victims)
                log.warning("%s DOWN: %d connection(s) of %s-side processes reset; new ones refused",
                            what, len(victims), CUT_SIDE)
            else:
                log.warning("%s UP: %s-side processes may reach the broker again", what, CUT_SIDE)
            self.report(gate)

    def report(self, only: LinkGate | None = None) -> None:
        """Write what is enforced, per link (the CLI waits for it)."""
        for gate in [only] if only is not None else self.gates.values():
            mine = [tag for tag in self._connections.values() if tag is not None and tag[0] == gate.name]
            write_json(_enforced_file(gate.data_dir), {
                "up": gate.up, "wanted_ts_ms": gate.wanted_ts, "pid": os.getpid(),
                "cut_side": CUT_SIDE, "updated_ts_ms": time.time_ns() // 1_000_000,
                "open_connections": {**{s: sum(1 for t in mine if t[1] == s) for s in (*SIDES, REPLICA_SIDE)},
                                     "None": sum(1 for t in self._connections.values() if t is None)},
                **self.counters})


def _stamp(path: Path) -> tuple[int, int]:
    """What changes when a file is rewritten (``os.replace`` makes a new inode): inode and modification time."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


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


async def serve(settings: Settings, listen_port: int, upstream_port: int, stop: asyncio.Event,
                links: Sequence[str] = ()) -> None:
    """Run the proxy until ``stop`` is set (``links``: a network's home links, each cut alone)."""
    tls, users = endpoint_security(settings)
    proxy = LinkProxy(settings, upstream_port, users, links)
    server = await asyncio.start_server(proxy.handle, settings.host, listen_port, reuse_address=True, ssl=tls,
                                        ssl_handshake_timeout=30 if tls else None)
    proxy.report()
    log.info("link proxy on %s:%d (%s) -> broker %s:%d (link %s)", settings.host, listen_port,
             settings.broker_security_protocol, LOOPBACK, upstream_port, "up" if proxy.up else "DOWN")
    ticks = 0
    async with server:
        while not stop.is_set():
            if not server.is_serving():
                log.error("the listening socket on port %d is closed: clients are refused", listen_port)
                break
            proxy.enforce()
            ticks += 1
            if ticks % 20 == 0:
                proxy.report()
                proxy.reload_users()
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
    parser.add_argument("--links", default="", help="a network's home links (comma-separated): each is cut "
                        "alone, its state in <data dir>/links/<link>/state/")
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
        def on_signal(sig: signal.Signals) -> None:
            log.info("stopping on %s (from the stack's 'down' or an operator)", sig.name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await serve(settings, settings.broker_port, settings.broker_listen_port, stop,
                    [name for name in args.links.split(",") if name])

    try:
        asyncio.run(run())
    except Exception:  # the log must say why the proxy is gone: every client of the stack depends on it
        log.exception("the link proxy failed")
        return 1
    log.info("link proxy stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
