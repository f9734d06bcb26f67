"""How the reference API over HTTP answers a request that failed: a status, an error kind, one message.

Every error body is ``{"error": KIND, "message": ..., "request_id": ...}`` (plus ``retry_after_s`` when
retrying helps). The message is the line ``platsync call`` prints for the same failure
(:func:`connectors.reference_api.call_errors.one_line`): it never echoes a payload value.

=====  ======================  ====================================================================
400    ``invalid_json``        the body is not UTF-8 JSON (or nests too deeply); ``bad_request``: any
                               other malformed request aiohttp refuses
401    ``unauthorized``        no bearer token, or the node's Keycloak refused it
403    ``forbidden``           the token lacks the ``openid`` scope the userinfo check needs
404    ``unknown_api``         no such API; ``not_found``: no such path
405    ``method_not_allowed``  e.g. ``GET /api/v1/PRV_STF_001``
413    ``too_large``           the body exceeds the server's limit
409    ``refused``             the API refused the call (unknown or deleted document, a number
                               outside the side's range or taken, an existing account, ...)
409    ``conflict``            the store refused a row (an integrity constraint)
422    ``payload``             the payload does not have the documented shape (``PayloadError``)
422    ``rejected_value``      the store cannot hold a payload value (a data exception)
503    ``unavailable``         a store or the node's Keycloak cannot be reached: retry later
500    ``internal``            anything else (a bug): logged without values under the request id
=====  ======================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors.reference_api.call_errors import exception_chain, one_line, sqlstate_of
from connectors.reference_api.errors import ApiError, PayloadError
from connectors.stores.serials import SerialExhaustedError
from streams.core.errors import PlatSyncError

#: Seconds a client should wait before retrying an ``unavailable`` answer.
RETRY_AFTER_S = 5
#: Every error kind and its HTTP status.
ERROR_STATUS: dict[str, int] = {
    "invalid_json": 400, "bad_request": 400, "unauthorized": 401, "forbidden": 403, "unknown_api": 404,
    "not_found": 404, "method_not_allowed": 405, "refused": 409, "conflict": 409, "too_large": 413, "payload": 422,
    "rejected_value": 422, "unavailable": 503, "internal": 500,
}
#: Exception class names (anywhere in the cause/context chain) meaning a store or Keycloak is out of reach.
_UNREACHABLE = {"OperationalError", "InterfaceError", "KeycloakUnavailableError", "TimeoutError",
                "ConnectionError", "ConnectTimeout", "ReadTimeout"}
_UNREACHABLE_SQLSTATES = ("08", "53", "57P")


class HttpApiError(PlatSyncError):
    """A request refused by the HTTP layer itself (before or around the API call), with its answer."""

    def __init__(self, kind: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Failure:
    """The answer to a failed request."""

    kind: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """The HTTP status of :attr:`kind`."""
        return ERROR_STATUS[self.kind]

    def body(self, request_id: str) -> dict[str, object]:
        """The JSON error body."""
        doc: dict[str, object] = {"error": self.kind, "message": self.message, "request_id": request_id}
        if self.kind == "unavailable":
            doc["retry_after_s"] = RETRY_AFTER_S
        return doc


def unreachable(exc: BaseException) -> bool:
    """True if ``exc`` (or what it was raised from or during) says a store or Keycloak is out of reach."""
    if (sqlstate_of(exc) or "").startswith(_UNREACHABLE_SQLSTATES):
        return True
    for link in exception_chain(exc):
        if type(link).__name__ in _UNREACHABLE or isinstance(link, ConnectionError | TimeoutError):
            return True
        if type(link).__name__ == "KeycloakConfigError" and getattr(link, "retryable", False):
            return True
    return False


def unavailable(message: str) -> Failure:
    """A 503 ``unavailable`` answer with its ``Retry-After``."""
    return Failure("unavailable", message, {"Retry-After": str(RETRY_AFTER_S)})


def classify(exc: BaseException, api_id: str, side: str) -> Failure | None:
    """The answer to ``exc`` raised by an API call; None when it is unexpected (a 500, logged by the caller)."""
    if isinstance(exc, HttpApiError):
        return Failure(exc.kind, exc.message, exc.headers)
    if isinstance(exc, PayloadError):
        return Failure("payload", one_line(exc, api_id, side, None))
    if unreachable(exc):
        return unavailable(one_line(exc, api_id, side, None))
    if isinstance(exc, ApiError | SerialExhaustedError):
        return Failure("refused", one_line(exc, api_id, side, None))
    state = sqlstate_of(exc) or ""
    if state.startswith("22"):
        return Failure("rejected_value", one_line(exc, api_id, side, None))
    if state.startswith("23"):
        return Failure("conflict", one_line(exc, api_id, side, None))
    return None


def internal(exc: BaseException, api_id: str, side: str) -> Failure:
    """The 500 answer to an unexpected ``exc``: its kind only, never its message (it may hold values)."""
    return Failure("internal", one_line(exc, api_id, side, None) + " (an internal error: quote the request id)")
