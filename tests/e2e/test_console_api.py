"""The operator console's JSON API on the session's running stack: the real console process, a real login through
the hospital realm of the Keycloak stand-in (authorization code flow with PKCE, tests/support/oidc_browser.py),
the documented answers compared with what the stores, the broker and the mode state files hold, refusals (no
session, not an operator, CSRF, confirmation) and a fuzz table of bad requests (never a 500, never data without a
session). The link is not cut here (tests/e2e/test_console_browser.py does); the mode override set here is cleared.
The stack may be in any mode (earlier tests leave it in recovery with open conflicts)."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from infra.local.stack import Stack
from streams.apply.conflicts import collect
from streams.apply.mode_state import read_mode, read_override
from streams.console.audit import audit_path
from streams.core.model import ROUTES, SIDES
from streams.ops.dlq import read_dead_letters
from streams.ops.recovery_report import last_outage
from streams.runtime.settings import Settings
from tests.support.console_process import realm_user, running_console
from tests.support.helpers import wait_for
from tests.support.oidc_browser import Browser

pytestmark = pytest.mark.e2e

UNKNOWN_CONFLICT = "0123456789abcdef0123456789abcdef"
API_GETS = ["/api/session", "/api/nodes", "/api/recovery", "/api/conflicts", f"/api/conflicts/{UNKNOWN_CONFLICT}",
            "/api/dead-letters", "/api/audit", "/api/nope", "/api/conflicts/../nodes", "/api/%2e%2e/healthz"]
API_POSTS = ["/api/mode", "/api/link", "/api/recovery/copy", f"/api/conflicts/{UNKNOWN_CONFLICT}/resolve",
             "/api/dead-letters/retry"]
BAD_BODIES: list[bytes] = [
    b"", b" ", b"null", b"true", b"1", b"1e999", b'"x"', b"[]", b"[{}]", b"{}", b'{"confirm": true}', b"{'a':1}",
    b"\xff\xfe", b"\xef\xbb\xbf{}", b'{"a":"\\ud800"}', b"\x00", b'{"a":1,}', b"NaN", b'{"confirm": NaN}',
    b"9" * 5000, b"{" * 5000, b'{"confirm": "true"}', b'{"confirm": 1}',
    b'{"confirm": true, "node": 1, "mode": "normal"}', b'{"confirm": true, "node": "local", "mode": "NORMAL"}',
    b'{"confirm": true, "node": "../local", "mode": null, "note": "x"}',
    b'{"confirm": true, "node": "local", "mode": "normal", "note": ' + b'"' + b"x" * 600 + b'"}',
    b'{"confirm": true, "node": "local", "mode": "normal", "note": "\\u0000"}',
    b'{"confirm": true, "action": "sideways"}', b'{"confirm": true, "action": ["down"]}',
    b'{"confirm": true, "ids": []}', b'{"confirm": true, "ids": "x"}', b'{"confirm": true, "ids": [1, 2]}',
    b'{"confirm": true, "ids": [null]}', b'{"confirm": true, "ids": ["' + b"a" * 400 + b'"]}',
    b'{"confirm": true, "ids": ' + json.dumps(["x"] * 600).encode() + b"}",
    b'{"confirm": true, "note": {"a": 1}}', b'{"__proto__": {"confirm": true}}',
]
BAD_GETS = ["/api/recovery?since=yesterday", "/api/recovery?since=2026-01-01T00:00:00",
            "/api/recovery?until=2026-01-01T00:00:00Z",
            "/api/recovery?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "/api/recovery?since=" + "9" * 3000, "/api/conflicts?status=bogus", "/api/conflicts?status=",
            "/api/conflicts/zz-not-hex", "/api/conflicts/" + "a" * 200, "/api/conflicts/%00",
            f"/api/conflicts/{UNKNOWN_CONFLICT}", "/api/dead-letters?status=OPEN", "/api/audit?limit=0",
            "/api/audit?limit=1001", "/api/audit?limit=-5", "/api/audit?limit=abc", "/api/nope", "/api/",
            "/api/session/extra", "/api/nodes/local", "/static/../streams/console/server.py",
            "/static/%2e%2e/server.py", "/static/..%2fserver.py", "/static/.hidden", "/" + "a" * 3000]


@dataclass
class Console:
    """The running console and its two users: an operator and a realm user who is not one."""

    url: str
    settings: Settings
    operator: tuple[str, str]
    stranger: tuple[str, str]
    log: Path


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of closed connections is no use
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def console(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console process on a free port with a new operator (and a non-operator) in the login realm; stopped
    at the end: it exits 0, frees its port and logged no password or code."""
    s = stack.settings
    with realm_user(s, "op") as operator, realm_user(s, "visitor") as stranger:
        # The operator named in capitals: usernames are matched as Keycloak keeps them, lower-cased.
        with running_console(s, [operator[0].upper()], tmp_path_factory.mktemp("console-api")) as running:
            yield Console(running.url, s, operator, stranger, running.log)
        assert running.process.returncode == 0, running.log.read_text(encoding="utf-8", errors="replace")
        assert wait_for(lambda: _port_free(s.host, running.port), 10), f"port {running.port} still taken"
        text = running.log.read_text(encoding="utf-8", errors="replace")
        assert operator[1] not in text and stranger[1] not in text and "code=" not in text


