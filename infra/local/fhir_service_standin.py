"""A stand-in for the 電子カルテ情報共有サービス's document submission, for tests and the embedded stack.

Run: ``python -m infra.local.fhir_service_standin --host 127.0.0.1 --port N --data-dir DIR [--token T]``
(or the token in ``PLATSYNC_FHIR_STANDIN_TOKEN``, unseen by ``ps``). Serves until SIGTERM/SIGINT (exit 0);
exit 2 on bad usage or an unusable port/dir. One stderr line per request, never a body.

It follows the FHIR R4 RESTful API (https://hl7.org/fhir/R4/http.html): create
(https://hl7.org/fhir/R4/http.html#create) is ``POST [base]/Bundle`` with ``Content-Type:
application/fhir+json`` (else 415), answering ``201 Created`` with ``Location: [base]/Bundle/<id>/_history/1``
and an OperationOutcome (as for ``Prefer: return=OperationOutcome``) whose ``id`` is the receipt;
``GET [base]/Bundle/<id>`` reads the stored bytes exactly. Errors are OperationOutcomes with
``issue.severity/code/diagnostics`` (and ``expression`` for a fault of ``streams.fhir.validate``, 422);
401 without ``Authorization: Bearer <token>`` when a token is set.

``X-Request-Id`` makes create idempotent: the same id with the same bytes answers 200 with the first
receipt and stores nothing; with other bytes 409. Accepted documents are kept as
``DIR/received/<receipt>.json`` and listed in ``DIR/receipts.jsonl`` (receipt, request id, sha256,
time), which is read again on start. ``GET /health`` answers ``{"status": "ok", "received": N}``.

Stand-in only (not part of the real service): ``POST /_standin/fail?count=N&status=S`` makes the next
N creates answer status S (default 503) with an OperationOutcome, so tests can prove a submitter retries.

What the real national service needs that this stand-in does NOT check: the client TLS certificate of
the オンライン資格確認 network (it speaks plain HTTP), the institution's 医療機関コード authorisation
(any bearer token equal to ``--token`` passes), the electronic signature of the document, the real
receipt format (receipts here are uuid4 hex), the JP_Bundle_CLINS collection bundle wrapping the 6
information (it takes the document Bundle as our validator does), and rate limits.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from infra.local.process import ProcessSpec
from streams.fhir.validate import validate_document

FHIR_JSON = "application/fhir+json"
TOKEN_ENV = "PLATSYNC_FHIR_STANDIN_TOKEN"
MAX_BODY = 20 * 1024 * 1024
#: Rules about the bytes and FHIR's structure -> issue code "structure"; the JP-CLINS rules -> "invariant".
STRUCTURE_RULES = frozenset({"json", "fhir-structure", "fhir-code"})
_READ = re.compile(r"^/fhir/Bundle/([0-9a-f]{32})(?:/_history/1)?/?$")


def outcome(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    """An OperationOutcome of one issue."""
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code,
                                                           "diagnostics": diagnostics}]}


class Store:
    """Accepted documents on disk and the request-id index, safe for the server's threads."""

    def __init__(self, data_dir: Path) -> None:
        self.received = data_dir / "received"
        self.received.mkdir(parents=True, exist_ok=True)
        self.index = data_dir / "receipts.jsonl"
        self.lock = threading.Lock()
        self.by_request: dict[str, tuple[str, str]] = {}  # request id -> (receipt, sha256)
        self.count = 0
        self.fail_left = 0
        self.fail_status = 503
        if self.index.exists():
            for line in self.index.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.count += 1
                    if row.get("request_id"):
                        self.by_request[row["request_id"]] = (row["receipt"], row["sha256"])

    def take_failure(self) -> int | None:
        """The status to fail this create with, if the fail hook is armed (counts it down)."""
        with self.lock:
            if self.fail_left <= 0:
                return None
            self.fail_left -= 1
            return self.fail_status

    def accept(self, body: bytes, request_id: str, digest: str) -> str:
        """Store ``body`` under a new receipt and index it; returns the receipt."""
        receipt = uuid.uuid4().hex
        tmp = self.received / f".{receipt}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self.received / f"{receipt}.json")
        row = {"receipt": receipt, "request_id": request_id or None, "sha256": digest,
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(self.index, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.count += 1
        if request_id:
            self.by_request[request_id] = (receipt, digest)
        return receipt


class StandinServer(ThreadingHTTPServer):
    """The HTTP server with what its handlers share: the store and the expected token."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store, token: str) -> None:
        self.store = store
        self.token = token
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    """One request to the stand-in (the routes are in the module docstring)."""

    server_version = "PlatSyncFhirStandin/1"
    protocol_version = "HTTP/1.1"
    server: StandinServer

    def _send(self, status: int, body: bytes, content_type: str = FHIR_JSON,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None,
              content_type: str = FHIR_JSON) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False).encode("utf-8"), content_type, headers)

    def _error(self, status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, outcome("error", code, diagnostics), headers)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request: method, path, status, request id (never the body)."""
        headers = getattr(self, "headers", None)  # absent when the request line itself was bad
        request_id = headers.get("X-Request-Id", "-") if headers else "-"
        self.log_message("%s %s %s request-id=%s", self.command, self.path, code, request_id)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} fhir-service-standin: {format % args}\n")

    def _authorized(self) -> bool:
        if not self.server.token:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode("utf-8"), f"Bearer {self.server.token}".encode()):
            return True
        self._drain()
        self._error(401, "login", "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="fhir"'})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """``/health`` and the read of a stored Bundle."""
        path = urllib.parse.urlsplit(self.path).path
        if path == "/health":
            self._json(200, {"status": "ok", "received": self.server.store.count}, content_type="application/json")
            return
        if path.startswith("/fhir/") and not self._authorized():
            return
        found = _READ.match(path)
        stored = self.server.store.received / f"{found.group(1)}.json" if found else None
        if stored is None or not stored.exists():
            self._error(404, "not-found", f"no resource at {path}")
            return
        self._send(200, stored.read_bytes(), headers={"ETag": 'W/"1"'})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """Create a Bundle, or arm the fail hook."""
        parts = urllib.parse.urlsplit(self.path)
        if parts.path == "/_standin/fail":
            self._arm(urllib.parse.parse_qs(parts.query))
        elif parts.path.rstrip("/") == "/fhir/Bundle":
            if self._authorized():
                self._create()
        else:
            self._drain()
            self._error(404 if not parts.path.startswith("/fhir/Bundle") else 405,
                        "not-supported", f"POST {parts.path} is not supported (create is POST /fhir/Bundle)")

    def _not_allowed(self) -> None:
        self._drain()
        self._error(405, "not-supported", f"{self.command} is not supported by this stand-in")

    do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815 - http.server's naming

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        elif length:
            self.close_connection = True

    def _arm(self, query: dict[str, list[str]]) -> None:
        self._drain()
        try:
            count = int(query.get("count", ["1"])[0])
            status = int(query.get("status", ["503"])[0])
        except ValueError:
            count, status = -1, 0
        if count < 0 or not 400 <= status <= 599:
            self._json(400, {"error": "count must be >= 0 and status 400..599"}, content_type="application/json")
            return
        with self.server.store.lock:
            self.server.store.fail_left, self.server.store.fail_status = count, status
        self._json(200, {"armed": count, "status": status}, content_type="application/json")

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(411, "required", "a Content-Length header is required (chunked bodies are not supported)")
            return None
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._error(413, "too-long", f"the body is larger than {MAX_BODY} bytes")
            return None
        return self.rfile.read(int(length))

    def _create(self) -> None:
        failure = self.server.store.take_failure()
        if failure is not None:
            self._drain()
            self._error(failure, "transient", f"stand-in failure injected by /_standin/fail (HTTP {failure})",
                        {"Retry-After": "1"} if failure in (429, 503) else None)
            return
        media = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media != FHIR_JSON:
            self._drain()
            self._error(415, "not-supported", f"Content-Type must be {FHIR_JSON}, got {media or 'none'!r}")
            return
        body = self._read_body()
        if body is None:
            return
        request_id = self.headers.get("X-Request-Id", "").strip()
        digest = hashlib.sha256(body).hexdigest()
        if self._answered_before(request_id, digest):
            return
        issues = validate_document(body)
        if issues:
            self._json(422, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "structure" if i.rule in STRUCTURE_RULES else "invariant",
                 "diagnostics": str(i), "expression": [i.path]} for i in issues]})
            return
        with self.server.store.lock:  # checked again under the lock: two racing retries must get one receipt
            if self._answered_before(request_id, digest):
                return
            receipt = self.server.store.accept(body, request_id, digest)
        self._accepted(201, receipt, f"accepted as {receipt}")

    def _answered_before(self, request_id: str, digest: str) -> bool:
        """Answer 200 (same bytes) or 409 (other bytes) if ``request_id`` was accepted before."""
        known = self.server.store.by_request.get(request_id) if request_id else None
        if known is None:
            return False
        receipt, known_digest = known
        if known_digest != digest:
            self._error(409, "conflict", f"X-Request-Id {request_id} was already used for a different "
                        f"document (accepted as {receipt})")
        else:
            self._accepted(200, receipt, f"already accepted as {receipt} (same X-Request-Id, same bytes)")
        return True

    def _accepted(self, status: int, receipt: str, diagnostics: str) -> None:
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        doc = outcome("information", "informational", diagnostics)
        doc["id"] = receipt
        self._json(status, doc, {"Location": f"http://{host}/fhir/Bundle/{receipt}/_history/1", "ETag": 'W/"1"'})


def serve(host: str, port: int, data_dir: Path, token: str = "") -> StandinServer:
    """A bound stand-in server (not yet serving): call ``serve_forever`` on it."""
    return StandinServer((host, port), Store(data_dir), token)


def standin_ready(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True once the stand-in on ``host:port`` answers ``GET /health`` with 200."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout_s) as resp:  # noqa: S310
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def standin_spec(name: str, host: str, port: int, data_dir: Path, token: str = "") -> ProcessSpec:
    """How to start the stand-in as a stack process (the token travels in the environment)."""
    return ProcessSpec(name, [sys.executable, "-m", "infra.local.fhir_service_standin", "--host", host,
                              "--port", str(port), "--data-dir", str(data_dir)],
                       env={TOKEN_ENV: token} if token else None)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and serve until SIGTERM/SIGINT; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.fhir_service_standin",
                                     description="stand-in for the 電子カルテ情報共有サービス (FHIR R4 create)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="where received documents are kept")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV, ""),
                        help=f"bearer token every /fhir request must carry (default ${TOKEN_ENV}; none: open)")
    args = parser.parse_args(argv)
    try:
        server = serve(args.host, args.port, args.data_dir, args.token)
    except (OSError, ValueError, KeyError) as exc:
        print(f"fhir-service-standin: cannot serve on {args.host}:{args.port} from {args.data_dir}: {exc}",
              file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # serve_forever runs in a thread: shutdown() from the signal handler in the serving thread would deadlock.
    thread = threading.Thread(target=server.serve_forever, name="fhir-standin", daemon=True)
    thread.start()
    print(f"fhir-service-standin: serving http://{args.host}:{args.port}/fhir (data {args.data_dir}, "
          f"{server.store.count} received{', bearer token' if args.token else ''})",
          file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    print("fhir-service-standin: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
