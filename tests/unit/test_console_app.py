"""The console's server in process (aiohttp's test client) with a small OIDC provider of the test's own (token and
userinfo endpoints, unsigned ID tokens): no session means 401 and no data on every /api route, the login's checks
and refusals, CSRF, confirmation, logout, headers and the audit of each. What needs the stores is in
tests/e2e/test_console_api.py."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.cli.console import cmd_console, register
from streams.console.audit import audit_path
from streams.console.oidc import CLIENT_ID, OidcClient, endpoints
from streams.console.server import HANDLER_ARGS, create_app
from streams.runtime.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]

API_GETS = ["/api/session", "/api/nodes", "/api/recovery", "/api/conflicts", "/api/conflicts/abc",
            "/api/dead-letters", "/api/audit", "/api/nope", "/api/"]
API_POSTS = ["/api/mode", "/api/link", "/api/recovery/copy", "/api/conflicts/abc/resolve", "/api/dead-letters/retry"]


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


class Provider:
    """Token and userinfo endpoints that answer one pending authorization each (``authorize``)."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.issuer = ""
        self.tamper: dict[str, Any] = {}

    def authorize(self, location: str, username: str) -> str:
        q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        code = uuid.uuid4().hex
        self.codes[code] = {**q, "username": username}
        return f"/callback?code={code}&state={q['state']}"

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        auth = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if auth is None or challenge != auth["code_challenge"] or form.get("redirect_uri") != auth["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "azp": CLIENT_ID, "sub": f"id-{auth['username']}",
                  "exp": now + 300, "iat": now, "nonce": auth["nonce"], **self.tamper}
        access = uuid.uuid4().hex
        self.tokens[access] = {"sub": f"id-{auth['username']}", "preferred_username": auth["username"].lower(),
                               "given_name": "花子", "family_name": "山田"}
        return web.json_response({"access_token": access, "id_token": f"e30.{_b64(claims)}.sig",
                                  "token_type": "Bearer"})

    async def userinfo(self, request: web.Request) -> web.Response:
        info = self.tokens.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        return web.json_response(info) if info else web.json_response({"error": "invalid_token"}, status=401)


Test = Callable[[TestClient[Any, Any], Provider], Awaitable[None]]


def run(settings: Settings, test: Test, static_dir: Path | None = None) -> None:
    async def go() -> None:
        provider = Provider()
        kc = web.Application()
        kc.router.add_post("/realms/plat/protocol/openid-connect/token", provider.token)
        kc.router.add_get("/realms/plat/protocol/openid-connect/userinfo", provider.userinfo)
        async with TestServer(kc) as kc_server:
            provider.issuer = f"http://127.0.0.1:{kc_server.port}/realms/plat"
            ends = endpoints(f"http://127.0.0.1:{kc_server.port}", "plat")
            port = _free_port()
            oidc = OidcClient(ends, CLIENT_ID, f"http://127.0.0.1:{port}/callback", 5)
            app = create_app(settings, ["Hanako"], port=port, oidc=oidc,
                             **({"static_dir": static_dir} if static_dir else {}))
            async with TestClient(TestServer(app, host="127.0.0.1", port=port, **HANDLER_ARGS)) as client:
                await test(client, provider)

    asyncio.run(go())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=tmp_path)


async def login(client: TestClient[Any, Any], provider: Provider, username: str = "hanako") -> web.ClientResponse:
    started = await client.get("/login", allow_redirects=False)
    assert started.status == 302
    return await client.get(provider.authorize(started.headers["Location"], username), allow_redirects=False)


def audit(settings: Settings) -> list[dict[str, Any]]:
    path = audit_path(settings)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_without_a_session_every_api_route_is_401_with_no_data(settings: Settings) -> None:
    async def test(client: TestClient[Any, Any], _provider: Provider) -> None:
        for path in API_GETS:
            r = await client.get(path)
            assert r.status == 401, path
            assert await r.json() == {"error": "login_required", "message": (await r.json())["message"],
                                      "login": "/login"}
        for path in API_POSTS:
            for body in (b"{}", b'{"confirm": true, "node": "local", "mode": "normal"}', b"\xff" * 10):
                r = await client.post(path, data=body, headers={"X-CSRF-Token": "x"})
                assert r.status == 401 and set(await r.json()) == {"error", "message", "login"}, path
        r = await client.get("/api/nodes", cookies={"platsync_console": "forged"})
        assert r.status == 401
        doc = await client.get("/api/openapi.json")
        assert doc.status == 200 and (await doc.json())["openapi"] == "3.1.0"
        health = await client.get("/healthz")
        assert await health.json() == {"status": "ok"}
        assert health.headers["Content-Security-Policy"].startswith("default-src 'self'")

    run(settings, test)
    assert audit(settings) == []  # nothing was done, nothing refused that needed a session


