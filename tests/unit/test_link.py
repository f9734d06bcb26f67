"""The link proxy's classification of Kafka clients by the ``client.id`` of their first request."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from infra.local.link import (
    LinkProxy,
    client_link_side,
    client_side,
    enforced_state,
    link_data_dir,
    parse_client_id,
    set_link,
)
from streams.runtime.settings import load_settings


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


@pytest.mark.parametrize(("client_id", "tag"), [
    ("platsync-local-capture-meta", ("", "local")),
    ("platsync-hosp-a.local-capture-meta", ("hosp-a", "local")),
    ("platsync-hosp_b2.remote-worker-local_to_remote", ("hosp_b2", "remote")),
    ("platsync-hosp-a.local-mode", ("hosp-a", "local")),
    ("platsync-hosp-a.elsewhere-x", None),
    ("platsync-Hosp.local-x", None),  # node ids are lower case
    ("platsync-operator-dlq", None),
])
def test_client_link_and_side_from_client_id(client_id: str, tag: tuple[str, str] | None) -> None:
    assert client_link_side(parse_client_id(request(client_id))) == tag


def test_settings_tag_client_ids_with_their_link(tmp_path: Path) -> None:
    standalone = load_settings(env={}, data_dir=tmp_path)
    linked = load_settings(env={}, data_dir=tmp_path, network_link="hosp-a")
    assert client_link_side(f"platsync-{standalone.client_tag('local')}-mode") == ("", "local")
    assert client_link_side(f"platsync-{linked.client_tag('local')}-mode") == ("hosp-a", "local")


def test_a_network_proxy_cuts_each_link_alone(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    proxy = LinkProxy(settings, upstream_port=1, links=["hosp-a", "hosp-b"])
    proxy.report()  # as serve() does at start
    set_link(load_settings(env={}, data_dir=link_data_dir(tmp_path, "hosp-a")), up=False, note="test")
    proxy.enforce()
    assert proxy._cut(("hosp-a", "local")) and not proxy._cut(("hosp-a", "remote"))
    assert not proxy._cut(("hosp-b", "local")) and not proxy._cut(("", "local")) and not proxy._cut(None)
    assert enforced_state(load_settings(env={}, data_dir=link_data_dir(tmp_path, "hosp-a")))["up"] is False
    assert enforced_state(load_settings(env={}, data_dir=link_data_dir(tmp_path, "hosp-b")))["up"] is True
