"""One node's reference API over HTTP: ``python -m connectors.reference_api.http_server --side SIDE``.

Endpoints (docs/reference_api_http.md):

- ``POST /api/v1/{API_ID}``: the JSON payload ``platsync call`` takes; answers the JSON it prints
  (``ReferenceApi.call``). Needs ``Authorization: Bearer <access token>`` of the node's Keycloak realm
  (:mod:`connectors.reference_api.http_auth`).
- ``GET /api/v1/openapi.json``: the OpenAPI 3.1 document (:mod:`connectors.reference_api.openapi`).
- ``GET /healthz``: the side and its ``X-Hybridmode``.

Every response, errors included, carries ``X-Hybridmode`` (:func:`streams.core.modes.hybridmode` of the mode
in the side's mode state file) and ``X-Request-Id``. Errors are JSON (:mod:`connectors.reference_api.http_errors`);
an unexpected exception answers 500 with the request id and its value-free detail (exception chain, SQL
without parameters, code locations) goes to ``<data dir>/logs/call-errors.log``, as ``platsync call`` does.
Requests are logged one line each (method, path, status, duration, request id): never a body, a query or a token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from connectors.reference_api.call_errors import one_line, write_detail
from connectors.reference_api.http_auth import TokenCheck, userinfo_url
from connectors.reference_api.http_errors import Failure, HttpApiError, classify, internal
from connectors.reference_api.mode_source import ModeFollower
from connectors.reference_api.openapi import API_PREFIX, SERVED_APIS, openapi_document
from connectors.reference_api.service import ReferenceApi, canonical_api_id
from connectors.reference_api.subscriptions_api import canonical_subscription_api
from streams.apply.mode_state import current_mode
from streams.core.errors import PlatSyncError
from streams.core.model import SIDES
from streams.core.modes import HYBRIDMODE_HEADER, hybridmode
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.settings import Settings, SettingsError, load_settings

log = logging.getLogger("platsync.api")

#: Threads running API calls (each with its own ``ReferenceApi`` and connection pools).
DEFAULT_WORKERS = 4
#: How long the mode read from the state file is reused (the mode server rewrites it every half second).
MODE_CACHE_S = 0.25
#: aiohttp's parser limits: a header line may hold a large Keycloak access token (aiohttp's default is 8190 bytes,
#: which it refuses itself, before this application could answer with X-Hybridmode).
HANDLER_ARGS = {"max_line_size": 16_384, "max_field_size": 32_768}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Api(Protocol):
    """What the server needs of an API object (``ReferenceApi``)."""

    def call(self, api_id: str, payload: Any) -> dict[str, Any]: ...  # noqa: D102

    def close(self) -> None: ...  # noqa: D102


def canonical(api_id: str) -> str | None:
    """The canonical id of a served API (``DOC_006`` -> ``PRV_DOC_006``); None if there is no such API."""
    subscription = canonical_subscription_api(api_id)
    if subscription is not None:
        return subscription
    try:
        return canonical_api_id(api_id)
    except PlatSyncError:
        return None


class Calls:
    """Runs API calls on a small thread pool, one API object per thread (their engines are not shared)."""

    def __init__(self, factory: Callable[[], Api], workers: int = DEFAULT_WORKERS) -> None:
        self._factory, self._local = factory, threading.local()
        self._apis: list[Api] = []
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-call")

    def _run(self, api_id: str, payload: Any) -> dict[str, Any]:
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._local.api = self._factory()
            with self._lock:
                self._apis.append(api)
        return api.call(api_id, payload)

    async def call(self, api_id: str, payload: Any) -> dict[str, Any]:
        """Run ``api_id`` with ``payload`` off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._run, api_id, payload)

    def close(self) -> None:
        """Wait for running calls, then release every API object's connections."""
        self.executor.shutdown(wait=True)
        with self._lock:
            for api in self._apis:
                api.close()
            self._apis.clear()


def decode_payload(body: bytes, api_id: str, side: str) -> Any:
    """The JSON payload of a request body, decoded as ``platsync call`` decodes a file (strict UTF-8)."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpApiError("invalid_json", one_line(exc, api_id, side, None)) from None
    except RecursionError:
        raise HttpApiError("invalid_json", "the payload nests too deeply") from None
    except ValueError:  # e.g. an integer longer than Python converts
        raise HttpApiError("invalid_json", "the payload is not valid JSON (a number too long to read)") from None


def http_failure(status: int, method: str) -> Failure:
    """The JSON answer replacing one of aiohttp's own refusals (unknown path or method, body too large)."""
    if status == 404:
        return Failure("not_found", f"no such path; the APIs are POST {API_PREFIX}/{{API_ID}}")
    if status == 405:
        return Failure("method_not_allowed", f"{method} is not allowed here; the APIs take POST")
    if status == 413:
        return Failure("too_large", "the request body exceeds the server's limit (twice kafka_message_max_bytes)")
    if 400 <= status < 500:
        return Failure("bad_request", f"the request was refused (HTTP {status})")
    return Failure("internal", f"the request failed (HTTP {status})")


