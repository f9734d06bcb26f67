"""A browser without a browser: the OpenID Connect authorization code flow (with PKCE) driven over plain HTTP.

It does what a user's browser does between the operator console and Keycloak (or the stand-in):
opens the authorization URL, reads the login form (Keycloak's ``kc-form-login``), posts the
credentials with the cookies the server set, and stops at the redirect back to the client, whose
query (``code``, ``state``, ``session_state``, ``iss`` or ``error``) it returns. The token requests
are the console's own, made with :func:`exchange`, :func:`refresh` and :func:`userinfo`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

#: The console's client, registered in the real Keycloak test's realm (public, standard flow, PKCE optional)
#: with the redirect URIs ``http://127.0.0.1:8765/*``; the stand-in accepts any client on loopback URIs.
CONSOLE_CLIENT = "platsync-console"
CONSOLE_REDIRECT = "http://127.0.0.1:8765/callback"
CONSOLE_REDIRECT_PATTERN = "http://127.0.0.1:8765/*"
CONSOLE_LOGGED_OUT = "http://127.0.0.1:8765/logged-out"


def pkce_pair() -> tuple[str, str]:
    """``(verifier, S256 challenge)`` as RFC 7636 builds them."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def claims(jwt: str) -> dict[str, Any]:
    """The payload of a JWS, unverified (the test only reads what the server put in)."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class _LoginForm(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and values.get("id") == "kc-form-login":
            self.action = values.get("action")


def form_action(page: requests.Response) -> str:
    """The absolute URL the login form on ``page`` posts to."""
    parser = _LoginForm()
    parser.feed(page.text)
    assert parser.action, f"no login form (HTTP {page.status_code}): {page.text[:500]}"
    return urljoin(page.url, parser.action)


def query(answer: requests.Response) -> dict[str, str]:
    """The query parameters of a redirect's ``Location``."""
    assert answer.status_code in (302, 303), (answer.status_code, answer.text[:500])
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


@dataclass
class Browser:
    """One user agent (its own cookies) in front of ``url``'s realm ``realm``."""

    url: str
    realm: str
    client_id: str = CONSOLE_CLIENT
    redirect_uri: str = CONSOLE_REDIRECT
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def oidc(self) -> str:
        return f"{self.url}/realms/{self.realm}/protocol/openid-connect"

    def authorize(self, **params: str | None) -> requests.Response:
        """``GET .../auth`` with the console's parameters; ``params`` add or (``None``) drop some."""
        sent: dict[str, str | None] = {"client_id": self.client_id, "redirect_uri": self.redirect_uri,
                                       "response_type": "code", "scope": "openid profile email"}
        sent.update(params)
        return self.http.get(f"{self.oidc}/auth", params={k: v for k, v in sent.items() if v is not None},
                             allow_redirects=False, timeout=10)

    def submit(self, page: requests.Response, username: str, password: str) -> requests.Response:
        """Post the login form on ``page``."""
        return self.http.post(form_action(page), data={"username": username, "password": password},
                              allow_redirects=False, timeout=10)

    def login(self, username: str, password: str, challenge: str | None, state: str,
              nonce: str | None = None) -> dict[str, str]:
        """The whole login (PKCE with S256 when ``challenge`` is given); the redirect's query."""
        extra = {"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}
        page = self.authorize(state=state, nonce=nonce, prompt="login", **extra)
        assert page.status_code == 200, (page.status_code, page.headers.get("Location"), page.text[:500])
        answer = self.submit(page, username, password)
        assert answer.headers.get("Location", "").startswith(self.redirect_uri), (answer.status_code,
                                                                                answer.text[:500])
        return query(answer)

    def exchange(self, code: str, verifier: str | None, **changes: str | None) -> requests.Response:
        """``grant_type=authorization_code`` as the console sends it; ``changes`` alter the form."""
        form: dict[str, str | None] = {"grant_type": "authorization_code", "code": code,
                                       "redirect_uri": self.redirect_uri, "client_id": self.client_id,
                                       "code_verifier": verifier}
        form.update(changes)
        return requests.post(f"{self.oidc}/token", data={k: v for k, v in form.items() if v is not None},
                             timeout=10)

    def refresh(self, refresh_token: str) -> requests.Response:
        return requests.post(f"{self.oidc}/token", timeout=10, data={
            "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id})

    def userinfo(self, access_token: str) -> requests.Response:
        return requests.get(f"{self.oidc}/userinfo", headers={"Authorization": f"Bearer {access_token}"},
                            timeout=10)

    def logout(self, **params: str) -> requests.Response:
        """RP-initiated logout (``GET .../logout``) from a fresh user agent, as a console's back end would."""
        return requests.get(f"{self.oidc}/logout", params=params, allow_redirects=False, timeout=10)
