"""The reference API over HTTP on the session stack: bearer tokens of each node's Keycloak realm, the same result
as ``ReferenceApi.call``, X-Hybridmode on every answer (the side's mode on the cloud, ``<mode>-fa`` at the hospital:
``normal`` / ``normal-fa`` on a quiet stack; the session stack may still be recovering from an earlier test's
outage, so each answer is checked against the side's mode state), 401 and no data without a valid token, and no
500 for any malformed request."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from connectors.keycloak.admin import accounts_for, login
from connectors.reference_api.service import ReferenceApi
from infra.local.process import free_port
from infra.local.stack import Stack, components
from streams.apply.mode_state import current_mode
from streams.core.modes import hybridmode
from streams.runtime.connections import dsn
from streams.runtime.settings import Settings
from tests.support import keycloak_scenarios as sc
from tests.support.helpers import platsync, wait_for
from tests.unit.test_reference_api_http import BAD_AUTH, BAD_BODIES, BAD_PATHS

pytestmark = pytest.mark.e2e

#: The seed's values (003, section 5(2)): the cloud answers its mode, the hospital the ``-fa`` form.
SIDE_VALUES = {"local": ("normal-fa", "emergency-fa", "recovery-fa"), "remote": ("normal", "emergency", "recovery")}


def expected_header(settings: Settings, side: str) -> str:
    """What ``side`` must answer now: its mode state's value in the seed's form for that side."""
    value = hybridmode(side, current_mode(settings, side))
    assert value in SIDE_VALUES[side]
    return value
DOCUMENT = {"doc_type": "referral", "title": "紹介状", "media_type": "text/plain", "content_text": "所見",
            "signed_by": "dr-http"}


def base(settings: Settings, side: str) -> str:
    return f"http://{settings.host}:{settings.api_port(side)}"


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    """An access token of each node's realm, for a user the test creates there (direct grant, scope openid)."""
    s = stack.settings
    out = {}
    for side in ("local", "remote"):
        username, password = sc.new_username("http"), sc.new_password()
        accounts_for(s, side).create_user(sc.with_password(sc.profile(username), password))
        out[side] = login(s.keycloak_url(side), s.keycloak_realm, username, password)["access_token"]
    return out


