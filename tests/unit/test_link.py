"""The link proxy's classification of Kafka clients by the ``client.id`` of their first request."""

from __future__ import annotations

import struct
import sys
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
from infra.local.process import ProcessSpec, free_port, start_process, stop_process
from infra.local.stack import write_settings_file
from streams.cli.main import main
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


def test_link_cli_says_why_a_proxy_that_is_alive_but_not_listening_does_not_confirm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A proxy process that lives on without its listening socket: the CLI names the cause and the fix."""
    port = free_port()
    settings = load_settings(env={}, data_dir=tmp_path, broker_port=port)
    write_settings_file(settings)
    (tmp_path / "run").mkdir()
    (tmp_path / "logs").mkdir()
    start_process(tmp_path, ProcessSpec(name="link", argv=[sys.executable, "-c", "import time; time.sleep(60)"]))
    (tmp_path / "logs" / "link.log").write_text("the proxy's last words\n")
    try:
        rc = main(["link", "down", "--data-dir", str(settings.data_dir)])
    finally:
        stop_process(tmp_path, "link", 10)
    out = capsys.readouterr().out
    assert rc == 1
    assert "did not confirm within 10 s" in out and "is alive" in out, out
    assert f"nothing listens on its port {port}" in out and "'platsync down' then 'platsync up'" in out, out
    assert "the proxy's last words" in out, out
