"""The OpenAPI 3.1 document of the console's JSON API (everything under ``/api``), served at
``GET /api/openapi.json``."""

from __future__ import annotations

from typing import Any

from streams.console.inputs import AUDIT_LIMIT_MAX, ID_MAX, IDS_MAX, NOTE_MAX
from streams.core.modes import MODES

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}


def _obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props,
                              "required": list(props) if required is None else required}
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": "bad input (invalid_json, bad_request, confirm_required, ambiguous)",
    "401": "no live session (login_required): log in at /login",
    "403": "the X-CSRF-Token header is missing or wrong (csrf)",
    "404": "unknown path, conflict or dead letter (not_found)",
    "405": "method not allowed",
    "409": "no cuttable link (no_link)",
    "413": "the body exceeds the limit (too_large)",
    "503": "a store, the broker or a process is unavailable (unavailable)",
}


def _op(op_id: str, summary: str, ok: dict[str, Any], errors: tuple[str, ...], body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, mutation: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(ok, "success")}
    for status in errors:
        responses[status] = _json(_ref("Error" if status != "401" else "LoginRequired"), _ERRORS[status])
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if mutation:
        op["parameters"] = [*op.get("parameters", []), {"$ref": "#/components/parameters/Csrf"}]
    return op


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path_id(description: str) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{1,64}$"}}


def _schemas() -> dict[str, Any]:
    note = {"type": ["string", "null"], "maxLength": NOTE_MAX}
    ids = {"type": "array", "minItems": 1, "maxItems": IDS_MAX,
           "items": {"type": "string", "minLength": 1, "maxLength": ID_MAX}}
    confirm = {"const": True, "description": "the operator confirmed the action"}
    process = _obj({"name": _STR, "running": _BOOL, "pid": {"type": ["integer", "null"]}})
    node = _obj({
        "node": {"enum": ["local", "remote"]}, "role": {"enum": ["hospital", "cloud"]},
        "mode": {"enum": [*MODES, "unknown"]}, "hybridmode": _NSTR, "since": _NSTR, "reason": _STR,
        "override": _BOOL, "stale": _BOOL, "lag_ms": _INT, "lag_bytes": _INT,
        "processes": {"type": "array", "items": process},
        "backup": {"oneOf": [{"type": "null"}, _obj({"name": _STR, "age_s": _INT})]}})
    link = _obj({"up": {"type": ["boolean", "null"]}, "cut_side": _NSTR, "note": _STR})
    entry = _obj({"id": _STR, "side": _STR, "store": _STR, "table": _STR, "row_id": _STR, "label": _NSTR,
                  "version": _INT, "entered_at": _STR, "api_id": _STR,
                  "status": {"enum": ["copied", "copyable", "not_copyable"]}, "reason": _STR})
    conflict = _obj({"conflict_id": _STR, "store": _STR, "table": _STR, "row_id": _STR, "winner": _STR, "rule": _STR,
                     "detected_on": {"type": "array", "items": _STR}, "status": {"enum": ["open", "resolved"]}})
    letter = _obj({"id": _STR, "route": _STR, "failed": _STR, "kind": _STR, "source": _STR, "key": _NSTR,
                   "bytes": _INT, "error": {"type": "string", "description": "redacted as 'platsync dlq list'"},
                   "hint": _STR, "status": {"enum": ["pending", "retried"]},
                   "retried": {"oneOf": [{"type": "null"}, _obj({"at": _STR, "to": _STR})]}})
    return {
        "Error": _obj({"error": _STR, "message": _STR}),
        "LoginRequired": _obj({"error": {"const": "login_required"}, "message": _STR, "login": {"const": "/login"}}),
        "Session": _obj({"user": _obj({"username": _STR, "name": _STR}), "csrf": _STR, "login_node": _STR,
                         "expires_idle_s": _INT}),
        "Node": node, "Link": link,
        "Nodes": _obj({"time": _STR, "healthy": _BOOL, "open_conflicts": {"type": ["integer", "null"]},
                       "errors": {"type": "array", "items": _STR}, "link": _ref("Link"),
                       "nodes": {"type": "array", "items": _ref("Node")}}),
        "ModeRequest": _obj({"node": {"enum": ["local", "remote"]},
                             "mode": {"enum": [*MODES, None], "description": "null: back to automatic"},
                             "note": note, "confirm": confirm}, ["node", "mode", "confirm"]),
        "ModeResult": _obj({"node": _STR, "mode": {"enum": [*MODES, None]}, "applied": _BOOL, "message": _STR}),
        "LinkRequest": _obj({"action": {"enum": ["down", "up"]}, "note": note, "confirm": confirm},
                            ["action", "confirm"]),
        "LinkResult": _obj({"link": _ref("Link"), "message": _STR}),
        "RecoveryEntry": entry,
        "Recovery": _obj({"window": {"oneOf": [{"type": "null"}, _obj({"start": _STR, "end": _NSTR, "basis": _STR,
                                                                          "note": _STR})]},
                          "message": _STR, "entries": {"type": "array", "items": _ref("RecoveryEntry")}}),
        "CopyRequest": _obj({"ids": ids, "confirm": confirm}),
        "CopyResult": _obj({"results": {"type": "array", "items": _obj({
            "id": _STR, "outcome": {"enum": ["re-sent", "retried", "already_copied", "refused"]}, "reason": _STR})}}),
        "ConflictSummary": conflict,
        "Conflicts": _obj({"conflicts": {"type": "array", "items": _ref("ConflictSummary")},
                           "unreachable": {"type": "array", "items": _STR}}),
        "Conflict": {**conflict, "description": "as 'platsync conflicts show --json': both versions as stored",
                     "properties": {**conflict["properties"], "local_row": {"type": "object"},
                                    "remote_row": {"type": "object"}, "local_api_id": _NSTR, "remote_api_id": _NSTR,
                                    "differing_fields": {"type": "array", "items": _STR}, "resolution": _NSTR,
                                    "detections": {"type": "array", "items": {"type": "object"}}}},
        "ResolveRequest": _obj({"note": note, "confirm": confirm}, ["confirm"]),
        "ResolveResult": _obj({"conflict_id": _STR, "resolved_in": {"type": "array", "items": _STR},
                               "message": _STR}),
        "DeadLetter": letter,
        "DeadLetters": _obj({"dead_letters": {"type": "array", "items": _ref("DeadLetter")}}),
        "RetryRequest": _obj({"ids": ids, "confirm": confirm}),
        "RetryResult": _obj({"retried": {"type": "array", "items": _STR}, "message": _STR}),
        "AuditEntry": _obj({"time": _STR, "user": _NSTR, "action": _STR, "target": _NSTR, "outcome": _STR,
                            "detail": _NSTR}),
        "Audit": _obj({"entries": {"type": "array", "items": _ref("AuditEntry")}}),
    }


