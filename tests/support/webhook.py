"""A webhook receiver for the notification tests: counts deliveries per idempotency key.

A plain HTTP server on 127.0.0.1 (a free port) in a thread: it answers ``503`` to the first
``fail_first`` requests (to exercise the notifier's retries), then ``200``; it keeps every request and
reports the keys acknowledged more than once (duplicates the receiver would have to detect).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Start with ``with WebhookReceiver(fail_first=2) as hook: ... hook.url ...``."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[str, dict[str, Any], int]] = []  # (key, body, status answered)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    status = 503 if len(receiver.requests) < receiver.fail_first else 200
                    receiver.requests.append((self.headers.get("Idempotency-Key", ""), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def acknowledged(self) -> Counter[str]:
        """Idempotency key -> how many times it was answered 200."""
        with self._lock:
            return Counter(key for key, _body, status in self.requests if status == 200)

    def duplicates(self) -> list[str]:
        """Keys acknowledged more than once."""
        return sorted(k for k, n in self.acknowledged().items() if n > 1)