def test_login_creates_a_session_with_csrf_and_refusals_are_audited(settings: Settings) -> None:
    async def test(client: TestClient[Any, Any], provider: Provider) -> None:
        started = await client.get("/login", allow_redirects=False)
        q = {k: v[0] for k, v in parse_qs(urlsplit(started.headers["Location"]).query).items()}
        assert q["code_challenge_method"] == "S256" and q["client_id"] == CLIENT_ID
        assert "platsync_console_login" in started.cookies and started.cookies["platsync_console_login"]["httponly"]
        # a callback without the login cookie (another browser): refused
        async with aiohttp.ClientSession() as stranger:
            r = await stranger.get(client.make_url(provider.authorize(started.headers["Location"], "hanako")),
                                   allow_redirects=False)
            assert r.status == 400 and "another browser" in await r.text()
        for bad in ("/callback", "/callback?code=x", "/callback?state=x", "/callback?code=x&state=unknown",
                    "/callback?error=access_denied&state=zzz", "/callback?code=" + "x" * 5000 + "&state=s"):
            r = await client.get(bad, allow_redirects=False)
            assert r.status == 400 and "platsync_console" not in r.cookies, bad
            assert "text/html" in r.headers["Content-Type"]
        provider.tamper = {"nonce": "someone-else"}
        r = await login(client, provider)
        assert r.status == 400 and "(nonce)" in await r.text()
        provider.tamper = {}
        r = await login(client, provider, "taro")
        assert r.status == 403 and "not an operator" in await r.text()
        assert (await client.get("/api/session")).status == 401
        r = await login(client, provider, "HANAKO")
        assert r.status == 302 and r.headers["Location"] == "/"
        cookie = r.cookies["platsync_console"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        session = await (await client.get("/api/session")).json()
        assert session["user"] == {"username": "hanako", "name": "山田 花子"}
        assert session["login_node"] == "local" and session["expires_idle_s"] == 1800 and len(session["csrf"]) >= 43
        # CSRF: missing or wrong -> 403; confirm missing -> 400; bad input -> 400; all before any store is touched
        r = await client.post("/api/mode", json={"node": "local", "mode": "normal", "confirm": True})
        assert r.status == 403 and (await r.json())["error"] == "csrf"
        r = await client.post("/api/mode", json={"node": "local", "mode": "normal", "confirm": True},
                              headers={"X-CSRF-Token": session["csrf"] + "x"})
        assert r.status == 403
        csrf = {"X-CSRF-Token": session["csrf"]}
        r = await client.post("/api/mode", json={"node": "local", "mode": "normal"}, headers=csrf)
        assert (r.status, (await r.json())["error"]) == (400, "confirm_required")
        for body in ({"node": "moon", "mode": "normal", "confirm": True}, {"node": "local", "confirm": True},
                     {"node": "local", "mode": "panic", "confirm": True}):
            r = await client.post("/api/mode", json=body, headers=csrf)
            assert (r.status, (await r.json())["error"]) == (400, "bad_request"), body
        r = await client.post("/api/dead-letters/retry", data=b"x" * 300_000, headers=csrf)
        assert (r.status, (await r.json())["error"]) == (413, "too_large")
        r = await client.get("/api/audit?limit=5")
        entries = (await r.json())["entries"]
        assert entries[0]["outcome"] == "refused" and entries[0]["action"] == "dead_letter_retry"
        # logout: CSRF needed, then the session is gone and Keycloak's end-session URL follows
        r = await client.post("/logout", data={"csrf": "wrong"}, allow_redirects=False)
        assert r.status == 403 and (await client.get("/api/session")).status == 200
        r = await client.post("/logout", data={"csrf": session["csrf"]}, allow_redirects=False)
        assert r.status == 302 and "/protocol/openid-connect/logout?" in r.headers["Location"]
        assert "id_token_hint=" in r.headers["Location"] and "logged-out" in r.headers["Location"]
        assert (await client.get("/api/session")).status == 401

    run(settings, test)
    entries = audit(settings)
    logins = [(e["user"], e["outcome"]) for e in entries if e["action"] == "login"]
    assert (None, "refused") in logins and ("taro", "refused") in logins and logins[-1] == ("hanako", "ok")
    assert [e["outcome"] for e in entries if e["action"] == "logout"] == ["refused", "ok"]
    assert [e["detail"] for e in entries if e["action"] == "mode"] == ["csrf", "csrf", "confirm_required",
                                                                      "bad_request", "bad_request", "bad_request"]
    text = audit_path(settings).read_text(encoding="utf-8")
    assert "e30." not in text and "code=" not in text  # no token, no code


def test_pages_static_files_and_path_tricks(settings: Settings, tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>console</title>", encoding="utf-8")
    (static / "console.js").write_text("'use strict';", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")

    async def test(client: TestClient[Any, Any], _provider: Provider) -> None:
        r = await client.get("/")
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
        r = await client.get("/static/console.js")
        assert r.status == 200 and await r.text() == "'use strict';"
        for path in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt",
                     "/static/.hidden", "/static/", "/static/nope.js", "/static/" + "a" * 3000):
            r = await client.get(path)
            assert r.status in (400, 403, 404) and "secret" not in await r.text(), path
        r = await client.get("/logged-out")
        assert r.status == 200 and "Logged out" in await r.text()
        r = await client.post("/logout", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/logged-out"
        r = await client.put("/api/mode")
        assert r.status == 401

    run(settings, test, static_dir=static)


def test_no_operator_is_a_configuration_error(settings: Settings) -> None:
    with pytest.raises(ValueError, match="no operator"):
        create_app(settings, [" "])


def test_platsync_console_takes_the_server_s_options_and_needs_an_operator(tmp_path: Path) -> None:
    parser, common = argparse.ArgumentParser(), argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path)
    common.add_argument("--config", type=Path)
    register(parser.add_subparsers(dest="command"), common)
    args = parser.parse_args(["console", "--data-dir", str(tmp_path), "--port", "9999", "--operator", "A",
                              "--operator", "b"])
    assert (args.port, args.operator, args.func) == (9999, ["A", "b"], cmd_console)
    result = subprocess.run([sys.executable, "-m", "streams.console.server", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2 and "no operator" in result.stderr