def openapi_document(server_url: str, login_node: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the console's API at ``server_url``."""
    read = ("401", "404", "405")
    write = ("400", "401", "403", "404", "405", "413", "503")
    iso = {"type": "string", "format": "date-time"}
    paths = {
        "/api/session": {"get": _op("getSession", "who is logged in, and the CSRF token for POSTs",
                                    _ref("Session"), read)},
        "/api/nodes": {"get": _op("getNodes", "each node's mode, link, lag, processes and latest backup",
                                  _ref("Nodes"), (*read, "503"))},
        "/api/mode": {"post": _op("setMode", "set a node's mode by hand, or null: back to automatic",
                                  _ref("ModeResult"), write, _ref("ModeRequest"), mutation=True)},
        "/api/link": {"post": _op("switchLink", "cut (down) or restore (up) the embedded stack's link",
                                  _ref("LinkResult"), (*write, "409"), _ref("LinkRequest"), mutation=True)},
        "/api/recovery": {"get": _op(
            "getRecovery", "the recovery difference list of the last outage (or of since..until)", _ref("Recovery"),
            ("400", *read, "503"), params=[_query("since", iso, "window start (default: the last outage)"),
                                           _query("until", iso, "window end (needs since)")])},
        "/api/recovery/copy": {"post": _op("copyRecovery", "copy the selected records to the other side now",
                                           _ref("CopyResult"), write, _ref("CopyRequest"), mutation=True)},
        "/api/conflicts": {"get": _op(
            "listConflicts", "conflicts of both sides", _ref("Conflicts"), ("400", *read, "503"),
            params=[_query("status", {"enum": ["open", "resolved", "all"], "default": "open"}, "which")])},
        "/api/conflicts/{id}": {"get": _op("getConflict", "both versions of one conflict", _ref("Conflict"),
                                           ("400", *read, "503"), params=[_path_id("conflict id or prefix")])},
        "/api/conflicts/{id}/resolve": {"post": _op(
            "resolveConflict", "mark a conflict resolved on every side and store", _ref("ResolveResult"), write,
            _ref("ResolveRequest"), params=[_path_id("conflict id or prefix")], mutation=True)},
        "/api/dead-letters": {"get": _op(
            "listDeadLetters", "dead letters of every route, errors redacted", _ref("DeadLetters"),
            ("400", *read, "503"),
            params=[_query("status", {"enum": ["pending", "retried", "all"], "default": "all"}, "which")])},
        "/api/dead-letters/retry": {"post": _op("retryDeadLetters", "re-drive dead letters to their source topic",
                                                _ref("RetryResult"), write, _ref("RetryRequest"), mutation=True)},
        "/api/audit": {"get": _op(
            "getAudit", "the console's audit log, newest first", _ref("Audit"), ("400", *read),
            params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": AUDIT_LIMIT_MAX, "default": 100},
                           "entries at most")])},
        "/api/openapi.json": {"get": {"operationId": "getOpenApi", "summary": "this document", "security": [],
                                      "responses": {"200": _json({"type": "object"}, "the OpenAPI document")}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "PLAT Sync operator console API", "version": "1",
                 "description": f"Login: OpenID Connect with the {login_node} node's Keycloak realm at /login "
                                "(session cookie platsync_console). Every POST needs the session's X-CSRF-Token "
                                'and "confirm": true. Errors are {"error", "message"}.'},
        "servers": [{"url": server_url}],
        "security": [{"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "platsync_console"}},
            "parameters": {"Csrf": {"name": "X-CSRF-Token", "in": "header", "required": True,
                                    "schema": _STR, "description": "the csrf of GET /api/session"}},
            "schemas": _schemas(),
        },
    }
