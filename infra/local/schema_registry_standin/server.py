"""HTTP API of the schema-registry stand-in (aiohttp), the subset of Confluent's REST API the engine uses.

Endpoints: ``GET /``, ``GET /subjects``, ``GET /subjects/{subject}/versions``,
``GET /subjects/{subject}/versions/{version}``, ``POST /subjects/{subject}/versions``,
``POST /subjects/{subject}``, ``GET /schemas/ids/{id}``,
``POST /compatibility/subjects/{subject}/versions/{version}`` (``?verbose=true`` adds ``messages``),
``GET|PUT /config`` and ``GET|PUT /config/{subject}`` (``?defaultToGlobal=true``).

Responses are ``application/vnd.schemaregistry.v1+json``; errors are ``{"error_code", "message"}``
(see :mod:`.registry`); request bodies must be one of the content types Confluent's server
accepts (415 otherwise). With basic-auth credentials configured, every request without them gets
401 ``{"error_code": 401, "message": "Unauthorized"}``. One log line per request, never a body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from infra.local.schema_registry_standin.registry import Registry, RegistryError

log = logging.getLogger("platsync.schema_registry_standin")
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_BODIES = ("application/vnd.schemaregistry.v1+json", "application/vnd.schemaregistry+json",
                   "application/json", "application/octet-stream")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
AUTH: web.AppKey[str] = web.AppKey("auth", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode("utf-8"), content_type=CONTENT_TYPE)


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type not in ACCEPTED_BODIES:
        raise RegistryError(415, 415, "HTTP 415 Unsupported Media Type")
    try:
        doc = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise RegistryError(400, 400, f"Unexpected character in the request body: {exc}") from None
    if not isinstance(doc, dict):
        raise RegistryError(422, 422, "The request body must be a JSON object")
    return doc


def _authorized(request: web.Request) -> bool:
    expected = request.app[AUTH]
    if not expected:
        return True
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given, expected)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    try:
        if not _authorized(request):
            response: web.StreamResponse = _answer({"error_code": 401, "message": "Unauthorized"}, 401)
            response.headers["WWW-Authenticate"] = 'Basic realm="SchemaRegistry"'
        else:
            response = await handler(request)
    except RegistryError as exc:
        response = _answer(exc.body(), exc.status)
    except web.HTTPException as exc:  # unknown path or method
        response = _answer({"error_code": exc.status, "message": f"HTTP {exc.status} {exc.reason}"}, exc.status)
    log.info("%s %s -> %d (%.1f ms)", request.method, request.path, response.status,
             (time.monotonic() - started) * 1000)
    return response


def _schema_type(doc: dict[str, Any]) -> str:
    return str(doc.get("schemaType") or "AVRO")


async def root(_request: web.Request) -> web.Response:
    return _answer({})


async def subjects(request: web.Request) -> web.Response:
    return _answer(sorted(request.app[REGISTRY].subjects))


async def versions(request: web.Request) -> web.Response:
    return _answer(request.app[REGISTRY].versions(request.match_info["subject"]))


async def version(request: web.Request) -> web.Response:
    return _answer(request.app[REGISTRY].version(request.match_info["subject"], request.match_info["version"]))


async def register(request: web.Request) -> web.Response:
    doc = await _body(request)
    schema_id = request.app[REGISTRY].register(request.match_info["subject"], doc.get("schema"), _schema_type(doc))
    return _answer({"id": schema_id})


async def lookup(request: web.Request) -> web.Response:
    doc = await _body(request)
    return _answer(request.app[REGISTRY].lookup(request.match_info["subject"], doc.get("schema"), _schema_type(doc)))


async def schema_by_id(request: web.Request) -> web.Response:
    return _answer(request.app[REGISTRY].schema(request.match_info["id"]))


async def compatibility(request: web.Request) -> web.Response:
    doc = await _body(request)
    problems = request.app[REGISTRY].check(request.match_info["subject"], request.match_info["version"],
                                           doc.get("schema"), _schema_type(doc))
    answer: dict[str, Any] = {"is_compatible": not problems}
    if request.query.get("verbose", "").lower() == "true":
        answer["messages"] = problems
    return _answer(answer)


async def get_config(request: web.Request) -> web.Response:
    subject = request.match_info.get("subject")
    default_to_global = request.query.get("defaultToGlobal", "").lower() == "true"
    return _answer({"compatibilityLevel": request.app[REGISTRY].get_level(subject, default_to_global)})


async def put_config(request: web.Request) -> web.Response:
    doc = await _body(request)
    level = request.app[REGISTRY].set_level(doc.get("compatibility"), request.match_info.get("subject"))
    return _answer({"compatibility": level})


def make_app(registry: Registry, basic_auth: str = "") -> web.Application:
    """The aiohttp application serving ``registry`` (``basic_auth``: ``user:password``, empty for none)."""
    app = web.Application(middlewares=[_errors])
    app[REGISTRY] = registry
    app[AUTH] = basic_auth
    app.add_routes([
        web.get("/", root),
        web.get("/subjects", subjects),
        web.get("/subjects/{subject}/versions", versions),
        web.get("/subjects/{subject}/versions/{version}", version),
        web.post("/subjects/{subject}/versions", register),
        web.post("/subjects/{subject}", lookup),
        web.get("/schemas/ids/{id}", schema_by_id),
        web.post("/compatibility/subjects/{subject}/versions/{version}", compatibility),
        web.get("/config", get_config),
        web.put("/config", put_config),
        web.get("/config/{subject}", get_config),
        web.put("/config/{subject}", put_config),
    ])
    return app


def run(host: str, port: int, registry: Registry, basic_auth: str = "") -> None:
    """Serve until SIGTERM/SIGINT."""
    web.run_app(make_app(registry, basic_auth), host=host, port=port, print=None, access_log=None,
                handle_signals=True)