def create_app(settings: Settings, side: str, *, token_check: Any = None,
               api_factory: Callable[[], Api] | None = None, workers: int = DEFAULT_WORKERS,
               mode: Callable[[], str] | None = None, mode_url: str | None = None) -> web.Application:
    """The aiohttp application of ``side``'s API (``token_check``: an object with ``async claims(header)``; the
    mode from ``mode``, else from the mode server at ``mode_url``, else from the side's mode state file)."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")
    check = token_check or TokenCheck(userinfo_url(settings.keycloak_url(side), settings.keycloak_realm),
                                      settings.keycloak_realm, settings.keycloak_timeout_s)
    calls = Calls(api_factory or (lambda: ReferenceApi(settings, side)), workers)
    follower = ModeFollower(mode_url) if mode is None and mode_url else None
    read_mode = mode or (follower.mode if follower else (lambda: current_mode(settings, side)))
    cached: list[Any] = [0.0, None]
    detail_log = settings.data_dir / "logs" / "call-errors.log"

    def header_value() -> str:
        now = time.monotonic()
        if cached[1] is None or now - cached[0] > MODE_CACHE_S:
            cached[:] = [now, hybridmode(side, read_mode())]
        return str(cached[1])

    def failure_response(failure: Failure, request_id: str) -> web.Response:
        return web.json_response(failure.body(request_id), status=failure.status, headers=failure.headers)

    @web.middleware
    async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        api_id = request.match_info.get("api_id", "-")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # unknown path or method, body too large: aiohttp's own refusals
            response = failure_response(http_failure(exc.status, request.method), request_id)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, never a bare 500 page
            failure = classify(exc, api_id, side)
            if failure is None:
                where = write_detail(detail_log, exc, f"{api_id} (request {request_id})", side)
                log.error("request %s: %s", request_id, one_line(exc, api_id, side, where))
                failure = internal(exc, api_id, side)
            response = failure_response(failure, request_id)
        response.headers[HYBRIDMODE_HEADER] = header_value()
        response.headers["X-Request-Id"] = request_id
        log.info("%s %s %s %.0fms %s", request.method, request.path, response.status,
                 (time.monotonic() - started) * 1000, request_id)
        return response

    async def call(request: web.Request) -> web.Response:
        await check.claims(request.headers.get("Authorization"))
        raw_id = request.match_info["api_id"]
        api_id = canonical(raw_id)
        if api_id is None:
            raise HttpApiError("unknown_api", f"unknown API; known: {', '.join(SERVED_APIS)}")
        payload = decode_payload(await request.read(), api_id, side)
        return web.json_response(await calls.call(api_id, payload),
                                 dumps=lambda doc: json.dumps(doc, ensure_ascii=False))

    server_url = f"http://{settings.host}:{settings.api_port(side)}"
    document = openapi_document(side, server_url, settings.keycloak_realm, settings.keycloak_url(side))

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document, dumps=lambda doc: json.dumps(doc, ensure_ascii=False))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"side": side, "status": "ok", "hybridmode": header_value()})

    async def cleanup(_app: web.Application) -> None:
        close = getattr(check, "close", None)
        if close is not None:
            await close()
        await asyncio.get_running_loop().run_in_executor(None, calls.close)
        if follower is not None:
            await asyncio.get_running_loop().run_in_executor(None, follower.close)

    # Twice the broker's message limit: a base64 document near the limit still arrives, to be refused precisely.
    app = web.Application(middlewares=[envelope], client_max_size=2 * settings.kafka_message_max_bytes)
    app.on_cleanup.append(cleanup)
    app.router.add_get(f"{API_PREFIX}/openapi.json", openapi)
    app.router.add_post(API_PREFIX + "/{api_id}", call)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    """Parse the options, then serve until SIGTERM/SIGINT; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m connectors.reference_api.http_server",
                                     description="one node's reference API over HTTP (X-Hybridmode, bearer tokens)")
    parser.add_argument("--side", required=True, choices=SIDES)
    parser.add_argument("--config", type=Path, help="settings TOML file")
    parser.add_argument("--data-dir", type=Path, help="data dir (default from settings)")
    parser.add_argument("--port", type=int, help="HTTP port (default: settings api_<side>_port)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="threads running API calls")
    parser.add_argument("--mode-url", help="follow the mode server at this URL (its X-Hybridmode) instead of its "
                        "state file in the data dir (a Kubernetes pod: docs/reference_api_http.md)")
    args = parser.parse_args(argv)
    configure_logging(f"api-{args.side}")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
        configure_for(settings, f"api-{args.side}")
    except (SettingsError, ValueError) as exc:
        print(f"api-{args.side}: {exc}", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else settings.api_port(args.side)
    if not port:
        print(f"api-{args.side}: no API port for the {args.side} node (set api_{args.side}_port)", file=sys.stderr)
        return 2
    log.info("serving the %s side's reference API on http://%s:%s (tokens of realm %s at %s)", args.side,
             settings.host, port, settings.keycloak_realm, settings.keycloak_url(args.side))
    try:
        app = create_app(settings, args.side, workers=args.workers, mode_url=args.mode_url)
        web.run_app(app, host=settings.host, port=port,
                    access_log=None, print=None, handle_signals=True, **HANDLER_ARGS)
    except OSError as exc:
        print(f"api-{args.side}: cannot serve on {settings.host}:{port}: {exc}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
