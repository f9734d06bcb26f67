"""SASL authentication of Kafka client connections at the embedded stack's broker endpoint.

The embedded broker (Tansu 0.6.0) cannot authenticate clients itself on its memory storage
(measured, docs/broker_security.md): with ``--authentication`` it refuses every request until a
client authenticated, but users can only be created through the Kafka API, which then needs an
authenticated client. So the link proxy (infra/local/link.py), the only endpoint clients are
given, authenticates each connection before it forwards anything but ``ApiVersions``:

``ApiVersions`` (forwarded to the broker, so clients see its real versions) -> ``SaslHandshake``
(v1; answered here) -> ``SaslAuthenticate`` (v0-v2; SCRAM-SHA-256/512 per RFC 5802/7677, or
PLAIN) -> from then on the connection is piped as is. Any other request before that, a wrong
password or an unknown user ends the connection after a ``SASL_AUTHENTICATION_FAILED`` answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ILLEGAL_SASL_STATE, UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 34, 33, 58
SCRAM_ITERATIONS = 4096
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
MAX_FRAME = 1 << 20  # nothing before authentication is larger


class AuthFailed(Exception):
    """The client did not authenticate; the message is what it is told."""


@dataclass(frozen=True)
class ScramCredential:
    """What a SCRAM server stores for one user and mechanism (never the password)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def scram_credential(password: str, mechanism: str, salt: bytes | None = None,
                     iterations: int = SCRAM_ITERATIONS) -> ScramCredential:
    """Derive the stored SCRAM credential of ``password`` (RFC 5802 section 3)."""
    name = _HASHES[mechanism]
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", name).digest()
    server_key = hmac.new(salted, b"Server Key", name).digest()
    return ScramCredential(salt, iterations, hashlib.new(name, client_key).digest(), server_key)


class UserStore:
    """The users an endpoint accepts: passwords for PLAIN, derived SCRAM credentials."""

    def __init__(self, users: dict[str, str], scram: dict[tuple[str, str], ScramCredential] | None = None) -> None:
        self._passwords = dict(users)
        self._scram = {(user, mech): scram_credential(pw, mech) for user, pw in users.items() for mech in _HASHES}
        self._scram.update(scram or {})

    def check_plain(self, user: str, password: str) -> bool:
        """True if ``password`` is ``user``'s."""
        expected = self._passwords.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def scram(self, user: str, mechanism: str) -> ScramCredential | None:
        """The SCRAM credential of ``user``, or None."""
        return self._scram.get((user, mechanism))


def _attrs(message: str) -> dict[str, str]:
    out = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if sep and len(key) == 1:
            out.setdefault(key, value)
    return out


class SaslSession:
    """One connection's SASL exchange (server side)."""

    def __init__(self, store: UserStore, mechanism: str, nonce: str | None = None) -> None:
        self.store, self.mechanism = store, mechanism
        self._nonce = nonce  # the server's part of the SCRAM nonce (tests); random by default
        self.user: str | None = None
        self.done = False
        self._state: tuple[str, ScramCredential, str, str] | None = None

    def step(self, token: bytes) -> bytes:
        """Consume a client token, return the server's; raise :class:`AuthFailed`."""
        if self.mechanism == "PLAIN":
            return self._plain(token)
        return self._scram_first(token) if self._state is None else self._scram_final(token)

    def _plain(self, token: bytes) -> bytes:
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise AuthFailed("malformed PLAIN message")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid not in ("", user) or not self.store.check_plain(user, password):
            raise AuthFailed(f"authentication failed for user {user!r} (wrong user name or password)")
        self.user, self.done = user, True
        return b""

    def _scram_first(self, token: bytes) -> bytes:
        message = token.decode("utf-8", "replace")
        gs2, sep, rest = message.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not sep or not sep2 or gs2 not in ("n", "y"):
            raise AuthFailed("malformed SCRAM client-first message (channel binding is not supported)")
        attrs = _attrs(bare)
        user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        nonce = attrs.get("r", "")
        if not user or not nonce or (authzid and authzid != f"a={user}"):
            raise AuthFailed("malformed SCRAM client-first message")
        cred = self.store.scram(user, self.mechanism)
        if cred is None:
            raise AuthFailed(f"authentication failed for user {user!r} (wrong user name or password)")
        server_nonce = nonce + (self._nonce or base64.b64encode(os.urandom(18)).decode())
        server_first = f"r={server_nonce},s={base64.b64encode(cred.salt).decode()},i={cred.iterations}"
        self._state = (user, cred, f"{bare},{server_first}", server_nonce, f"{gs2},{authzid},")
        self.user = user
        return server_first.encode()

    def _scram_final(self, token: bytes) -> bytes:
        assert self._state is not None
        user, cred, first_messages, server_nonce, gs2_header = self._state
        without_proof, sep, proof_b64 = token.decode("utf-8", "replace").rpartition(",p=")
        attrs = _attrs(without_proof)
        name = _HASHES[self.mechanism]
        try:
            proof = base64.b64decode(proof_b64, validate=True)
            binding = base64.b64decode(attrs.get("c", ""), validate=True).decode()
        except ValueError:
            raise AuthFailed("malformed SCRAM client-final message") from None
        if not sep or binding != gs2_header or attrs.get("r") != server_nonce:
            raise AuthFailed("SCRAM nonce or channel binding mismatch")
        auth_message = f"{first_messages},{without_proof}".encode()
        signature = hmac.new(cred.stored_key, auth_message, name).digest()
        wrong = AuthFailed(f"authentication failed for user {user!r} (wrong user name or password)")
        if len(proof) != len(signature):
            raise wrong
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(name, client_key).digest(), cred.stored_key):
            raise wrong
        self.done = True
        return b"v=" + base64.b64encode(hmac.new(cred.server_key, auth_message, name).digest())


