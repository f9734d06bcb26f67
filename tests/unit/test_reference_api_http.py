"""The HTTP server of the reference API with a stand-in API and token check (no stores), and its token check
against a fake userinfo endpoint: status codes, error bodies, X-Hybridmode on every answer, no 500 for bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.reference_api.call_errors import one_line
from connectors.reference_api.http_auth import TokenCheck
from connectors.reference_api.http_errors import HttpApiError
from connectors.reference_api.http_server import HANDLER_ARGS, create_app
from connectors.reference_api.payloads import PARSERS
from streams.runtime.settings import Settings, load_settings

GOOD = "Bearer good.token.value"
SECRET = "secret-value-4711"


class FakeCheck:
    """Accepts exactly GOOD; counts the checks."""

    def __init__(self) -> None:
        self.checked = 0

    async def claims(self, authorization: str | None) -> dict[str, Any]:
        self.checked += 1
        if authorization != GOOD:
            raise HttpApiError("unauthorized", "refused", {"WWW-Authenticate": 'Bearer realm="plat"'})
        return {"sub": "u1"}


class FakeApi:
    """Parses like the reference API; a payload ``{"boom": ...}`` raises an unexpected error holding a value."""

    calls: list[str] = []

    def call(self, api_id: str, payload: Any) -> dict[str, Any]:
        if isinstance(payload, dict) and "boom" in payload:
            raise KeyError(SECRET)
        if api_id in PARSERS:
            PARSERS[api_id](payload)
        FakeApi.calls.append(api_id)
        return {"api": api_id, "side": "local", "call_id": "c1", "written": {"meta": {"staff": ["s1"]}}, "txids": {}}

    def close(self) -> None:
        pass


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=tmp_path, kafka_message_max_bytes=4096)


def run(settings: Settings, side: str, test: Callable[[TestClient[Any, Any]], Awaitable[None]],
        mode: str = "normal") -> None:
    async def go() -> None:
        app = create_app(settings, side, token_check=FakeCheck(), api_factory=FakeApi, workers=1,
                         mode=lambda: mode)
        server = TestServer(app)
        await server.start_server(**HANDLER_ARGS)  # the parser limits the server runs with
        async with TestClient(server) as client:
            await test(client)

    asyncio.run(go())


def test_a_call_answers_the_api_s_result_with_the_header(settings: Settings) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        staff = {"staff_code": "S-1", "display_name": "佐藤", "role": "nurse"}
        r = await client.post("/api/v1/PRV_STF_001", json=staff, headers={"Authorization": GOOD})
        assert r.status == 200 and r.headers["X-Hybridmode"] == "normal-fa" and r.headers["X-Request-Id"]
        assert (await r.json())["written"] == {"meta": {"staff": ["s1"]}}
        alias = await client.post("/api/v1/STF_001", json=staff, headers={"Authorization": GOOD})
        assert alias.status == 200 and (await alias.json())["api"] == "PRV_STF_001"
        health = await client.get("/healthz")
        assert (await health.json())["hybridmode"] == "normal-fa"
        doc = await client.get("/api/v1/openapi.json")
        assert doc.status == 200 and (await doc.json())["openapi"] == "3.1.0"

    run(settings, "local", test)


def test_errors_are_json_4xx_with_the_cli_s_message_and_the_header(settings: Settings) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        async def post(path: str, body: bytes, auth: str | None = GOOD) -> tuple[int, dict[str, Any], Any]:
            r = await client.post(path, data=body, headers={"Authorization": auth} if auth else {})
            assert r.headers["X-Hybridmode"] == "emergency"
            return r.status, await r.json(), r.headers

        status, body, headers = await post("/api/v1/PRV_STF_001", b"{}", auth=None)
        assert (status, body["error"]) == (401, "unauthorized") and headers["WWW-Authenticate"].startswith("Bearer")
        status, body, _ = await post("/api/v1/PRV_XXX_001", b"{}")
        assert (status, body["error"]) == (404, "unknown_api")
        status, body, _ = await post("/api/v1/PRV_STF_001", b'{"staff_code": ')
        assert (status, body["error"]) == (400, "invalid_json")
        try:
            json.loads('{"staff_code": ')
        except json.JSONDecodeError as exc:
            assert body["message"] == one_line(exc, "PRV_STF_001", "remote", None)
        status, body, _ = await post("/api/v1/PRV_STF_001", json.dumps({"staff_code": SECRET}).encode())
        assert (status, body["error"]) == (422, "payload") and SECRET not in json.dumps(body)
        assert body["message"] == "PRV_STF_001 payload: display_name: missing; expected a non-empty string"
        status, body, _ = await post("/api/v1/PRV_STF_001", json.dumps({"boom": SECRET}).encode())
        assert (status, body["error"]) == (500, "internal") and SECRET not in json.dumps(body) and body["request_id"]
        status, body, _ = await post("/api/v1/PRV_STF_001", b"[" * 5000)
        assert (status, body["error"]) == (400, "invalid_json")
        status, body, _ = await post("/api/v1/PRV_STF_001", b"x" * 10_000)
        assert (status, body["error"]) == (413, "too_large")
        r = await client.get("/api/v1/PRV_STF_001")
        assert r.status == 405 and (await r.json())["error"] == "method_not_allowed" and r.headers["X-Hybridmode"]
        r = await client.get("/nowhere")
        assert r.status == 404 and (await r.json())["error"] == "not_found" and r.headers["X-Hybridmode"]

    run(settings, "remote", test, mode="emergency")
    log = (settings.data_dir / "logs" / "call-errors.log").read_text(encoding="utf-8")
    assert "KeyError" in log and SECRET not in log


#: Malformed requests (path, headers, body): none may answer 500, none without the good token may call the API.
BAD_BODIES: list[bytes] = [
    b"", b" ", b"null", b"true", b"1", b"1e999", b"-0", b'"x"', b"[]", b"[{}]", b"{}", b'{"":1}', b"{'a':1}",
    b"\xff\xfe", b"\xef\xbb\xbf{}", b"{\"a\":\"\\ud800\"}", b"\x00", b'{"a":1,}', b"NaN", b"Infinity",
    b"9" * 5000, b"{" * 5000, b'{"documents": [' + b"{}," * 200 + b"{}]}", b'{"documents": null}',
    b'{"documents": "x"}', b'{"documents": [1, "a", null]}', b'{"ids": [1]}', b'{"ids": ["\\u0000"]}',
    b'{"staff_code": "S", "display_name": "\\u0007", "role": "r"}',
    b'{"staff_code": "' + b"x" * 2000 + b'", "display_name": "d", "role": "r"}',
    b'{"username": "a", "enabled": "yes"}', b'{"birth_date": "2020-02-30"}', b'{"__proto__": {}}',
]
BAD_PATHS = ["/api/v1/", "/api/v1/%00", "/api/v1/PRV_STF_001/extra", "/api/v1/..%2f..%2fetc", "/api/v1/PRV_stf_001",
             "/api/v1/" + "A" * 3000, "/api/v2/PRV_STF_001", "/api/v1/PLAT_SUB_009"]
BAD_AUTH = [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer good.token.valuex", GOOD + " extra",
            "Bearer " + "a" * 20_000, "Bearer \u00e9t\u00e9"]


def test_fuzzed_requests_never_answer_500_nor_reach_the_api_without_a_token(settings: Settings) -> None:
    FakeApi.calls.clear()
    statuses: list[int] = []

    async def test(client: TestClient[Any, Any]) -> None:
        apis = ["PRV_STF_001", "PRV_DOC_006", "PRV_DOC_008", "PRV_ATH_001", "PRV_PAT_001", "PRV_DOC_009"]
        for i, body in enumerate(BAD_BODIES):
            r = await client.post(f"/api/v1/{apis[i % len(apis)]}", data=body, headers={"Authorization": GOOD})
            statuses.append(r.status)
            assert r.status < 500 and r.headers["X-Hybridmode"] == "recovery-fa", (body[:40], r.status)
            assert set(await r.json()) >= {"error", "message", "request_id"}
        for path in BAD_PATHS:
            r = await client.post(path, data=b"{}", headers={"Authorization": GOOD})
            statuses.append(r.status)
            assert 400 <= r.status < 500 and r.headers["X-Hybridmode"] == "recovery-fa", (path, r.status)
        for auth in BAD_AUTH:
            headers = {} if auth is None else {"Authorization": auth}
            r = await client.post("/api/v1/PRV_STF_001", json={"staff_code": "S", "display_name": "d", "role": "r"},
                                  headers=headers)
            statuses.append(r.status)
            assert r.status == 401 and r.headers["X-Hybridmode"] == "recovery-fa", (auth, r.status)

    run(settings, "local", test, mode="recovery")
    assert len(statuses) >= 45 and FakeApi.calls == []  # every fuzzed body was refused before a store


def test_the_token_check_asks_userinfo_and_caches_only_acceptance() -> None:
    seen: list[str] = []

    async def userinfo(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        if token == "good":
            return web.json_response({"sub": "u1", "preferred_username": "hanako"})
        if token == "noscope":
            return web.json_response({"error": "insufficient_scope"}, status=403)
        if token == "broken":
            return web.json_response({"error": "unknown_error"}, status=500)
        return web.json_response({"error": "invalid_token"}, status=401)

    async def go() -> None:
        app = web.Application()
        app.router.add_get("/userinfo", userinfo)
        async with TestServer(app) as server:
            check = TokenCheck(str(server.make_url("/userinfo")), "plat", timeout_s=5)
            try:
                assert (await check.claims("Bearer good"))["sub"] == "u1"
                assert (await check.claims("bearer good"))["preferred_username"] == "hanako"
                assert seen == ["good"]  # the second answer came from the cache
                for header, kind in (("Bearer bad", "unauthorized"), ("Bearer bad", "unauthorized"),
                                     ("Bearer noscope", "forbidden"), ("Bearer broken", "unavailable")):
                    with pytest.raises(HttpApiError) as info:
                        await check.claims(header)
                    assert info.value.kind == kind
                assert seen.count("bad") == 2  # refusals are not cached
                for header in (None, "Bearer", "Token good", "Bearer a b", "Bearer " + "x" * 20_000):
                    with pytest.raises(HttpApiError) as info:
                        await check.claims(header)
                    assert info.value.kind == "unauthorized" and "WWW-Authenticate" in info.value.headers
                assert len(seen) == 5  # malformed headers never reached Keycloak
            finally:
                await check.close()
            unreachable = TokenCheck("http://127.0.0.1:9/userinfo", "plat", timeout_s=2)
            with pytest.raises(HttpApiError) as info:
                await unreachable.claims("Bearer good")
            assert info.value.kind == "unavailable" and info.value.headers["Retry-After"] == "5"
            await unreachable.close()

    asyncio.run(go())
