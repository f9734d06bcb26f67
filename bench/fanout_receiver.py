"""A webhook receiver for the fan-out benchmark: acknowledges every POST and counts them per hospital
(the body's ``node``) and idempotency key."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookCounter:
    """``with WebhookCounter() as hook``: a local HTTP endpoint at ``hook.url`` answering 204 to every POST."""

    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    node = str(json.loads(body or b"{}").get("node", ""))
                except ValueError:
                    node = ""
                with counter._lock:
                    counter._counts.setdefault(node, Counter())[self.headers.get("Idempotency-Key", "")] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def __enter__(self) -> WebhookCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, node: str) -> Counter[str]:
        """Deliveries for hospital ``node``, by idempotency key (a copy)."""
        with self._lock:
            return Counter(self._counts.get(node, Counter()))
