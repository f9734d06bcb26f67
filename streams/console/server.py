"""The operator console: ``python -m streams.console.server [--config F] [--data-dir D] [--port P] [--operator U]``.

Serves the page (``streams/console/static/``), the OpenID Connect login against the login node's Keycloak realm
(:mod:`streams.console.oidc`), in-memory sessions with a CSRF token (:mod:`streams.console.sessions`), the JSON API
under ``/api`` (:mod:`streams.console.views`, :mod:`streams.console.actions`, described by
:mod:`streams.console.openapi`) and the audit log (:mod:`streams.console.audit`). docs/console.md has the whole
contract. Blocking work (PostgreSQL, the broker, the CLI's functions) runs in a thread pool; actions that change
something run one at a time. Errors are JSON ``{"error", "message"}`` without values; requests are logged one line
each (method, path, status, duration): never a body, a query, a cookie or a token.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.console import actions, inputs, views
from streams.console.audit import AuditLog, audit_path
from streams.console.inputs import ApiError
from streams.console.oidc import CLIENT_ID, LoginRefused, OidcClient, PendingLogins, auth_url, end_session_url
from streams.console.oidc import endpoints as oidc_endpoints
from streams.console.openapi import openapi_document
from streams.console.options import add_options
from streams.console.pages import SECURITY_HEADERS, logged_out_page, missing_page, refused_page
from streams.console.sessions import COOKIE, Session, Sessions, csrf_ok
from streams.core.model import SIDES
from streams.core.modes import MODES
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.settings import Settings, SettingsError, load_settings

log = logging.getLogger("platsync.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOGIN_COOKIE = "platsync_console_login"
WORKERS = 4
#: How long one ``/api/nodes`` snapshot is shared between requests (every open page asks every 2 s).
NODES_CACHE_S = 1.0
#: aiohttp's parser limits, as the reference API's server (connectors/reference_api/http_server.py).
HANDLER_ARGS = {"max_line_size": 16_384, "max_field_size": 32_768}
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
_ACTIONS = (("/api/mode", "mode"), ("/api/link", "link"), ("/api/recovery/copy", "recovery_copy"),
            ("/api/dead-letters/retry", "dead_letter_retry"))
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def action_of(path: str) -> str:
    """The audit action of a POST to ``path``."""
    if path.startswith("/api/conflicts/") and path.endswith("/resolve"):
        return "conflict_resolve"
    return dict(_ACTIONS).get(path, "api")


def url_host(host: str) -> str:
    """``host`` as it goes in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def where(exc: BaseException) -> str:
    """A value-free description of an unexpected exception: its type and code locations, never its message."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    return type(exc).__name__ + " at " + " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                                                    for f in reversed(frames))


def redirect(location: str) -> web.Response:
    """A 302 to ``location``."""
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def api_json(doc: Any, status: int = 200) -> web.Response:
    """A JSON answer that is never cached."""
    return web.json_response(doc, status=status, headers={"Cache-Control": "no-store"})


def create_app(settings: Settings, operators: tuple[str, ...] | list[str], *, port: int | None = None,
               oidc: OidcClient | None = None, static_dir: Path = STATIC_DIR,
               workers: int = WORKERS) -> web.Application:
    """The console's aiohttp application (``operators``: the realm usernames allowed in, any case; ``port``: where
    it is served, for its redirect URIs; ``oidc``: the Keycloak client, default the login node's realm)."""
    allowed = frozenset(u.strip().lower() for u in operators if u.strip())
    if not allowed:
        raise ValueError("no operator: name the realm users allowed in (--operator or console_operators)")
    port = port if port is not None else settings.console_port
    base = f"http://{url_host(settings.host)}:{port}"
    ends = oidc_endpoints(settings.keycloak_url(settings.console_login_node), settings.keycloak_realm)
    client = oidc or OidcClient(ends, CLIENT_ID, f"{base}/callback", settings.keycloak_timeout_s)
    sessions, pending = Sessions(settings.console_session_idle_s), PendingLogins()
    audit = AuditLog(audit_path(settings))
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="console")
    one_action = asyncio.Lock()
    nodes_cache: dict[str, Any] = {"at": -1e9, "doc": None}
    nodes_lock = asyncio.Lock()
    document = openapi_document(base, settings.console_login_node)

    async def blocking(func: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, partial(func, *args))
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store, the broker or a process failed: 503, value-free
            log.error("%s failed: %s", getattr(func, "__name__", "call"), where(exc))
            raise ApiError(503, "unavailable", f"a store, the broker or a process is unavailable "
                           f"({type(exc).__name__}); retry later, or see 'platsync status'") from None

    def record(user: str | None, action: str, target: str | None, outcome: str, detail: str | None) -> None:
        audit.append(user, action, target, outcome, detail)
        log.info("audit: %s %s %s %s", user or "-", action, target or "-", outcome)

    @web.middleware
    async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        path = request.path
        is_api = path == "/api" or path.startswith("/api/")
        session: Session | None = None
        try:
            if is_api and path != "/api/openapi.json":
                session = sessions.get(request.cookies.get(COOKIE))
                if session is None:
                    raise ApiError(401, "login_required", "log in first: no live session (it ends after "
                                   f"{settings.console_session_idle_s:g} s idle or when the console restarts)")
                request[SESSION] = session
                if request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_ok(
                        session, request.headers.get("X-CSRF-Token")):
                    raise ApiError(403, "csrf", "the X-CSRF-Token header is missing or wrong (GET /api/session)")
            response = await handler(request)
        except ApiError as exc:
            body = exc.body()
            if exc.status == 401:
                body["login"] = "/login"
            response = api_json(body, exc.status)
            if request.method == "POST" and is_api and exc.status != 401:
                record(session.username if session else None, action_of(path), path, "refused", exc.code)
        except web.HTTPException as exc:
            if not is_api:
                response = web.Response(status=exc.status, text=f"{exc.status}: {exc.reason}")
            else:
                code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "bad_request")
                response = api_json({"error": code, "message": f"refused (HTTP {exc.status}): {exc.reason}"},
                                    exc.status if 400 <= exc.status < 500 else 400)
                if request.method == "POST" and exc.status != 404:
                    record(session.username if session else None, action_of(path), path, "refused", code)
        except Exception as exc:  # noqa: BLE001 - never a bare 500 page
            log.error("%s %s failed: %s", request.method, path, where(exc))
            response = (api_json({"error": "unavailable", "message": f"the request failed ({type(exc).__name__})"},
                                 503) if is_api else refused_page(503, f"the console failed ({type(exc).__name__})"))
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        log.info("%s %s %s %.0fms", request.method, path[:200], response.status, (time.monotonic() - started) * 1000)
        return response

    async def body_of(request: web.Request) -> dict[str, Any]:
        doc = inputs.json_object(await request.read())
        inputs.require_confirm(doc)
        return doc

    def user_of(request: web.Request) -> str:
        return str(request[SESSION].username)

    async def act(request: web.Request, action: str, target: str, func: Callable[..., Any], *args: Any) -> Any:
        async with one_action:
            answer, outcome, detail = await blocking(func, *args)
        nodes_cache["at"] = -1e9
        record(user_of(request), action, target, outcome, detail)
        return api_json(answer)

    # ---- pages and login -----------------------------------------------------------------------------------
    async def index(_request: web.Request) -> web.StreamResponse:
        html = static_dir / "index.html"
        if not html.is_file():
            return missing_page()
        return web.FileResponse(html, headers={"Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8"})

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = static_dir / name
        if not _STATIC_NAME.match(name) or not path.is_file() or path.resolve().parent != static_dir.resolve():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def login(request: web.Request) -> web.Response:
        if request.host != f"{url_host(settings.host)}:{port}":  # the login cookie must come back to this host
            return redirect(f"{base}/login")
        started = pending.start()
        response = redirect(auth_url(ends, CLIENT_ID, f"{base}/callback", started))
        response.set_cookie(LOGIN_COOKIE, started.binding, max_age=int(pending.ttl_s), path="/callback",
                            httponly=True, samesite="Lax")
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        query = request.query
        state, code, error = query.get("state"), query.get("code"), query.get("error")
        try:
            if error is not None:
                if state and len(state) <= 200:
                    pending.drop(state)
                safe = "".join(c for c in error[:40] if c.isalnum() or c in "_-.")
                raise LoginRefused(f"Keycloak did not log the user in ({safe or 'error'})")
            if not state or not code or len(state) > 200 or len(code) > 4096 or not code.isascii():
                raise LoginRefused("the login's answer lacks its code or state: start again")
            started = pending.take(state, request.cookies.get(LOGIN_COOKIE))
            who = await client.login(code, started)
        except LoginRefused as exc:
            record(None, "login", settings.console_login_node, "refused", exc.reason)
            return refused_page(exc.status if exc.status != 502 else 503, exc.reason)
        if who.username not in allowed:
            record(who.username, "login", settings.console_login_node, "refused", "not an operator of this console")
            return refused_page(403, f"the user {who.username} is not an operator of this console "
                                "(console_operators, --operator)")
        session = sessions.create(who.username, who.name, who.sub, who.id_token)
        record(who.username, "login", settings.console_login_node, "ok", None)
        response = redirect("/")
        response.set_cookie(COOKIE, session.id, path="/", httponly=True, samesite="Lax")
        response.del_cookie(LOGIN_COOKIE, path="/callback")
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        cookie = request.cookies.get(COOKIE)
        session = sessions.get(cookie, touch=False)
        if session is None:
            response = redirect("/logged-out")
        else:
            token = request.headers.get("X-CSRF-Token")
            if token is None and request.content_type == "application/x-www-form-urlencoded":
                token = str((await request.post()).get("csrf") or "") or None
            if not csrf_ok(session, token):
                record(session.username, "logout", "session", "refused", "csrf")
                return refused_page(403, "the logout form lacks the session's CSRF token: use the console's button")
            sessions.end(cookie)
            record(session.username, "logout", "session", "ok", None)
            response = redirect(end_session_url(ends, CLIENT_ID, session.id_token, f"{base}/logged-out"))
        response.del_cookie(COOKIE, path="/")
        return response

    async def logged_out(_request: web.Request) -> web.Response:
        return logged_out_page()

    async def healthz(_request: web.Request) -> web.Response:
        return api_json({"status": "ok"})

    # ---- the JSON API --------------------------------------------------------------------------------------
    async def openapi(_request: web.Request) -> web.Response:
        return api_json(document)

    async def session_info(request: web.Request) -> web.Response:
        s = request[SESSION]
        return api_json({"user": {"username": s.username, "name": s.name}, "csrf": s.csrf,
                         "login_node": settings.console_login_node,
                         "expires_idle_s": int(settings.console_session_idle_s)})

    async def nodes(_request: web.Request) -> web.Response:
        async with nodes_lock:
            if time.monotonic() - nodes_cache["at"] > NODES_CACHE_S:
                nodes_cache["doc"] = await blocking(views.nodes_view, settings)
                nodes_cache["at"] = time.monotonic()
            return api_json(nodes_cache["doc"])

    async def mode(request: web.Request) -> web.Response:
        doc = await body_of(request)
        node = str(inputs.choice(doc, "node", SIDES))
        if "mode" not in doc:
            raise ApiError(400, "bad_request", "mode is required: normal, emergency, recovery or null (automatic)")
        wanted = inputs.choice(doc, "mode", MODES, nullable=True)
        why = inputs.note(doc)
        return await act(request, "mode", node, actions.set_mode, settings, node, wanted, why, user_of(request))

    async def link(request: web.Request) -> web.Response:
        doc = await body_of(request)
        up = inputs.choice(doc, "action", ("down", "up")) == "up"
        return await act(request, "link", "link", actions.switch, settings, up, inputs.note(doc))

    async def recovery(request: web.Request) -> web.Response:
        since = inputs.iso_ms(request.query.get("since"), "since")
        until = inputs.iso_ms(request.query.get("until"), "until")
        return api_json(await blocking(views.recovery_view, settings, since, until))

    async def recovery_copy(request: web.Request) -> web.Response:
        ids = inputs.id_list(await body_of(request))
        return await act(request, "recovery_copy", ",".join(ids), actions.copy, settings, ids)

    async def conflicts(request: web.Request) -> web.Response:
        status = inputs.query_choice(request.query.get("status"), "status", ("open", "resolved", "all"), "open")
        return api_json(await blocking(views.conflicts_view, settings, status))

    async def conflict(request: web.Request) -> web.Response:
        conflict_id = views.conflict_id_checked(request.match_info["id"])
        return api_json(await blocking(views.conflict_view, settings, conflict_id))

    async def resolve(request: web.Request) -> web.Response:
        conflict_id = views.conflict_id_checked(request.match_info["id"])
        doc = await body_of(request)
        return await act(request, "conflict_resolve", conflict_id, actions.resolve_conflict, settings, conflict_id,
                         inputs.note(doc), user_of(request))

    async def dead_letters(request: web.Request) -> web.Response:
        status = inputs.query_choice(request.query.get("status"), "status", ("pending", "retried", "all"), "all")
        return api_json(await blocking(views.dead_letters_view, settings, status))

    async def retry(request: web.Request) -> web.Response:
        ids = inputs.id_list(await body_of(request))
        return await act(request, "dead_letter_retry", ",".join(ids), actions.retry_letters, settings, ids)

    async def audit_entries(request: web.Request) -> web.Response:
        limit = inputs.audit_limit(request.query.get("limit"))
        entries = await asyncio.get_running_loop().run_in_executor(executor, audit.newest, limit)
        return api_json({"entries": entries})

    async def cleanup(_app: web.Application) -> None:
        await client.close()
        await asyncio.get_running_loop().run_in_executor(None, partial(executor.shutdown, wait=True))

    app = web.Application(middlewares=[envelope], client_max_size=inputs.BODY_MAX)
    app.on_cleanup.append(cleanup)
    add = app.router
    add.add_get("/", index)
    add.add_get("/static/{name}", static)
    add.add_get("/login", login)
    add.add_get("/callback", callback)
    add.add_post("/logout", logout)
    add.add_get("/logged-out", logged_out)
    add.add_get("/healthz", healthz)
    add.add_get("/api/openapi.json", openapi)
    add.add_get("/api/session", session_info)
    add.add_get("/api/nodes", nodes)
    add.add_post("/api/mode", mode)
    add.add_post("/api/link", link)
    add.add_get("/api/recovery", recovery)
    add.add_post("/api/recovery/copy", recovery_copy)
    add.add_get("/api/conflicts", conflicts)
    add.add_get("/api/conflicts/{id}", conflict)
    add.add_post("/api/conflicts/{id}/resolve", resolve)
    add.add_get("/api/dead-letters", dead_letters)
    add.add_post("/api/dead-letters/retry", retry)
    add.add_get("/api/audit", audit_entries)
    return app


