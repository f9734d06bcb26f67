"""The stand-in's browser login (OpenID Connect authorization code flow with PKCE, logout), over HTTP, no browser.

The stand-ins run as in ``test_keycloak_standin.py`` (its ``standins`` fixture: real subprocesses on
real PostgreSQL). The whole flow a real Keycloak shares runs there as the scenarios
``authorization_code_flow`` and ``authorization_request_errors``; here is what only the stand-in can
show: its loopback-only redirect URIs (it has no client registry), Keycloak's exact bodies where the
real test checks only the status, the discovery document, and a request log without secrets.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.e2e import test_keycloak_standin as kc_standin
from tests.e2e.test_keycloak_standin import Standins
from tests.support import keycloak_scenarios as sc
from tests.support.oidc_browser import CONSOLE_LOGGED_OUT, Browser, claims, pkce_pair, query

pytestmark = pytest.mark.e2e

standins = kc_standin.standins  # the same module-scoped fixture: two stand-ins on their own PostgreSQL


def user(standins: Standins, **changes: object) -> tuple[str, str, str]:
    """A new complete account in the local stand-in's realm: ``(id, username, password)``."""
    username, password = sc.new_username("web"), sc.new_password()
    user_id = standins.accounts("local").create_user(sc.with_password(sc.profile(username, **changes), password))
    return user_id, username, password


def test_the_whole_flow_with_loopback_redirects_and_keycloaks_exact_answers(standins: Standins) -> None:
    url, realm = standins.url("local"), standins.settings.keycloak_realm
    user_id, username, password = user(standins)
    for redirect_uri in ("http://localhost:51234/cb?tab=1", "http://[::1]:8/", "https://127.0.0.1/cb"):
        browser = Browser(url, realm, client_id="any-console", redirect_uri=redirect_uri)
        verifier, challenge = pkce_pair()
        got = browser.login(username, password, challenge, "st", "n-1")
        tokens = browser.exchange(got["code"], verifier).json()
        assert claims(tokens["id_token"])["aud"] == "any-console" and claims(tokens["access_token"])["sub"] == user_id
    # The code's bindings, each checked with Keycloak's answer (every failed attempt uses the code up).
    browser, (verifier, challenge) = Browser(url, realm), pkce_pair()
    failures = [({"redirect_uri": "http://127.0.0.1:8765/other"}, "Incorrect redirect_uri"),
                ({"client_id": "other-client"}, "Auth error: Found different client_id in clientSession"),
                ({"code_verifier": None}, "PKCE code verifier not specified"),
                ({"code_verifier": "short"}, "PKCE verification failed: Invalid code verifier")]
    for changes, description in failures:
        code = browser.login(username, password, challenge, "st")["code"]
        refused = browser.exchange(code, verifier, **changes)
        assert (refused.status_code, refused.json()) == (400, {"error": "invalid_grant",
                                                               "error_description": description}), changes
        assert browser.exchange(code, verifier).json()["error_description"] == "Code not valid"
    missing = requests.post(f"{browser.oidc}/token", timeout=10, data={
        "grant_type": "authorization_code", "client_id": browser.client_id, "redirect_uri": browser.redirect_uri})
    assert (missing.status_code, missing.json()["error_description"]) == (400, "Missing parameter: code")
    # Without PKCE (Keycloak's default client does not require it), and with the plain method.
    plain = browser.login(username, password, None, "st")["code"]
    assert browser.exchange(plain, None).status_code == 200
    plain_verifier, _ = pkce_pair()
    page = browser.authorize(state="st", code_challenge=plain_verifier, code_challenge_method="plain")
    code = query(browser.submit(page, username, password))["code"]
    assert browser.exchange(code, "x" * 43).json()["error_description"] == "PKCE verification failed: Code mismatch"
    page = browser.authorize(state="st", code_challenge=plain_verifier)
    code = query(browser.submit(page, username, password))["code"]
    assert browser.exchange(code, plain_verifier).status_code == 200  # no method: plain (RFC 7636 4.3)
    # Exact bodies the real test checks only by status: a reused code's and a logged-out session's tokens.
    code = browser.login(username, password, challenge, "st")["code"]
    tokens = browser.exchange(code, verifier).json()
    browser.exchange(code, verifier)  # second use
    gone = browser.userinfo(tokens["access_token"])
    description = "User session not found or doesn't have client attached on it"  # UserInfoEndpoint
    assert (gone.status_code, gone.json()) == (401, {"error": "invalid_request", "error_description": description})
    assert gone.headers["WWW-Authenticate"] == (f'Bearer realm="{realm}", error="invalid_request", '
                                                f'error_description="{description}"')
    assert browser.refresh(tokens["refresh_token"]).json()["error_description"] == "Session not active"


