"""The API server's mode from the mode server over HTTP (connectors/reference_api/mode_source.py): a real HTTP
server on loopback announces X-Hybridmode; the follower keeps the last mode while it cannot be reached."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connectors.reference_api.mode_source import ModeFollower
from infra.local.process import free_port


class Announcer(ThreadingHTTPServer):
    """Answers every GET with ``X-Hybridmode: <announced>``, as the mode server does."""

    announced = "normal"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("X-Hybridmode", self.server.announced)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture()
def announcer() -> Iterator[Announcer]:
    server = Announcer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def follower(url: str) -> ModeFollower:
    # A long poll interval: the test drives poll_once itself.
    return ModeFollower(url, poll_s=3600, timeout_s=2)


def test_it_follows_what_the_mode_server_announces(announcer: Announcer) -> None:
    f = follower(f"http://127.0.0.1:{announcer.server_port}/healthz")
    try:
        for mode in ("emergency", "recovery", "normal"):
            announcer.announced = mode
            f.poll_once()
            assert f.mode() == mode
    finally:
        f.close()


def test_an_unreachable_or_garbled_mode_server_leaves_the_last_mode(announcer: Announcer) -> None:
    port = announcer.server_port
    f = follower(f"http://127.0.0.1:{port}/healthz")
    try:
        announcer.announced = "emergency"
        f.poll_once()
        announcer.announced = "panic"
        f.poll_once()
        assert f.mode() == "emergency"
        announcer.shutdown()
        announcer.server_close()
        f.poll_once()
        assert f.mode() == "emergency"
    finally:
        f.close()


def test_before_any_answer_it_says_normal_as_the_mode_server_starts() -> None:
    f = follower(f"http://127.0.0.1:{free_port()}/healthz")
    try:
        f.poll_once()
        assert f.mode() == "normal"
    finally:
        f.close()


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="expected an http"):
        ModeFollower("platsync-mode-local:8090")
