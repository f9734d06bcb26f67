"""Post one FHIR document to the 電子カルテ情報共有サービス and classify the answer (stdlib only).

:func:`submit_document` never raises for what the network or the service does: it answers a
:class:`SubmissionResult` whose ``outcome`` tells the caller what to do with the document:

- ``accepted``: the service holds it; ``receipt`` is its id (``Location: .../Bundle/<id>`` or the
  returned resource's ``id``);
- ``refused``: the service will never take these bytes (400/422 OperationOutcome, 409 request id
  already used for other bytes, 413 too large); ``detail`` has the service's diagnostics;
- ``retry``: nothing is known to be wrong with the document (credentials refused, wrong URL, 408,
  429, 5xx, no answer, an answer that cannot be read); try again later, at :func:`backoff_s`.

``X-Request-Id`` makes a repeated submission safe: the service answers the same receipt for it.
A transport error's ``detail`` never holds the document's content (medical data).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any

FHIR_JSON = "application/fhir+json"
ACCEPTED = "accepted"
REFUSED = "refused"
RETRY = "retry"
_RECEIPT_IN_LOCATION = re.compile(r"(?:^|/)Bundle/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")


@dataclass(frozen=True)
class SubmissionResult:
    """What became of one submission; ``http_status`` is None when no HTTP answer came."""

    outcome: str  # "accepted" | "refused" | "retry"
    receipt: str | None
    detail: str
    http_status: int | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302/303 for a POST as a GET without the body: report it instead.
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def submit_document(url: str, body: bytes, *, request_id: str, token: str | None = None,
                    timeout_s: float = 10.0) -> SubmissionResult:
    """POST ``body`` (a FHIR JSON Bundle) to ``<url>/Bundle`` and classify the answer.

    ``url`` is the service's FHIR base (``http://host:port/fhir``). Raises ValueError only for a
    programming error: an empty or non-HTTP ``url``, an empty ``request_id`` or one holding a line
    break, ``body`` not bytes.
    """
    if not url or not url.startswith(("http://", "https://")):
        raise ValueError(f"the FHIR service URL must be an http(s) URL, got {url!r}")
    if not request_id or "\r" in request_id or "\n" in request_id:
        raise ValueError(f"request_id must be a non-empty single-line string, got {request_id!r}")
    if not isinstance(body, bytes | bytearray):
        raise ValueError(f"body must be bytes, got {type(body).__name__}")
    target = url.rstrip("/") + "/Bundle"
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "X-Request-Id": request_id}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(target, data=bytes(body), headers=headers, method="POST")
    where = f"POST {target}"
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            return _classify(where, resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = exc.read()
        except (OSError, ValueError):
            answer = b""
        return _classify(where, exc.code, exc.headers, answer)
    except urllib.error.URLError as exc:
        return _no_answer(where, exc.reason, timeout_s)
    except OSError as exc:  # timeouts and resets while reading the answer
        return _no_answer(where, exc, timeout_s)
    except http.client.HTTPException as exc:  # a broken status line or a cut-off answer
        return SubmissionResult(RETRY, None, f"{where}: no usable answer: {type(exc).__name__}: "
                                f"{_one_line(str(exc))[:200]}", None)


def _no_answer(where: str, reason: object, timeout_s: float) -> SubmissionResult:
    if isinstance(reason, TimeoutError):
        why = f"no answer within {timeout_s:g}s"
    elif isinstance(reason, ConnectionRefusedError):
        why = "connection refused (is the service running and the port right?)"
    elif isinstance(reason, socket.gaierror):
        why = f"host name not resolved: {reason}"
    elif isinstance(reason, BaseException):
        why = f"{type(reason).__name__}: {reason}"
    else:
        why = str(reason)
    return SubmissionResult(RETRY, None, f"{where}: {_one_line(why)}", None)


def _classify(where: str, status: int, headers: Message, answer: bytes) -> SubmissionResult:
    outcome = _operation_outcome(answer)
    if status in (200, 201):
        receipt = _receipt(headers.get("Location", ""), answer)
        if receipt:
            return SubmissionResult(ACCEPTED, receipt, f"accepted as {receipt} (HTTP {status})", status)
        return _retry(where, status, answer, "answered success but gave no receipt (no Location, no id)")
    if status in (400, 422) and outcome is not None:
        return SubmissionResult(REFUSED, None, _issues(outcome) or f"refused with HTTP {status}", status)
    if status == 409 and outcome is not None:
        return SubmissionResult(REFUSED, None, f"conflict (the request id holds other bytes): {_issues(outcome)}",
                                status)
    if status == 413:
        return SubmissionResult(REFUSED, None, f"the document is too large for the service (HTTP 413)"
                                f"{': ' + _issues(outcome) if outcome else ''}", status)
    if status in (401, 403):
        return _retry(where, status, answer, "the service refused our credentials (fix the access token; "
                      "the document is kept and will be sent again)")
    if status == 404:
        return _retry(where, status, answer, "the URL is wrong: no FHIR Bundle endpoint there "
                      "(check the service's base URL setting)")
    if 300 <= status < 400:
        return _retry(where, status, answer, f"redirected to {headers.get('Location', '?')!r} "
                      "(set the service URL to where it points)")
    if status in (400, 422):
        return _retry(where, status, answer, "refusal without an OperationOutcome (not the FHIR service?)")
    if status == 408 or status == 429 or status >= 500:
        after = headers.get("Retry-After")
        return _retry(where, status, answer, "service unavailable for now"
                      + (f" (Retry-After {after})" if after else ""))
    return _retry(where, status, answer, "unexpected answer")


def _retry(where: str, status: int, answer: bytes, why: str) -> SubmissionResult:
    text = _one_line(answer.decode("utf-8", errors="replace"))[:200]
    return SubmissionResult(RETRY, None, f"{where}: HTTP {status}: {why}" + (f"; body: {text}" if text else ""),
                            status)


def _operation_outcome(answer: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(answer)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and doc.get("resourceType") == "OperationOutcome":
        return doc
    return None


def _issues(outcome: dict[str, Any]) -> str:
    """The issues' diagnostics (with their ``expression`` paths unless already named), joined by "; "."""
    parts = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
        text = str(issue.get("diagnostics") or details.get("text") or issue.get("code") or "")
        paths = [str(p) for p in issue.get("expression") or [] if str(p) not in text]
        parts.append(_one_line(text + (f" (at {', '.join(paths)})" if paths else "")))
    return "; ".join(p for p in parts if p)


def _receipt(location: str, answer: bytes) -> str | None:
    found = _RECEIPT_IN_LOCATION.search(location.strip()) if location else None
    if found:
        return found.group(1)
    try:
        doc = json.loads(answer)
    except (ValueError, RecursionError):
        return None
    value = doc.get("id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def backoff_s(attempts: int, base_s: float = 2.0, cap_s: float = 600.0, *,
              jitter: Callable[[], float] | None = None) -> float:
    """Seconds to wait before the next attempt after ``attempts`` failed ones: ``base_s * 2**(attempts-1)``,
    at most ``cap_s``. Deterministic unless ``jitter`` (returning a number in [0, 1), e.g.
    ``random.random``) is given: the wait is then scaled into [half, all] of that value.
    """
    if attempts < 1:
        raise ValueError(f"attempts counts failed attempts and starts at 1, got {attempts}")
    wait = min(cap_s, base_s * 2.0 ** min(attempts - 1, 60))
    if jitter is not None:
        wait *= 0.5 + 0.5 * min(max(jitter(), 0.0), 1.0)
    return wait
