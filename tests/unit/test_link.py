"""The link proxy's classification of Kafka clients by the ``client.id`` of their first request."""

from __future__ import annotations

import struct

import pytest

from infra.local.link import client_side, parse_client_id


def request(client_id: str | None, api_key: int = 18, version: int = 3) -> bytes:
    raw = b"" if client_id is None else client_id.encode()
    length = -1 if client_id is None else len(raw)
    body = struct.pack(">hhih", api_key, version, 7, length) + raw + b"\x00\x00"
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize(("client_id", "side"), [
    ("platsync-local-capture-meta", "local"),
    ("platsync-remote-worker-local_to_remote", "remote"),
    ("platsync-local-mode", "local"),
    ("platsync-admin", None),
    ("rdkafka", None),
    ("platsync-elsewhere-x", None),
    ("", None),
])
def test_client_side_from_client_id(client_id: str, side: str | None) -> None:
    assert client_side(parse_client_id(request(client_id))) == side


def test_null_or_truncated_client_id_names_no_side() -> None:
    assert parse_client_id(request(None)) is None
    assert parse_client_id(request("platsync-local-x")[:16]) is None
    assert parse_client_id(b"\x00\x01") is None
