"""The OpenAPI 3.1 document of one node's reference API over HTTP (``GET /api/v1/openapi.json``).

Generated from the API list, the matrix (``streams/routing/matrix.toml``: what each API writes on this
side and what the sync writes on the other) and the payload schemas
(:mod:`connectors.reference_api.openapi_schemas`). One path per API, the error body, the ``X-Hybridmode``
and ``X-Request-Id`` headers on every response, and the bearer security scheme of the node's Keycloak.
"""

from __future__ import annotations

from typing import Any

from connectors.reference_api.http_errors import ERROR_STATUS, RETRY_AFTER_S
from connectors.reference_api.openapi_schemas import EXAMPLES, REQUESTS, RESULT, SUBSCRIPTION_RESULT
from connectors.reference_api.service import API_IDS
from connectors.reference_api.subscriptions_api import SUBSCRIPTION_APIS
from streams.core.model import other_side
from streams.core.modes import HYBRIDMODE_HEADER, MODES, hybridmode
from streams.routing.matrix_model import load_matrix

#: Every API served, in the order of the document.
SERVED_APIS: tuple[str, ...] = (*API_IDS, *SUBSCRIPTION_APIS)
API_PREFIX = "/api/v1"
SIDE_NAMES = {"local": "the emergency environment (応急措置環境: the hospital)",
              "remote": "the operating environment (運用環境: the cloud)"}
_HEADERS = {HYBRIDMODE_HEADER: {"$ref": "#/components/headers/XHybridmode"},
            "X-Request-Id": {"$ref": "#/components/headers/XRequestId"}}
_ERROR_TEXT = {
    400: "The body is not UTF-8 JSON", 401: "No bearer token, or the node's Keycloak refused it (no data is "
    "returned)", 403: "The token lacks the openid scope", 404: "No such API", 405: "Method not allowed",
    409: "The API refused the call, or the store refused a row; nothing was written", 413: "The body is too large",
    422: "The payload does not have the documented shape (the JSON path and what was expected; never a value), "
    "or a store cannot hold a value; nothing was written",
    503: f"A store or the node's Keycloak cannot be reached; retry after {RETRY_AFTER_S} s (Retry-After)",
    500: "An internal error; the request id names it in the server's log"}


def _error(status: int) -> dict[str, Any]:
    kinds = sorted(k for k, s in ERROR_STATUS.items() if s == status)
    headers = dict(_HEADERS)
    if status == 401:
        headers["WWW-Authenticate"] = {"description": "Bearer challenge (RFC 6750)", "schema": {"type": "string"}}
    if status == 503:
        headers["Retry-After"] = {"description": "Seconds to wait", "schema": {"type": "integer"}}
    return {"description": f"{_ERROR_TEXT[status]} (error: {', '.join(kinds)})", "headers": headers,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _describe(api_id: str, side: str) -> tuple[str, str]:
    if api_id in SUBSCRIPTION_APIS:
        return (f"{api_id}: subscriptions of this node's hospital",
                "Not part of the sync matrix: records what the node's hospital subscribes to in the cloud's "
                "sharing database (a network's links only; docs/sharing.md).")
    route = load_matrix().direction_for_source(side).get(api_id)
    if route is None:  # every matrix API has a route in both directions (checked by the matrix's loader)
        return api_id, ""
    return route.label, (f"Writes {', '.join(route.source)} on the {side} side, one transaction per store, each "
                         f"marked with the API id; the sync then writes {', '.join(route.target)} on the "
                         f"{other_side(side)} side.")


def _operation(api_id: str, side: str) -> dict[str, Any]:
    summary, description = _describe(api_id, side)
    result = SUBSCRIPTION_RESULT if api_id in SUBSCRIPTION_APIS else {"$ref": "#/components/schemas/Result"}
    return {"post": {
        "operationId": api_id, "summary": summary, "description": description, "tags": [api_id.rsplit("_", 2)[0]],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": REQUESTS[api_id], "example": EXAMPLES[api_id]}}},
        "responses": {"200": {"description": "The call's result (the same JSON as 'platsync call')",
                              "headers": _HEADERS, "content": {"application/json": {"schema": result}}},
                      **{str(s): _error(s) for s in sorted(set(ERROR_STATUS.values()))}},
    }}


def openapi_document(side: str, server_url: str = "", realm: str = "plat", keycloak_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``side``'s reference API (served at ``server_url``; tokens of ``realm``)."""
    values = [hybridmode(side, mode) for mode in MODES]
    token_url = f"{keycloak_url.rstrip('/')}/realms/{realm}/protocol/openid-connect/token" if keycloak_url else ""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"PLAT Sync reference API ({side})", "version": "1",
                 "description": f"The PLAT APIs of {SIDE_NAMES[side]}, as 'platsync call' runs them: the same "
                                "payloads, results and error messages (docs/reference_api_http.md). Every response "
                                f"carries {HYBRIDMODE_HEADER}: {' | '.join(values)} (seed 003, section 5(2))."},
        "paths": {f"{API_PREFIX}/{api_id}": _operation(api_id, side) for api_id in SERVED_APIS},
        "components": {
            "schemas": {
                "Result": RESULT,
                "Error": {"type": "object", "required": ["error", "message", "request_id"],
                          "additionalProperties": False, "properties": {
                              "error": {"type": "string", "enum": sorted(ERROR_STATUS)},
                              "message": {"type": "string", "description": "What failed; never a payload value"},
                              "request_id": {"type": "string"},
                              "retry_after_s": {"type": "integer", "description": "With error unavailable"}}},
            },
            "headers": {
                "XHybridmode": {"description": f"The mode of the node that answered: {SIDE_NAMES[side]} answers "
                                               f"{', '.join(values)}", "required": True,
                                "schema": {"type": "string", "enum": values}},
                "XRequestId": {"description": "This request's id (quoted in the server's log)",
                               "schema": {"type": "string"}},
            },
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": f"An access token of the node's Keycloak realm {realm!r} with the openid scope "
                               f"(e.g. a direct grant with scope=openid{' at ' + token_url if token_url else ''}); "
                               "checked with the realm's OIDC userinfo endpoint."}},
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    doc["paths"][f"{API_PREFIX}/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document", "security": [],
        "responses": {"200": {"description": "The OpenAPI document", "headers": _HEADERS,
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    doc["paths"]["/healthz"] = {"get": {
        "operationId": "healthz", "summary": "Liveness: the server answers", "security": [],
        "responses": {"200": {"description": "The side and its X-Hybridmode", "headers": _HEADERS,
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return doc