def log_in(console: Console, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """The whole login as a browser does it: /login, Keycloak's form, back to /callback (not followed further)."""
    s = console.settings
    http = requests.Session()
    started = http.get(f"{console.url}/login", allow_redirects=False, timeout=10)
    assert started.status_code == 302, started.text
    auth = started.headers["Location"]
    assert auth.startswith(f"{s.keycloak_url(s.console_login_node)}/realms/{s.keycloak_realm}/protocol/"
                           "openid-connect/auth?") and "code_challenge_method=S256" in auth
    browser = Browser(s.keycloak_url(s.console_login_node), s.keycloak_realm, redirect_uri=f"{console.url}/callback",
                      http=http)
    page = http.get(auth, timeout=10)
    assert page.status_code == 200, page.text[:300]
    answer = browser.submit(page, username, password)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(f"{console.url}/callback?")
    return http, http.get(answer.headers["Location"], allow_redirects=False, timeout=30)


@pytest.fixture(scope="module")
def operator(console: Console) -> tuple[requests.Session, dict[str, str]]:
    """A logged-in operator's HTTP session and the CSRF header of its console session."""
    http, back = log_in(console, *console.operator)
    assert back.status_code == 302 and back.headers["Location"] == "/", back.text[:300]
    session = http.get(f"{console.url}/api/session", timeout=10).json()
    return http, {"X-CSRF-Token": session["csrf"]}


def test_without_a_session_every_api_route_answers_401_and_no_data(console: Console) -> None:
    for path in API_GETS:
        r = requests.get(console.url + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
        assert set(r.json()) == {"error", "message", "login"} and r.json()["error"] == "login_required"
    for path in API_POSTS:
        r = requests.post(console.url + path, json={"confirm": True, "node": "local", "mode": "normal",
                                                    "action": "down", "ids": ["x"]}, timeout=10)
        assert r.status_code == 401 and set(r.json()) == {"error", "message", "login"}, path
    r = requests.get(console.url + "/api/nodes", cookies={"platsync_console": "forged"}, timeout=10)
    assert r.status_code == 401
    doc = requests.get(console.url + "/api/openapi.json", timeout=10)
    assert doc.status_code == 200 and doc.json()["openapi"] == "3.1.0"
    page = requests.get(console.url + "/", timeout=10)
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_the_session_and_both_nodes(console: Console, operator: tuple[requests.Session, dict[str, str]]) -> None:
    http, _ = operator
    session = http.get(f"{console.url}/api/session", timeout=10).json()
    assert session["user"] == {"username": console.operator[0], "name": "花子 山田"}  # userinfo's name: first last
    assert session["login_node"] == "local" and session["expires_idle_s"] == 1800
    nodes = http.get(f"{console.url}/api/nodes", timeout=60)
    assert nodes.status_code == 200, nodes.text
    doc = nodes.json()
    assert set(doc) == {"time", "healthy", "open_conflicts", "errors", "link", "nodes"}
    assert doc["link"]["up"] is True and doc["link"]["cut_side"] is None
    assert [n["node"] for n in doc["nodes"]] == ["local", "remote"]
    for node in doc["nodes"]:
        side = node["node"]
        assert node["role"] == {"local": "hospital", "remote": "cloud"}[side]
        # the mode state file says the same (or, moments later, what the mode server decided since)
        assert node["mode"] == read_mode(console.settings, side)["mode"] or node["mode"] in (
            h["from"] for h in read_mode(console.settings, side).get("history", [])[-3:])
        assert node["hybridmode"] == (f"{node['mode']}-fa" if side == "local" else node["mode"])
        names = {p["name"] for p in node["processes"]}
        assert {f"pg-{side}", f"capture-{side}", f"mode-{side}"} <= names
        assert all(p["running"] and isinstance(p["pid"], int) for p in node["processes"]), node["processes"]
        assert isinstance(node["lag_ms"], int) and isinstance(node["lag_bytes"], int)
    remote = {p["name"] for p in doc["nodes"][1]["processes"]}
    assert {"broker", "link", "worker-local_to_remote"} <= remote
    assert "worker-remote_to_local" in {p["name"] for p in doc["nodes"][0]["processes"]}


def test_a_mode_override_set_and_cleared_through_the_api(console: Console,
                                                         operator: tuple[requests.Session, dict[str, str]]) -> None:
    http, csrf = operator
    s, node = console.settings, "remote"
    assert read_override(s, node) is None
    before = read_mode(s, node)["mode"]
    target = "normal" if before == "recovery" else "recovery"  # never emergency: no outage window of ours
    try:
        r = http.post(f"{console.url}/api/mode", json={"node": node, "mode": target, "note": "api test",
                                                       "confirm": True}, headers=csrf, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {"node": node, "mode": target, "applied": True, "message": r.json()["message"]}
        state = read_mode(s, node)
        assert state["mode"] == target and state["override"]["set_by"] == f"{console.operator[0]} (console)"
        assert state["override"]["note"] == "api test"
        shown = http.get(f"{console.url}/api/nodes", timeout=60).json()["nodes"][1]
        assert shown["override"] is True and shown["mode"] == target
    finally:
        cleared = http.post(f"{console.url}/api/mode", json={"node": node, "mode": None, "confirm": True},
                            headers=csrf, timeout=30)
    assert cleared.status_code == 200 and cleared.json()["applied"] is True, cleared.text
    assert read_override(s, node) is None and read_mode(s, node).get("override") is None


def test_conflicts_dead_letters_recovery_and_audit_answer_their_documented_shapes(
        console: Console, operator: tuple[requests.Session, dict[str, str]]) -> None:
    http, csrf = operator
    s, url = console.settings, console.url
    every = http.get(f"{url}/api/conflicts?status=all", timeout=60).json()
    assert set(every) == {"conflicts", "unreachable"} and every["unreachable"] == []
    assert [c["conflict_id"] for c in every["conflicts"]] == [c.conflict_id for c in collect(s, "all")[0]]
    opened = http.get(f"{url}/api/conflicts", timeout=60).json()["conflicts"]
    assert all(c["status"] == "open" for c in opened)
    for c in every["conflicts"][:3]:
        assert set(c) == {"conflict_id", "store", "table", "row_id", "winner", "rule", "detected_on", "status"}
        shown = http.get(f"{url}/api/conflicts/{c['conflict_id']}", timeout=60).json()
        assert {"local_row", "remote_row", "differing_fields", "detections"} <= set(shown)
    missing = http.get(f"{url}/api/conflicts/{UNKNOWN_CONFLICT}", timeout=60)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    r = http.post(f"{url}/api/conflicts/{UNKNOWN_CONFLICT}/resolve", json={"confirm": True}, headers=csrf, timeout=60)
    assert r.status_code == 404
    letters = http.get(f"{url}/api/dead-letters", timeout=120).json()
    assert [x["id"] for x in letters["dead_letters"]] == [x.id for x in read_dead_letters(s, list(ROUTES))]
    r = http.post(f"{url}/api/dead-letters/retry", json={"ids": ["local_to_remote:0:999999"], "confirm": True},
                  headers=csrf, timeout=120)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    recovery = http.get(f"{url}/api/recovery", timeout=120).json()
    assert set(recovery) == {"window", "message", "entries"}
    assert (recovery["window"] is None) == (last_outage(s) is None)
    given = http.get(f"{url}/api/recovery", params={"since": "2020-01-01T00:00:00Z"}, timeout=120).json()
    assert given["window"]["basis"] == "given" and given["window"]["start"].startswith("2020-01-01T00:00:00")
    for entry in given["entries"][:5]:
        assert entry["id"] == "/".join(entry[k] for k in ("side", "store", "table", "row_id"))
        assert entry["status"] in ("copied", "copyable", "not_copyable")
    nobody = f"local/meta/documents/{uuid.uuid4()}"
    copied = http.post(f"{url}/api/recovery/copy", json={"ids": [nobody], "confirm": True}, headers=csrf, timeout=120)
    assert copied.status_code == 200, copied.text
    assert [(x["id"], x["outcome"]) for x in copied.json()["results"]] == [(nobody, "refused")]
    audit = http.get(f"{url}/api/audit?limit=1000", timeout=10).json()["entries"]
    assert audit[0]["action"] == "recovery_copy" and audit[0]["user"] == console.operator[0]
    assert {"mode", "login"} <= {e["action"] for e in audit}
    assert all(set(e) == {"time", "user", "action", "target", "outcome", "detail"} for e in audit)
    assert len(http.get(f"{url}/api/audit?limit=2", timeout=10).json()["entries"]) == 2


def test_refusals_csrf_confirmation_and_a_non_operator(console: Console,
                                                       operator: tuple[requests.Session, dict[str, str]]) -> None:
    http, csrf = operator
    body = {"node": "local", "mode": "normal", "confirm": True}
    r = http.post(f"{console.url}/api/mode", json=body, timeout=10)
    assert (r.status_code, r.json()["error"]) == (403, "csrf")
    r = http.post(f"{console.url}/api/mode", json=body, headers={"X-CSRF-Token": "x" * 43}, timeout=10)
    assert r.status_code == 403
    r = http.post(f"{console.url}/api/mode", json={"node": "local", "mode": "normal"}, headers=csrf, timeout=10)
    assert (r.status_code, r.json()["error"]) == (400, "confirm_required")
    r = http.post(f"{console.url}/api/link", json={"action": "down"}, headers=csrf, timeout=10)
    assert (r.status_code, r.json()["error"]) == (400, "confirm_required")
    assert read_override(console.settings, "local") is None
    assert http.get(f"{console.url}/api/nodes", timeout=60).json()["link"]["up"] is True
    stranger, back = log_in(console, *console.stranger)
    assert back.status_code == 403 and "not an operator" in back.text
    assert "platsync_console" not in stranger.cookies
    assert stranger.get(f"{console.url}/api/session", timeout=10).status_code == 401
    entries = [json.loads(line) for line in audit_path(console.settings).read_text(encoding="utf-8").splitlines()]
    assert any(e["user"] == console.stranger[0] and e["action"] == "login" and e["outcome"] == "refused"
               and e["detail"] == "not an operator of this console" for e in entries)
    refused = [e["detail"] for e in entries if e["action"] in ("mode", "link") and e["outcome"] == "refused"]
    assert {"csrf", "confirm_required"} <= set(refused)


def test_fuzzed_requests_never_answer_500_nor_data_without_a_session(
        console: Console, operator: tuple[requests.Session, dict[str, str]]) -> None:
    http, csrf = operator
    url, seen = console.url, 0
    overrides = {side: read_override(console.settings, side) for side in SIDES}
    for path in API_POSTS:
        for body in BAD_BODIES:
            with_session = http.post(url + path, data=body, headers={**csrf, "Content-Type": "application/json"},
                                     timeout=60)
            without = requests.post(url + path, data=body, timeout=10)
            assert 400 <= with_session.status_code < 500, (path, body[:60], with_session.status_code,
                                                           with_session.text[:200])
            assert set(with_session.json()) == {"error", "message"}
            assert without.status_code == 401 and set(without.json()) == {"error", "message", "login"}
            seen += 2
        huge = http.post(url + path, data=b'{"confirm": true, "ids": ["' + b"x" * 400_000 + b'"]}',
                         headers=csrf, timeout=30)
        assert (huge.status_code, huge.json()["error"]) == (413, "too_large")
        wrong_method = http.get(url + path, timeout=10)
        assert wrong_method.status_code in (404, 405) and "error" in wrong_method.json()
        seen += 2
    for path in BAD_GETS:
        with_session = http.get(url + path, timeout=60)
        without = requests.get(url + path, timeout=10)
        assert 400 <= with_session.status_code < 500, (path, with_session.status_code, with_session.text[:200])
        assert 400 <= without.status_code < 500 and "server.py" not in without.text
        if path.startswith("/api/"):
            assert with_session.json()["error"] and without.status_code == 401
        seen += 2
    for header in ({"X-CSRF-Token": ""}, {"X-CSRF-Token": "é"}, {"X-CSRF-Token": "x" * 10_000}, {}):
        r = http.post(f"{url}/api/mode", data=b'{"node": "local", "mode": null, "confirm": true}', headers=header,
                      timeout=10)
        assert r.status_code == 403, header
        seen += 1
    assert {side: read_override(console.settings, side) for side in SIDES} == overrides  # nothing went through
    assert seen >= 400


def test_logout_ends_the_session(console: Console) -> None:
    http, back = log_in(console, *console.operator)
    assert back.status_code == 302
    csrf = http.get(f"{console.url}/api/session", timeout=10).json()["csrf"]
    refused = http.post(f"{console.url}/logout", data={"csrf": "wrong"}, allow_redirects=False, timeout=10)
    assert refused.status_code == 403 and http.get(f"{console.url}/api/session", timeout=10).status_code == 200
    out = http.post(f"{console.url}/logout", data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert out.status_code == 302 and "/protocol/openid-connect/logout?" in out.headers["Location"]
    ended = http.get(out.headers["Location"], allow_redirects=False, timeout=10)  # Keycloak ends its session
    assert ended.status_code == 302 and ended.headers["Location"].startswith(f"{console.url}/logged-out")
    assert http.get(ended.headers["Location"], timeout=10).status_code == 200
    r = http.get(f"{console.url}/api/session", timeout=10)
    assert r.status_code == 401 and "csrf" not in r.json()
