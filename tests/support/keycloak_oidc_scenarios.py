"""Scenarios of the OpenID Connect endpoints an operator console relies on (userinfo, the authorization code
flow with PKCE, logout), run against the Keycloak stand-in and, where Docker is available, the real Keycloak
(tests/e2e/test_keycloak_standin.py, tests/e2e/test_keycloak_real.py); each takes (url, realm, admin user,
admin password), as those of :mod:`tests.support.keycloak_scenarios` do."""

from __future__ import annotations

import uuid

import requests

from connectors.keycloak.admin import login
from tests.support.keycloak_scenarios import Scenario, accounts, new_password, new_username, profile, with_password
from tests.support.oidc_browser import CONSOLE_CLIENT, CONSOLE_LOGGED_OUT, Browser, claims, pkce_pair, query


def userinfo_checks_tokens(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """The realm's OIDC userinfo endpoint, with which the reference API over HTTP checks bearer tokens: a valid
    token's claims; 401 with a Bearer challenge without a token, for a tampered one and once the user is disabled;
    403 insufficient_scope for a token without the openid scope (Keycloak 20+)."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("ui"), new_password()
    user_id = kc.create_user(with_password(profile(username), password))
    endpoint = f"{url}/realms/{realm}/protocol/openid-connect/userinfo"
    token = login(url, realm, username, password)["access_token"]  # python-keycloak asks for scope=openid

    def ask(header: str | None) -> requests.Response:
        return requests.get(endpoint, headers={"Authorization": header} if header else {}, timeout=10)

    ok = ask(f"Bearer {token}")
    assert ok.status_code == 200, ok.text
    claims = ok.json()
    assert claims["sub"] == user_id and claims["preferred_username"] == username.lower()
    assert claims["email"] == f"{username.lower()}@hospital.example"
    assert (claims["given_name"], claims["family_name"]) == ("花子", "山田")
    missing = ask(None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    header, payload, signature = token.split(".")
    tampered = ask(f"Bearer {header}.{payload}.{signature[::-1]}")
    assert tampered.status_code == 401 and 'error="invalid_token"' in tampered.headers["WWW-Authenticate"]
    plain = requests.post(f"{url}/realms/{realm}/protocol/openid-connect/token", timeout=10, data={
        "grant_type": "password", "client_id": "admin-cli", "username": username, "password": password})
    assert plain.status_code == 200 and "openid" not in plain.json()["scope"].split()
    no_scope = ask(f"Bearer {plain.json()['access_token']}")
    assert no_scope.status_code == 403 and 'error="insufficient_scope"' in no_scope.headers["WWW-Authenticate"]
    kc.disable_user(user_id)
    assert ask(f"Bearer {token}").status_code == 401


def authorization_code_flow(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """The operator console's login (authorization code flow with PKCE S256) and logout, over plain HTTP:
    a wrong password shows the form again; the code comes back with state, session_state and iss; it is
    exchanged once for tokens (an ID token with the nonce, for the client); a second use is refused and ends
    what the first gave; a wrong verifier is refused and uses the code up; a redirect URI the client may not
    use is an error page, never a redirect; logout ends the session for userinfo and refresh."""
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("oidc"), new_password()
    user_id = kc.create_user(with_password(profile(username), password))
    issuer = f"{url}/realms/{realm}"
    browser, (verifier, challenge) = Browser(url, realm), pkce_pair()
    state, nonce = uuid.uuid4().hex, uuid.uuid4().hex
    page = browser.authorize(state=state, nonce=nonce, code_challenge=challenge, code_challenge_method="S256")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"], page.text[:300]
    wrong = browser.submit(page, username, password + "x")
    assert wrong.status_code == 200 and "Invalid username or password." in wrong.text
    got = query(browser.submit(wrong, username, password))
    assert (got["state"], got["iss"]) == (state, issuer) and got["code"] and got["session_state"]
    answer = browser.exchange(got["code"], verifier)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"].lower() == "bearer" and {"openid", "profile", "email"} <= set(tokens["scope"].split())
    id_token = claims(tokens["id_token"])
    assert (id_token["iss"], id_token["sub"], id_token["aud"], id_token["nonce"]) == (issuer, user_id,
                                                                                     CONSOLE_CLIENT, nonce)
    assert id_token["sid"] == got["session_state"] == tokens["session_state"]
    info = browser.userinfo(tokens["access_token"])
    assert info.status_code == 200 and info.json()["sub"] == user_id, info.text
    assert browser.refresh(tokens["refresh_token"]).status_code == 200
    again = browser.exchange(got["code"], verifier)
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant", "error_description": "Code not valid"})
    assert browser.userinfo(tokens["access_token"]).status_code == 401  # the session lost this client
    detached = browser.refresh(tokens["refresh_token"])
    assert (detached.status_code, detached.json()["error"]) == (400, "invalid_grant")

    second, (verifier2, challenge2) = Browser(url, realm), pkce_pair()
    code = second.login(username, password, challenge2, "s2")["code"]
    mismatch = second.exchange(code, verifier)  # the first login's verifier
    assert (mismatch.status_code, mismatch.json()) == (400, {
        "error": "invalid_grant", "error_description": "PKCE verification failed: Code mismatch"})
    assert second.exchange(code, verifier2).json()["error_description"] == "Code not valid"

    evil = Browser(url, realm, redirect_uri="https://console.evil.example/callback").authorize(state="s")
    assert evil.status_code == 400 and "Location" not in evil.headers
    assert "Invalid parameter: redirect_uri" in evil.text

    third, (verifier3, challenge3) = Browser(url, realm), pkce_pair()
    tokens3 = third.exchange(third.login(username, password, challenge3, "s3", nonce)["code"], verifier3).json()
    assert third.userinfo(tokens3["access_token"]).status_code == 200
    out = third.logout(id_token_hint=tokens3["id_token"], post_logout_redirect_uri=CONSOLE_LOGGED_OUT, state="bye")
    assert out.status_code == 302 and out.headers["Location"].startswith(CONSOLE_LOGGED_OUT) and query(out) == {
        "state": "bye"}
    assert third.userinfo(tokens3["access_token"]).status_code == 401
    ended = third.refresh(tokens3["refresh_token"])
    assert (ended.status_code, ended.json()) == (400, {"error": "invalid_grant",
                                                       "error_description": "Session not active"})


def authorization_request_errors(url: str, realm: str, admin_user: str, admin_password: str) -> None:
    """How the authorization and logout endpoints refuse: an error page (HTTP 400) where the client cannot be
    trusted with a redirect, otherwise a redirect with error, error_description, state and iss; a disabled
    account or a pending required action is told on the page (HTTP 200), no code is issued."""
    browser = Browser(url, realm)
    issuer = f"{url}/realms/{realm}"
    no_client = browser.authorize(client_id=None)
    assert no_client.status_code == 400 and "Missing parameters: client_id" in no_client.text
    cases = [({"response_type": None}, "invalid_request", "Missing parameter: response_type"),
             ({"code_challenge": "x" * 43, "code_challenge_method": "S512"}, "invalid_request",
              "Invalid parameter: code_challenge_method"),
             ({"scope": "openid no-such-scope"}, "invalid_scope", "Invalid scopes: openid no-such-scope"),
             ({"prompt": "none"}, "login_required", None)]
    for params, error, description in cases:
        refused = query(browser.authorize(state="st", **params))
        assert (refused["error"], refused.get("error_description"), refused["state"], refused["iss"]) == (
            error, description, "st", issuer), params
    kc = accounts(url, realm, admin_user, admin_password)
    username, password = new_username("oidc-x"), new_password()
    user_id = kc.create_user(with_password(profile(username), password))
    kc.disable_user(user_id)
    disabled = browser.submit(browser.authorize(state="st"), username, password)
    assert disabled.status_code == 200 and "Account is disabled, contact your administrator." in disabled.text
    kc.update_user(user_id, {"enabled": True})
    kc.set_password(user_id, password, temporary=True)
    pending = Browser(url, realm)
    update = pending.submit(pending.authorize(state="st"), username, password)
    assert update.status_code == 200 and "Location" not in update.headers
    assert "You need to change your password to activate your account." in update.text
    missing = browser.logout(post_logout_redirect_uri=CONSOLE_LOGGED_OUT)
    assert missing.status_code == 400 and "Missing parameters: id_token_hint" in missing.text


OIDC_SCENARIOS: list[Scenario] = [userinfo_checks_tokens, authorization_code_flow, authorization_request_errors]
