"""The Keycloak stand-in's browser-login rules that need no server: redirect URIs, PKCE, request checks, codes.

The whole flow over HTTP is in ``tests/e2e/test_keycloak_standin_oidc.py`` (and, the parts a real
Keycloak shares, ``tests/support/keycloak_scenarios.py``).
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from infra.local.keycloak_standin.oidc_login import (
    CODE_TTL_S,
    LOGIN_TTL_S,
    AuthRequest,
    LoginState,
    check_request,
    loopback_uri,
    pkce_failure,
    s256,
    with_params,
)

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B


@pytest.mark.parametrize("uri", [
    "http://127.0.0.1/callback", "http://127.0.0.1:8765/callback?x=1", "https://localhost:9/cb",
    "http://[::1]:4000/", "http://LOCALHOST:80/cb",
])
def test_loopback_redirect_uris_are_accepted(uri: str) -> None:
    assert loopback_uri(uri)


@pytest.mark.parametrize("uri", [
    None, "", "https://console.hospital.example/cb", "http://127.0.0.1.evil.example/cb",
    "http://127.0.0.1@evil.example/cb", "http://user@127.0.0.1/cb", "http://127.0.0.1/cb#frag",
    "ftp://127.0.0.1/cb", "javascript://127.0.0.1/%0aalert(1)", "http://127.0.0.1:99999/cb",
    "http://127.0.0.2/cb", "//127.0.0.1/cb", "http://[::1/cb", "http://127.0.0.1/cb\r\nSet-Cookie: x=1",
    "http://127.0.0.1/c b", "http://127.0.0.1/cb\t",
])
def test_other_redirect_uris_are_refused(uri: str | None) -> None:
    assert not loopback_uri(uri)


def test_with_params_appends_to_the_query() -> None:
    assert with_params("http://127.0.0.1/cb", {"code": "a b", "state": None}) == "http://127.0.0.1/cb?code=a+b"
    assert with_params("http://127.0.0.1/cb?x=1", {"state": "s&t"}) == "http://127.0.0.1/cb?x=1&state=s%26t"


def test_s256_is_rfc_7636s_example() -> None:
    assert s256(VERIFIER) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    digest = hashlib.sha256(VERIFIER.encode()).digest()
    assert s256(VERIFIER) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_pkce_verification_answers_as_keycloak() -> None:
    challenge = s256(VERIFIER)
    assert pkce_failure(challenge, "S256", VERIFIER) is None
    assert pkce_failure(VERIFIER, "plain", VERIFIER) is None
    assert pkce_failure(challenge, "S256", VERIFIER[:-1] + "x") == "PKCE verification failed: Code mismatch"
    assert pkce_failure(challenge, "S256", None) == "PKCE code verifier not specified"
    assert pkce_failure(challenge, "S256", "short") == "PKCE verification failed: Invalid code verifier"
    assert pkce_failure(challenge, "S256", VERIFIER + "!") == "PKCE verification failed: Invalid code verifier"
    assert pkce_failure(None, None, None) is None
    assert pkce_failure(None, None, VERIFIER) == ("PKCE code verifier specified but challenge not present in "
                                                  "authorization")


def request(**changes: str | None) -> dict[str, str]:
    params = {"client_id": "console", "redirect_uri": "http://127.0.0.1/cb", "response_type": "code",
              "scope": "openid profile", "state": "st", "nonce": "n", "code_challenge": s256(VERIFIER),
              "code_challenge_method": "S256"}
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


def test_a_good_request_is_accepted() -> None:
    assert check_request(request()) == AuthRequest("console", "http://127.0.0.1/cb", "openid profile", "st", "n",
                                                   s256(VERIFIER), "S256")
    plain = check_request(request(code_challenge=VERIFIER, code_challenge_method=None))
    assert isinstance(plain, AuthRequest) and plain.code_challenge_method == "plain"  # RFC 7636 4.3
    bare = check_request(request(code_challenge=None, code_challenge_method=None, scope=None, state=None))
    assert isinstance(bare, AuthRequest) and bare.code_challenge is None and bare.scope == ""


@pytest.mark.parametrize(("changes", "error"), [
    ({"response_type": None}, ("invalid_request", "Missing parameter: response_type")),
    ({"response_type": "token"}, ("unauthorized_client", "Client is not allowed to initiate browser login with "
                                  "given response_type. Implicit flow is disabled for the client.")),
    ({"response_type": "bogus"}, ("unsupported_response_type", None)),
    ({"response_mode": "fragment"}, ("invalid_request", "Invalid parameter: response_mode")),
    ({"client_id": "admin-cli"}, ("unauthorized_client", "Client is not allowed to initiate browser login with "
                                  "given response_type. Standard flow is disabled for the client.")),
    ({"scope": "openid offline_access"}, ("invalid_scope", "Invalid scopes: openid offline_access")),
    ({"code_challenge": None}, ("invalid_request", "Missing parameter: code_challenge")),
    ({"code_challenge_method": "S512"}, ("invalid_request", "Invalid parameter: code_challenge_method")),
    ({"code_challenge": "too-short"}, ("invalid_request", "Invalid parameter: code_challenge")),
])
def test_bad_requests_get_keycloaks_error(changes: dict[str, str | None], error: tuple[str, str | None]) -> None:
    assert check_request(request(**changes)) == error


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def auth_request() -> AuthRequest:
    checked = check_request(request())
    assert isinstance(checked, AuthRequest)
    return checked


def test_a_code_is_used_once_and_a_second_use_ends_its_session() -> None:
    state = LoginState()
    login_id = state.start_login(auth_request())
    assert state.login(login_id) == auth_request()
    request_, code = state.issue_code(login_id, "user-1", "sid-1")
    assert request_ == auth_request() and state.login(login_id) is None  # the login session is over
    taken = state.take_code(code)
    assert taken is not None and (taken.user_id, taken.session_id) == ("user-1", "sid-1")
    assert state.active("sid-1")
    assert state.take_code(code) is None and not state.active("sid-1")  # reuse: Keycloak detaches the session
    assert state.take_code("never-issued") is None


def test_codes_and_login_sessions_expire() -> None:
    clock = Clock()
    state = LoginState(clock)
    _, code = state.issue_code(state.start_login(auth_request()), "user-1", "sid-1")
    clock.t += CODE_TTL_S + 1
    taken = state.take_code(code)
    assert taken is not None and state.expired(taken)  # answered "Code is expired"
    _, late = state.issue_code(state.start_login(auth_request()), "user-1", "sid-2")
    clock.t += 3 * CODE_TTL_S
    assert state.take_code(late) is None  # long gone: "Code not valid"
    login_id = state.start_login(auth_request())
    clock.t += LOGIN_TTL_S
    assert state.login(login_id) is None


def test_logout_ends_only_its_session() -> None:
    state = LoginState()
    state.end_session("sid-1")
    assert not state.active("sid-1") and state.active("sid-2")
