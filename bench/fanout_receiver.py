"""A webhook receiver on 127.0.0.1 (a free port, in a thread): the fan-out benchmark's and the notification
tests' stand-in for a hospital's endpoint.

It answers ``503`` to the first ``fail_first`` POSTs (to exercise the notifier's retries), then ``204``; it
keeps every request (idempotency key, JSON body, status answered), so a caller can count deliveries per
hospital (the body's ``node``) and find keys acknowledged more than once (duplicates a receiver must detect).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCEPTED, REFUSED = 204, 503


class WebhookReceiver:
    """``with WebhookReceiver(fail_first=2) as hook: ... hook.url ...``."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[str, dict[str, Any], int]] = []  # (idempotency key, body, status answered)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                with receiver._lock:
                    status = REFUSED if len(receiver.requests) < receiver.fail_first else ACCEPTED
                    receiver.requests.append((self.headers.get("Idempotency-Key", ""), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def acknowledged(self, node: str | None = None) -> Counter[str]:
        """Idempotency key -> how many times it was accepted (for hospital ``node`` only, if given)."""
        with self._lock:
            return Counter(key for key, body, status in self.requests
                           if status == ACCEPTED and (node is None or str(body.get("node", "")) == node))

    def received(self, node: str) -> Counter[str]:
        """Deliveries accepted for hospital ``node``, by idempotency key."""
        return self.acknowledged(node)

    def duplicates(self) -> list[str]:
        """Keys accepted more than once."""
        return sorted(k for k, n in self.acknowledged().items() if n > 1)