def test_redirect_uris_off_loopback_are_an_error_page_never_a_redirect(standins: Standins) -> None:
    url, realm = standins.url("local"), standins.settings.keycloak_realm
    for redirect_uri in ("https://console.hospital.example/cb", "http://127.0.0.1.evil.example/cb",
                         "http://127.0.0.1@evil.example/cb", "http://127.0.0.1/cb#x", "javascript:alert(1)", None):
        page = Browser(url, realm, redirect_uri=redirect_uri or "").authorize(
            redirect_uri=redirect_uri, response_type=None, state="st")  # even with another error
        assert page.status_code == 400 and "Location" not in page.headers, redirect_uri
        assert "Invalid parameter: redirect_uri" in page.text and page.headers["Content-Type"].startswith("text/html")
    kinds = {"unsupported_response_type": {"response_type": "bogus"},
             "unauthorized_client": {"client_id": "admin-cli"},
             "invalid_request": {"response_mode": "form_post"}}
    for error, params in kinds.items():
        assert query(Browser(url, realm).authorize(state="st", **params))["error"] == error


def test_login_form_messages_and_login_sessions(standins: Standins) -> None:
    url, realm = standins.url("local"), standins.settings.keycloak_realm
    browser = Browser(url, realm)
    _, incomplete, password = user(standins, firstName=None)
    page = browser.submit(browser.authorize(state="st"), incomplete, password)
    assert page.status_code == 200 and "You need to update your user profile to activate your account." in page.text
    assert f'value="{incomplete.lower()}"' in page.text.lower()  # the username is kept, like Keycloak's form
    assert "Invalid username or password." in browser.submit(page, "nobody-" + incomplete, password).text
    _, username, password = user(standins)
    page = browser.authorize(state="st")
    done = browser.submit(page, username, password)
    assert done.status_code == 302
    assert done.headers["Referrer-Policy"] == "no-referrer" and "no-store" in done.headers["Cache-Control"]
    replay = browser.submit(page, username, password)  # the login session ended with the code
    assert replay.status_code == 400 and "Your login attempt timed out" in replay.text
    unknown = requests.post(f"{url}/realms/{realm}/login-actions/authenticate", params={"session_code": "nope"},
                            data={"username": username, "password": password}, allow_redirects=False, timeout=10)
    assert unknown.status_code == 400 and "Location" not in unknown.headers
    escaped = Browser(url, realm, client_id='<script>"x"</script>').authorize(state="st")
    assert escaped.status_code == 200 and "<script>" not in escaped.text


def test_logout_variants(standins: Standins) -> None:
    url, realm = standins.url("local"), standins.settings.keycloak_realm
    _, username, password = user(standins)
    browser, (verifier, challenge) = Browser(url, realm), pkce_pair()
    tokens = browser.exchange(browser.login(username, password, challenge, "st")["code"], verifier).json()
    bad_target = browser.logout(id_token_hint=tokens["id_token"], post_logout_redirect_uri="https://evil.example/")
    assert (bad_target.status_code, "Invalid redirect uri" in bad_target.text) == (400, True)
    forged = tokens["id_token"][:-4] + ("AAAA" if not tokens["id_token"].endswith("AAAA") else "BBBB")
    assert "Invalid parameter: id_token_hint" in browser.logout(id_token_hint=forged).text
    other = browser.logout(id_token_hint=tokens["id_token"], client_id="other-client")
    assert other.status_code == 400 and "Invalid parameter: id_token_hint" in other.text
    assert browser.logout(id_token_hint=tokens["access_token"]).status_code == 400  # not an ID token
    assert browser.userinfo(tokens["access_token"]).status_code == 200  # none of these ended the session
    page = browser.logout(id_token_hint=tokens["id_token"])
    assert page.status_code == 200 and "You are logged out" in page.text
    assert browser.userinfo(tokens["access_token"]).status_code == 401
    # A client that knows no session any more (client_id, no hint) is sent back at once.
    back = browser.logout(client_id="platsync-console", post_logout_redirect_uri=CONSOLE_LOGGED_OUT, state="x")
    assert back.status_code == 302 and query(back) == {"state": "x"}
    posted = requests.post(f"{url}/realms/{realm}/protocol/openid-connect/logout", data={"client_id": "c"},
                           allow_redirects=False, timeout=10)
    assert posted.status_code == 200 and "You are logged out" in posted.text


def test_discovery_and_a_request_log_without_secrets(standins: Standins) -> None:
    url, realm = standins.url("local"), standins.settings.keycloak_realm
    config = requests.get(f"{url}/realms/{realm}/.well-known/openid-configuration", timeout=10).json()
    oidc = f"{url}/realms/{realm}/protocol/openid-connect"
    assert (config["authorization_endpoint"], config["end_session_endpoint"]) == (f"{oidc}/auth", f"{oidc}/logout")
    assert config["response_types_supported"] == ["code"]
    assert "authorization_code" in config["grant_types_supported"]
    assert config["code_challenge_methods_supported"] == ["plain", "S256"]
    _, username, password = user(standins)
    browser, (verifier, challenge) = Browser(url, realm), pkce_pair()
    state, nonce = uuid.uuid4().hex, uuid.uuid4().hex
    got = browser.login(username, password, challenge, state, nonce)
    tokens = browser.exchange(got["code"], verifier).json()
    log = standins.log("local")
    for secret in (password, got["code"], verifier, challenge, state, nonce, tokens["id_token"],
                   tokens["access_token"], tokens["refresh_token"]):
        assert secret not in log
    assert f"POST /realms/{realm}/login-actions/authenticate 302" in log
