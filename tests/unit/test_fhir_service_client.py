"""The FHIR service client against the real stand-in process (infra/local/fhir_service_standin.py)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from connectors.fhir_service.client import backoff_s, submit_document
from infra.local.fhir_service_standin import TOKEN_ENV, standin_ready, standin_spec
from infra.local.process import free_port, log_path, start_process, stop_pid, wait_until
from streams.runtime.pids import pid_alive

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "streams" / "fhir" / "samples").glob("*.json"))
TOKEN = "test-token-5f2c"


@dataclass(frozen=True)
class Standin:
    """A running stand-in: its FHIR base URL, port and data dir."""

    base: str
    port: int
    data_dir: Path

    def received(self) -> list[Path]:
        """The documents it stored."""
        return sorted((self.data_dir / "received").glob("*.json"))

    def receipts(self) -> list[dict[str, str]]:
        """Its receipts.jsonl rows."""
        index = self.data_dir / "receipts.jsonl"
        return [json.loads(line) for line in index.read_text().splitlines()] if index.exists() else []

    def fail_next(self, count: int, status: int = 503) -> None:
        """Arm the stand-in's fail hook."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/_standin/fail?count={count}&status={status}",
                                     data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            assert json.loads(resp.read()) == {"armed": count, "status": status}


def _run_standin(tmp: Path, name: str, token: str = "") -> Iterator[Standin]:
    port = free_port()
    data_dir = tmp / "fhir"
    pid = start_process(tmp, standin_spec(name, "127.0.0.1", port, data_dir, token))
    try:
        wait_until(lambda: standin_ready("127.0.0.1", port), 30, "FHIR service stand-in",
                   alive=lambda: pid_alive(pid), log=log_path(tmp, name))
        yield Standin(f"http://127.0.0.1:{port}/fhir", port, data_dir)
    finally:
        assert stop_pid(pid, timeout_s=10), "the stand-in did not stop on SIGTERM"
        assert not pid_alive(pid)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    yield from _run_standin(tmp_path_factory.mktemp("fhir-standin"), "fhir-standin")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    yield from _run_standin(tmp_path_factory.mktemp("fhir-standin-token"), "fhir-standin-token", TOKEN)


def _discharge() -> dict[str, object]:
    return json.loads((SAMPLES[0].parent / "discharge.json").read_bytes())


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_each_sample_is_accepted_and_stored_byte_for_byte(standin: Standin, sample: Path) -> None:
    body = sample.read_bytes()
    result = submit_document(standin.base, body, request_id=f"sample-{sample.stem}")
    assert result.outcome == "accepted", result.detail
    assert result.http_status == 201
    assert result.receipt is not None and len(result.receipt) == 32
    stored = standin.data_dir / "received" / f"{result.receipt}.json"
    assert stored.read_bytes() == body
    row = [r for r in standin.receipts() if r["receipt"] == result.receipt]
    assert len(row) == 1 and row[0]["request_id"] == f"sample-{sample.stem}"
    with urllib.request.urlopen(f"{standin.base}/Bundle/{result.receipt}", timeout=5) as resp:  # noqa: S310
        assert resp.headers["Content-Type"] == "application/fhir+json"
        assert resp.read() == body


def test_sample_set_is_not_empty() -> None:
    assert {p.stem for p in SAMPLES} >= {"discharge", "referral", "checkup", "six_information"}


def test_bundle_without_composition_is_refused_naming_rule_and_path(standin: Standin) -> None:
    bundle = _discharge()
    bundle["entry"] = bundle["entry"][1:]  # type: ignore[index]
    before = standin.received()
    result = submit_document(standin.base, json.dumps(bundle).encode(), request_id="no-composition")
    assert result.outcome == "refused"
    assert result.http_status == 422
    assert result.receipt is None
    assert "composition-first" in result.detail
    assert "Bundle.entry[0].resource.resourceType" in result.detail
    assert standin.received() == before


def test_non_json_body_is_refused_with_the_json_rule(standin: Standin) -> None:
    result = submit_document(standin.base, b"this is not JSON", request_id="not-json")
    assert result.outcome == "refused"
    assert result.http_status == 422
    assert result.detail == "$: json: not JSON: Expecting value at line 1 column 1"


def test_several_faults_are_joined_in_one_line(standin: Standin) -> None:
    bundle = _discharge()
    bundle["type"] = "collection"
    del bundle["timestamp"]
    result = submit_document(standin.base, json.dumps(bundle).encode(), request_id="two-faults")
    assert result.outcome == "refused"
    assert "bundle-type" in result.detail and "bundle-timestamp" in result.detail
    assert "; " in result.detail and "\n" not in result.detail


def test_same_request_id_twice_gives_the_same_receipt_and_one_file(standin: Standin) -> None:
    body = (SAMPLES[0].parent / "referral.json").read_bytes()
    before = len(standin.received())
    first = submit_document(standin.base, body, request_id="repeat-1")
    second = submit_document(standin.base, body, request_id="repeat-1")
    assert (first.outcome, first.http_status) == ("accepted", 201)
    assert (second.outcome, second.http_status) == ("accepted", 200)
    assert second.receipt == first.receipt
    assert len(standin.received()) == before + 1
    assert [r["receipt"] for r in standin.receipts() if r["request_id"] == "repeat-1"] == [first.receipt]


