"""The operator console's pure parts: the OIDC login's URLs and ID-token checks, sessions and CSRF, the audit log,
input validation and the OpenAPI document (streams/console/)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from jsonschema import Draft202012Validator

from streams.console import inputs
from streams.console.audit import AuditLog
from streams.console.oidc import (
    CLIENT_ID,
    LoginRefused,
    PendingLogins,
    auth_url,
    check_id_token,
    display_name,
    end_session_url,
    endpoints,
    jwt_claims,
    pkce_challenge,
)
from streams.console.openapi import openapi_document
from streams.console.sessions import Sessions, csrf_ok

ENDS = endpoints("http://127.0.0.1:18080/", "plat")
ISSUER = "http://127.0.0.1:18080/realms/plat"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_endpoints_are_keycloak_s_standard_paths() -> None:
    assert ENDS.issuer == ISSUER
    assert ENDS.auth == ISSUER + "/protocol/openid-connect/auth"
    assert (ENDS.token, ENDS.userinfo, ENDS.end_session) == tuple(
        f"{ISSUER}/protocol/openid-connect/{p}" for p in ("token", "userinfo", "logout"))


def test_the_auth_url_carries_state_nonce_and_an_s256_challenge() -> None:
    pending = PendingLogins().start()
    url = auth_url(ENDS, CLIENT_ID, "http://127.0.0.1:8765/callback", pending)
    assert url.startswith(ENDS.auth + "?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q == {"client_id": "platsync-console", "redirect_uri": "http://127.0.0.1:8765/callback",
                 "response_type": "code", "scope": "openid profile email", "state": pending.state,
                 "nonce": pending.nonce, "code_challenge": q["code_challenge"], "code_challenge_method": "S256"}
    expected = base64.urlsafe_b64encode(hashlib.sha256(pending.verifier.encode()).digest()).rstrip(b"=").decode()
    assert q["code_challenge"] == expected == pkce_challenge(pending.verifier)
    assert 43 <= len(pending.verifier) <= 128 and pending.verifier not in url  # the verifier stays server side
    assert len({pending.state, pending.nonce, pending.verifier, pending.binding}) == 4


def test_end_session_url_names_the_id_token_and_where_to_come_back() -> None:
    url = end_session_url(ENDS, CLIENT_ID, "a.b.c", "http://127.0.0.1:8765/logged-out")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(ENDS.end_session + "?")
    assert q == {"client_id": CLIENT_ID, "post_logout_redirect_uri": "http://127.0.0.1:8765/logged-out",
                 "id_token_hint": "a.b.c"}


def test_a_pending_login_is_taken_once_by_its_browser_within_ten_minutes() -> None:
    clock = Clock()
    logins = PendingLogins(clock=clock)
    first, second, third = logins.start(), logins.start(), logins.start()
    with pytest.raises(LoginRefused, match="another browser"):
        logins.take(first.state, "not-the-binding")
    with pytest.raises(LoginRefused, match="unknown or expired"):
        logins.take(first.state, first.binding)  # a refused attempt used it up
    assert logins.take(second.state, second.binding) == second
    with pytest.raises(LoginRefused):
        logins.take(second.state, second.binding)
    clock.now += 601
    with pytest.raises(LoginRefused, match="unknown or expired"):
        logins.take(third.state, third.binding)
    with pytest.raises(LoginRefused):
        logins.take("nonsense", None)
    bounded = PendingLogins(max_pending=3)
    for _ in range(10):
        bounded.start()
    assert len(bounded) == 3


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": CLIENT_ID, "azp": CLIENT_ID, "sub": "u-1", "exp": now + 300, "iat": now,
            "nonce": "n-1", "typ": "ID"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(("changes", "claim"), [
    ({"iss": "http://127.0.0.1:18081/realms/plat"}, "iss"), ({"iss": None}, "iss"),
    ({"aud": "other-client"}, "aud"), ({"aud": None}, "aud"), ({"aud": ["other", "more"]}, "aud"),
    ({"aud": [CLIENT_ID, "other"], "azp": "other"}, "azp"), ({"azp": "other"}, "azp"),
    ({"exp": int(time.time()) - 120}, "exp"), ({"exp": None}, "exp"), ({"exp": "tomorrow"}, "exp"),
    ({"exp": True}, "exp"), ({"iat": int(time.time()) + 3600}, "iat"),
    ({"nonce": "n-2"}, "nonce"), ({"nonce": None}, "nonce"), ({"nonce": 1}, "nonce"), ({"sub": ""}, "sub"),
])
def test_id_token_claims_that_do_not_fit_are_refused(changes: dict[str, Any], claim: str) -> None:
    with pytest.raises(LoginRefused, match=rf"\({claim}\)") as info:
        check_id_token(claims(**changes), ISSUER, CLIENT_ID, "n-1")
    assert info.value.status == 400


def test_id_token_claims_that_fit_pass() -> None:
    check_id_token(claims(), ISSUER, CLIENT_ID, "n-1")
    check_id_token(claims(aud=[CLIENT_ID, "account"]), ISSUER, CLIENT_ID, "n-1")
    check_id_token(claims(azp=None), ISSUER, CLIENT_ID, "n-1")
    check_id_token(claims(exp=int(time.time()) - 30), ISSUER, CLIENT_ID, "n-1")  # within the clock-skew leeway


def test_jwt_claims_reads_the_payload_and_refuses_garbage() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "x"}).encode()).rstrip(b"=").decode()
    assert jwt_claims(f"e30.{payload}.sig") == {"sub": "x"}
    for bad in (None, 1, "", "a.b", "a.!!!.c", "a.W10.c", "a.b.c.d"):
        with pytest.raises(LoginRefused):
            jwt_claims(bad)


def test_display_name_prefers_name_then_family_and_given_name() -> None:
    assert display_name({"name": " 山田 花子 ", "family_name": "x"}) == "山田 花子"
    assert display_name({"family_name": "山田", "given_name": "花子"}) == "山田 花子"
    assert display_name({"preferred_username": "hanako"}) == "hanako"


def test_sessions_expire_when_idle_and_each_has_its_own_csrf_token() -> None:
    clock = Clock()
    sessions = Sessions(idle_s=60, clock=clock)
    a = sessions.create("hanako", "山田 花子", "u-1", "id.token.a")
    b = sessions.create("taro", "Taro", "u-2", "id.token.b")
    assert a.id != b.id and a.csrf != b.csrf and len(a.id) >= 43 and len(a.csrf) >= 43
    assert sessions.get(a.id) is a and sessions.get("unknown") is None and sessions.get(None) is None
    assert sessions.get("x" * 10_000) is None
    clock.now += 59
    assert sessions.get(a.id) is a  # activity restarts the idle time
    clock.now += 59
    assert sessions.get(a.id) is a and sessions.get(b.id) is None  # b was idle for 118 s
    clock.now += 30
    assert sessions.get(a.id, touch=False) is a
    clock.now += 30
    assert sessions.get(a.id) is None and len(sessions) == 0
    c = sessions.create("hanako", "x", "u-1", "t")
    assert sessions.end(c.id) is c and sessions.get(c.id) is None and sessions.end(c.id) is None
    assert csrf_ok(a, a.csrf) and not csrf_ok(a, b.csrf) and not csrf_ok(a, None) and not csrf_ok(a, "")
    assert not csrf_ok(a, a.csrf + "x") and not csrf_ok(a, "é" * 43)
    bounded = Sessions(idle_s=60, max_sessions=5)
    for i in range(20):
        bounded.create(f"u{i}", "n", "s", "t")
    assert len(bounded) == 5


def test_the_audit_log_appends_json_lines_and_reads_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "console" / "audit.jsonl"
    audit = AuditLog(path)
    assert audit.newest(10) == []
    for i in range(2500):
        audit.append(f"user{i % 3}", "mode", "local", "ok", f"set emergency; note: {i}")
    audit.append(None, "login", "local", "refused", "bad\nline\x00" + "x" * 5000)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2501 and all(json.loads(line)["action"] for line in lines)
    newest = audit.newest(1000)
    assert len(newest) == 1000 and newest[0]["user"] is None and newest[0]["outcome"] == "refused"
    assert "\n" not in newest[0]["detail"] and "\x00" not in newest[0]["detail"] and len(newest[0]["detail"]) == 1000
    assert [e["detail"] for e in newest[1:4]] == [f"set emergency; note: {i}" for i in (2499, 2498, 2497)]
    assert set(newest[0]) == {"time", "user", "action", "target", "outcome", "detail"}
    assert newest[0]["time"].endswith("Z")
    with path.open("a", encoding="utf-8") as handle:  # a damaged line (e.g. a crash mid-write) is skipped
        handle.write('{"time": "broken\n')
    assert audit.newest(2)[0]["outcome"] == "refused"
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'"x"', b"1", b"\xff", b"{" * 5000, b"NaN", b'{"a": NaN}',
                                  b'{"a": Infinity}', b"9" * 5000, b"{'a': 1}", b'{"a":1,}'])
def test_bodies_that_are_not_a_json_object_are_refused(body: bytes) -> None:
    with pytest.raises(inputs.ApiError) as info:
        inputs.json_object(body)
    assert (info.value.status, info.value.code) == (400, "invalid_json")


def test_field_checks() -> None:
    assert inputs.json_object(b'{"confirm": true}') == {"confirm": True}
    for doc in ({}, {"confirm": "true"}, {"confirm": 1}, {"confirm": False}):
        with pytest.raises(inputs.ApiError, match="confirm"):
            inputs.require_confirm(doc)
    assert inputs.note({}) == "" and inputs.note({"note": None}) == "" and inputs.note({"note": " ok\n"}) == "ok"
    for bad in (1, ["x"], {"a": 1}, "x" * 501, "a\x00b", "a\x1bb", "\ud800"):
        with pytest.raises(inputs.ApiError):
            inputs.note({"note": bad})
    assert inputs.choice({"mode": None}, "mode", ("normal",), nullable=True) is None
    for bad in ({"mode": "NORMAL"}, {"mode": 1}, {}, {"mode": ["normal"]}):
        with pytest.raises(inputs.ApiError):
            inputs.choice(bad, "mode", ("normal",))
    assert inputs.id_list({"ids": ["a", "b", "a"]}) == ["a", "b"]
    for bad in ([], None, "a", [1], [""], [" "], ["x" * 301], ["a\x00"], ["a"] * 501, [None]):
        with pytest.raises(inputs.ApiError):
            inputs.id_list({"ids": bad})
    assert inputs.iso_ms("1970-01-01T00:00:01Z", "since") == 1000
    assert inputs.iso_ms("1970-01-01T09:00:01+09:00", "since") == 1000 and inputs.iso_ms(None, "x") is None
    for bad in ("2026-11-22T09:00:00", "yesterday", "", "9999-99-99T00:00:00Z"):
        with pytest.raises(inputs.ApiError):
            inputs.iso_ms(bad, "since")
    assert inputs.audit_limit(None) == 100 and inputs.audit_limit("1000") == 1000
    for bad in ("0", "1001", "-1", "1e3", "", "٣", "9" * 50):
        with pytest.raises(inputs.ApiError):
            inputs.audit_limit(bad)
    assert inputs.query_choice(None, "status", ("open", "all"), "open") == "open"
    with pytest.raises(inputs.ApiError):
        inputs.query_choice("OPEN", "status", ("open", "all"), "open")


def _walk(node: Any, doc: dict[str, Any]) -> list[str]:
    refs = []
    if isinstance(node, dict):
        if "$ref" in node:
            refs.append(node["$ref"])
        for value in node.values():
            refs += _walk(value, doc)
    elif isinstance(node, list):
        for value in node:
            refs += _walk(value, doc)
    return refs


def test_the_openapi_document_is_3_1_and_covers_every_api_route() -> None:
    doc = openapi_document("http://127.0.0.1:8765", "local")
    json.dumps(doc)
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "http://127.0.0.1:8765"}]
    assert set(doc["paths"]) == {"/api/session", "/api/nodes", "/api/mode", "/api/link", "/api/recovery",
                                 "/api/recovery/copy", "/api/conflicts", "/api/conflicts/{id}",
                                 "/api/conflicts/{id}/resolve", "/api/dead-letters", "/api/dead-letters/retry",
                                 "/api/audit", "/api/openapi.json"}
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for ref in _walk(doc, doc):  # every reference resolves
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path != "/api/openapi.json":
                assert "401" in op["responses"], path
            if method == "post":
                assert {"400", "403"} <= set(op["responses"]) and op["requestBody"]["required"], path
    schemas = {"$defs": doc["components"]["schemas"]}

    def valid(name: str, value: Any) -> bool:
        text = json.dumps(schemas).replace("#/components/schemas/", "#/$defs/")
        return Draft202012Validator({**json.loads(text), "$ref": f"#/$defs/{name}"}).is_valid(value)

    assert valid("ModeRequest", {"node": "local", "mode": None, "confirm": True})
    assert not valid("ModeRequest", {"node": "local", "mode": "normal"})
    assert not valid("ModeRequest", {"node": "elsewhere", "mode": "normal", "confirm": True})
    assert valid("CopyRequest", {"ids": ["local/meta/documents/x"], "confirm": True})
    assert not valid("CopyRequest", {"ids": [], "confirm": True})
    assert valid("Audit", {"entries": [{"time": "t", "user": None, "action": "login", "target": "local",
                                        "outcome": "refused", "detail": "x"}]})