# --- Kafka framing (only what the exchange before authentication needs) --------------------------

def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise AuthFailed("truncated request")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass(frozen=True)
class Request:
    """A request frame's header fields and its body."""

    api_key: int
    version: int
    correlation_id: int
    body: bytes  # after the header (and its tagged fields when flexible)


def parse_request(frame: bytes, flexible: bool) -> Request:
    """Split a request frame (without its size prefix) into header fields and body."""
    if len(frame) < 10:
        raise AuthFailed("truncated request")
    api_key, version, corr, id_len = struct.unpack_from(">hhih", frame)
    pos = 10 + max(id_len, 0)
    if flexible:
        count, pos = _uvarint(frame, pos)
        for _ in range(count):
            _tag, pos = _uvarint(frame, pos)
            size, pos = _uvarint(frame, pos)
            pos += size
    return Request(api_key, version, corr, frame[pos:])


def handshake_response(corr: int, error: int, mechanisms: tuple[str, ...]) -> bytes:
    """SaslHandshake response v0/v1, framed."""
    body = struct.pack(">ihi", corr, error, len(mechanisms))
    body += b"".join(struct.pack(">h", len(m)) + m.encode() for m in mechanisms)
    return struct.pack(">i", len(body)) + body


def authenticate_response(req: Request, error: int, message: str | None, token: bytes) -> bytes:
    """SaslAuthenticate response v0-v2, framed."""
    if req.version >= 2:
        msg = b"\0" if message is None else _put_uvarint(len(message.encode()) + 1) + message.encode()
        body = (struct.pack(">i", req.correlation_id) + b"\0" + struct.pack(">h", error) + msg
                + _put_uvarint(len(token) + 1) + token + struct.pack(">q", 0) + b"\0")
    else:
        msg = struct.pack(">h", -1) if message is None else struct.pack(">h", len(message.encode())) + message.encode()
        body = struct.pack(">ih", req.correlation_id, error) + msg + struct.pack(">i", len(token)) + token
        if req.version == 1:
            body += struct.pack(">q", 0)
    return struct.pack(">i", len(body)) + body


def authenticate_token(req: Request) -> bytes:
    """The SASL token of a SaslAuthenticate request."""
    if req.version >= 2:
        size, pos = _uvarint(req.body, 0)
        return req.body[pos:pos + max(size - 1, 0)]
    (size,) = struct.unpack_from(">i", req.body)
    return req.body[4:4 + size]


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One size-prefixed frame's content."""
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= MAX_FRAME:
        raise AuthFailed(f"unexpected frame of {size} bytes before authentication")
    return await reader.readexactly(size)


async def authenticate(first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter,
                       store: UserStore, mechanisms: tuple[str, ...] = MECHANISMS) -> str:
    """Run the SASL exchange of a client connection whose first frame is ``first``; return the user.

    ``ApiVersions`` requests are forwarded to the broker; anything else before authentication
    raises :class:`AuthFailed` (after telling the client why when the protocol allows it).
    """
    frame, session = first, None
    while True:
        api_key, version = struct.unpack_from(">hh", frame)
        if api_key == API_VERSIONS:
            up_writer.write(struct.pack(">i", len(frame)) + frame)
            await up_writer.drain()
            response = await read_frame(up_reader)
            writer.write(struct.pack(">i", len(response)) + response)
        elif api_key == SASL_HANDSHAKE:
            req = parse_request(frame, flexible=False)
            (size,) = struct.unpack_from(">h", req.body)
            mechanism = req.body[2:2 + size].decode("utf-8", "replace")
            if version < 1:
                writer.write(handshake_response(req.correlation_id, ILLEGAL_SASL_STATE, mechanisms))
                await writer.drain()
                raise AuthFailed("SaslHandshake v0 (unframed SASL) is not supported")
            if mechanism not in mechanisms:
                writer.write(handshake_response(req.correlation_id, UNSUPPORTED_SASL_MECHANISM, mechanisms))
                await writer.drain()
                raise AuthFailed(f"unsupported SASL mechanism {mechanism!r}")
            session = SaslSession(store, mechanism)
            writer.write(handshake_response(req.correlation_id, 0, (mechanism,)))
        elif api_key == SASL_AUTHENTICATE and session is not None:
            req = parse_request(frame, flexible=version >= 2)
            try:
                token = session.step(authenticate_token(req))
            except AuthFailed as exc:
                writer.write(authenticate_response(req, SASL_AUTHENTICATION_FAILED, str(exc), b""))
                await writer.drain()
                raise
            writer.write(authenticate_response(req, 0, None, token))
            if session.done:
                await writer.drain()
                assert session.user is not None
                return session.user
        else:
            raise AuthFailed(f"request {api_key} v{version} before SASL authentication")
        await writer.drain()
        frame = await read_frame(reader)