def post(settings: Settings, side: str, api_id: str, body: Any = None, token: str | None = None,
         data: bytes | None = None, path: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(base(settings, side) + (path or f"/api/v1/{api_id}"), json=body if data is None else None,
                         data=data, headers=headers, timeout=30)


def staff_codes(settings: Settings, side: str, code: str) -> int:
    engine = create_engine(dsn(settings, side, "meta", "app"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM staff WHERE staff_code = :c"), {"c": code}).scalar())
    finally:
        engine.dispose()


def test_the_stack_runs_one_api_server_per_node(stack: Stack) -> None:
    names = {c.name for c in components(stack.settings) if c.kind == "api"}
    assert names == {"api-local", "api-remote"} and all(stack.running()[n] for n in names)


@pytest.mark.parametrize("side", ["local", "remote"])
def test_a_document_api_over_http_answers_like_reference_api_call(stack: Stack, tokens: dict[str, str],
                                                                  side: str) -> None:
    s = stack.settings
    # The header follows the side's mode state (it may change while an earlier test's outage settles).
    assert wait_for(lambda: requests.get(base(s, side) + "/healthz", timeout=5).headers["X-Hybridmode"]
                    == expected_header(s, side), 30)
    payload = {"documents": [{**DOCUMENT, "patient_id": f"p-http-{uuid.uuid4().hex[:8]}"}]}
    r = post(s, side, "PRV_DOC_006", payload, tokens[side])
    assert r.status_code == 200, r.text
    assert r.headers["X-Hybridmode"] == expected_header(s, side)
    over_http = r.json()
    with ReferenceApi(s, side) as api:
        in_process = api.call("PRV_DOC_006", {"documents": [{**DOCUMENT, "patient_id": "p-http-direct"}]})
    assert set(over_http) == set(in_process) == {"api", "side", "call_id", "written", "txids"}
    assert (over_http["api"], over_http["side"]) == ("PRV_DOC_006", side)
    assert {store: set(tables) for store, tables in over_http["written"].items()} == \
        {store: set(tables) for store, tables in in_process["written"].items()}
    assert set(over_http["txids"]) == set(in_process["txids"])
    (doc_id,) = over_http["written"]["meta"]["documents"]
    approved = post(s, side, "PRV_DOC_009", {"documents": [{"id": doc_id, "approved_by": "dr-http"}]}, tokens[side])
    assert approved.status_code == 200 and approved.json()["written"]["meta"]["documents"] == [doc_id]
    # Errors carry the header too, and the message platsync call prints for the same payload.
    missing = post(s, side, "PRV_DOC_008", {"ids": [str(uuid.uuid4())]}, tokens[side])
    assert missing.status_code == 409 and missing.json()["error"] == "refused"
    assert missing.headers["X-Hybridmode"] == expected_header(s, side)
    bad = post(s, side, "PRV_DOC_006", {"documents": [{**DOCUMENT}]}, tokens[side])
    assert (bad.status_code, bad.json()["error"]) == (422, "payload")
    assert bad.json()["message"] == "PRV_DOC_006 payload: documents[0].patient_id: missing; expected a non-empty string"
    assert bad.headers["X-Hybridmode"] == expected_header(s, side)
    doc = requests.get(base(s, side) + "/api/v1/openapi.json", timeout=10)
    assert doc.status_code == 200 and doc.headers["X-Hybridmode"] == expected_header(s, side)
    assert tuple(doc.json()["components"]["headers"]["XHybridmode"]["schema"]["enum"]) == SIDE_VALUES[side]


@pytest.mark.parametrize("side", ["local", "remote"])
def test_no_token_or_a_bad_one_gets_401_and_writes_nothing(stack: Stack, tokens: dict[str, str], side: str) -> None:
    s = stack.settings
    code = f"S-http-{uuid.uuid4().hex[:8]}"
    staff = {"staff_code": code, "display_name": "看護 師子", "role": "nurse"}
    other = "remote" if side == "local" else "local"
    for token in (None, "not-a-token", tokens[side][:-6] + "AAAAAA", tokens[other]):
        r = post(s, side, "PRV_STF_001", staff, token)
        assert r.status_code == 401, (token is None, r.status_code, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.headers["X-Hybridmode"] == expected_header(s, side)
        assert set(r.json()) == {"error", "message", "request_id"}
    assert staff_codes(s, side, code) == 0
    assert post(s, side, "PRV_STF_001", staff, tokens[side]).status_code == 200
    assert staff_codes(s, side, code) == 1


def test_fuzzed_requests_never_answer_500(stack: Stack, tokens: dict[str, str]) -> None:
    s = stack.settings
    apis = ["PRV_STF_001", "PRV_DOC_006", "PRV_DOC_007", "PRV_DOC_008", "PRV_ATH_001", "PRV_PAT_001",
            "PRV_STF_003", "PRV_USR_001", "PRV_DOC_009"]
    seen = 0
    for side in ("local", "remote"):
        for i, body in enumerate(BAD_BODIES):
            api_id = apis[i % len(apis)]
            with_token = post(s, side, api_id, data=body, token=tokens[side])
            without = post(s, side, api_id, data=body)
            assert 400 <= with_token.status_code < 500, (side, api_id, body[:60], with_token.text)
            assert without.status_code == 401 and "written" not in without.json()
            assert with_token.headers["X-Hybridmode"] == without.headers["X-Hybridmode"] == expected_header(s, side)
            seen += 2
        for path in BAD_PATHS:
            r = post(s, side, "", data=b"{}", token=tokens[side], path=path)
            assert 400 <= r.status_code < 500, (path, r.status_code)
            assert r.headers["X-Hybridmode"] == expected_header(s, side), path
            seen += 1
        for auth in BAD_AUTH:
            r = requests.post(base(s, side) + "/api/v1/PRV_STF_001", data=b"{}", timeout=30,
                              headers={} if auth is None else {"Authorization": auth.encode("utf-8")})
            assert r.status_code == 401 and r.headers["X-Hybridmode"] == expected_header(s, side), (auth, r.status_code)
            seen += 1
    assert seen >= 100


def test_a_server_without_the_state_file_follows_the_mode_server_over_http(stack: Stack, tmp_path: Path) -> None:
    """As in a Kubernetes pod (``--mode-url``, infra/k8s/api.py): a data dir of its own, no mode state file;
    X-Hybridmode follows the hospital's mode server, through a mode set by hand and back."""
    s = stack.settings
    port = free_port(s.host)
    mode_url = f"http://{s.host}:{s.mode_port('local')}/healthz"
    log = (tmp_path / "api.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "connectors.reference_api.http_server", "--side", "local",
                               "--data-dir", str(tmp_path / "data"), "--port", str(port), "--mode-url", mode_url],
                              cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

    def header() -> str | None:
        try:
            return requests.get(f"http://{s.host}:{port}/healthz", timeout=5).headers.get("X-Hybridmode")
        except requests.ConnectionError:
            return None

    try:
        assert wait_for(lambda: header() == expected_header(s, "local"), 30), header()
        assert platsync(s, "mode", "set", "emergency", "--side", "local", "--note", "pod test").returncode == 0
        try:
            assert wait_for(lambda: header() == "emergency-fa", 10), header()
            assert not (tmp_path / "data" / "mode").exists()  # it read no state file of its own
        finally:
            assert platsync(s, "mode", "set", "--clear", "--side", "local").returncode == 0
        assert wait_for(lambda: header() == expected_header(s, "local") != "emergency-fa", 30), header()
    finally:
        server.terminate()
        server.wait(30)
        log.close()