def serve(args: argparse.Namespace) -> int:
    """Load the settings, then serve the console until SIGTERM/SIGINT; returns the process exit code."""
    configure_logging("console")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
        configure_for(settings, "console")
    except (SettingsError, ValueError) as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 2
    operators = [*settings.console_operator_names, *(u.strip().lower() for u in args.operator if u.strip())]
    if not operators:
        print("console: no operator: name the realm users allowed in with --operator USERNAME (repeatable) or "
              "console_operators in the settings", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else settings.console_port
    if not 0 < port < 65536:
        print(f"console: port {port} is not a TCP port", file=sys.stderr)
        return 2
    log.info("serving the operator console on http://%s:%s (login: realm %s at %s, %d operator(s))",
             url_host(settings.host), port, settings.keycloak_realm,
             settings.keycloak_url(settings.console_login_node), len(set(operators)))
    try:
        web.run_app(create_app(settings, operators, port=port), host=settings.host, port=port, access_log=None,
                    print=None, handle_signals=True, **HANDLER_ARGS)
    except OSError as exc:
        print(f"console: cannot serve on {settings.host}:{port}: {exc}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.console.server``: parse the options and serve."""
    parser = argparse.ArgumentParser(prog="python -m streams.console.server",
                                     description="PLAT Sync's operator console (web page and JSON API)")
    add_options(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