def test_same_request_id_with_other_bytes_is_a_refused_conflict(standin: Standin) -> None:
    body = (SAMPLES[0].parent / "checkup.json").read_bytes()
    first = submit_document(standin.base, body, request_id="conflict-1")
    assert first.outcome == "accepted"
    before = len(standin.received())
    other = submit_document(standin.base, body.replace(b"}", b" }", 1), request_id="conflict-1")
    assert other.outcome == "refused"
    assert other.http_status == 409
    assert other.receipt is None
    assert other.detail.startswith("conflict")
    assert "conflict-1" in other.detail and first.receipt in other.detail
    assert len(standin.received()) == before


def test_injected_503_is_retry_then_accepted(standin: Standin) -> None:
    body = (SAMPLES[0].parent / "discharge.json").read_bytes()
    standin.fail_next(1)
    failed = submit_document(standin.base, body, request_id="flaky-1")
    assert failed.outcome == "retry"
    assert failed.http_status == 503
    assert failed.receipt is None
    assert "HTTP 503" in failed.detail and "Retry-After 1" in failed.detail
    assert "PLAT-DISCHARGE" not in failed.detail  # no document content in a transport error
    again = submit_document(standin.base, body, request_id="flaky-1")
    assert (again.outcome, again.http_status) == ("accepted", 201)


def test_injected_429_and_500_are_retry(standin: Standin) -> None:
    body = (SAMPLES[0].parent / "discharge.json").read_bytes()
    for status in (429, 500):
        standin.fail_next(1, status)
        result = submit_document(standin.base, body, request_id=f"flaky-{status}")
        assert (result.outcome, result.http_status) == ("retry", status)


def test_closed_port_is_retry_without_http_status() -> None:
    port = free_port()
    result = submit_document(f"http://127.0.0.1:{port}/fhir", b"{}", request_id="closed")
    assert result.outcome == "retry"
    assert result.http_status is None
    assert result.receipt is None
    assert "connection refused" in result.detail
    assert f"127.0.0.1:{port}/fhir/Bundle" in result.detail


def test_wrong_base_url_is_retry_naming_the_url(standin: Standin) -> None:
    result = submit_document(standin.base + "/wrong", b"{}", request_id="wrong-url")
    assert (result.outcome, result.http_status) == ("retry", 404)
    assert "URL is wrong" in result.detail and f"{standin.base}/wrong/Bundle" in result.detail


def test_wrong_or_missing_token_is_retry_about_credentials(guarded: Standin) -> None:
    body = (SAMPLES[0].parent / "referral.json").read_bytes()
    for token in ("wrong", None):
        result = submit_document(guarded.base, body, request_id="auth-1", token=token)
        assert (result.outcome, result.http_status) == ("retry", 401)
        assert "credentials" in result.detail
        assert TOKEN not in result.detail
    assert guarded.received() == []
    good = submit_document(guarded.base, body, request_id="auth-1", token=TOKEN)
    assert (good.outcome, good.http_status) == ("accepted", 201)
    assert [p.read_bytes() for p in guarded.received()] == [body]


def test_health_counts_received_documents(standin: Standin) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{standin.port}/health", timeout=5) as resp:  # noqa: S310
        assert json.loads(resp.read()) == {"status": "ok", "received": len(standin.receipts())}


def test_programming_errors_raise_value_error() -> None:
    with pytest.raises(ValueError):
        submit_document("", b"{}", request_id="x")
    with pytest.raises(ValueError):
        submit_document("http://127.0.0.1:1/fhir", b"{}", request_id="")


def test_backoff_doubles_from_base_up_to_the_cap() -> None:
    assert [backoff_s(n) for n in range(1, 11)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 600.0]
    assert backoff_s(10_000) == 600.0
    assert backoff_s(3, base_s=0.5, cap_s=1.0) == 1.0
    assert backoff_s(4, jitter=lambda: 0.0) == 8.0
    assert backoff_s(4, jitter=lambda: 1.0) == 16.0
    with pytest.raises(ValueError):
        backoff_s(0)


def test_the_token_travels_in_the_environment_not_the_command_line(tmp_path: Path) -> None:
    spec = standin_spec("fhir", "127.0.0.1", 1234, tmp_path, TOKEN)
    assert TOKEN not in " ".join(spec.argv)
    assert spec.env == {TOKEN_ENV: TOKEN}
    assert standin_spec("fhir", "127.0.0.1", 1234, tmp_path).env is None


def test_no_answer_in_time_is_retry_without_http_status() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/fhir"
        result = submit_document(url, b"{}", request_id="silent", timeout_s=0.3)
    assert (result.outcome, result.http_status) == ("retry", None)
    assert "no answer within 0.3s" in result.detail


class _Garbage(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b"<html>gateway says hi</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def test_success_without_a_receipt_is_retry_with_the_answer_quoted() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = submit_document(f"http://127.0.0.1:{server.server_port}/fhir", b"{}", request_id="garbage")
    finally:
        server.shutdown()
        server.server_close()
    assert (result.outcome, result.http_status) == ("retry", 200)
    assert "no receipt" in result.detail and "<html>gateway says hi</html>" in result.detail


def test_a_restarted_standin_still_knows_its_request_ids(tmp_path: Path) -> None:
    body = (SAMPLES[0].parent / "discharge.json").read_bytes()
    first_run = _run_standin(tmp_path, "fhir-restart")
    first = submit_document(next(first_run).base, body, request_id="restart-1")
    first_run.close()  # stops the process (the generator's finally)
    second_run = _run_standin(tmp_path, "fhir-restart")
    try:
        again = submit_document(next(second_run).base, body, request_id="restart-1")
    finally:
        second_run.close()
    assert first.outcome == "accepted"
    assert (again.outcome, again.http_status, again.receipt) == ("accepted", 200, first.receipt)
    assert len(list((tmp_path / "fhir" / "received").glob("*.json"))) == 1
