"""The HTML pages of the stand-in's browser login: the login form, Keycloak's error page, the logout page.

Minimal pages that carry what a client drives, with the element ids of Keycloak's default
(``keycloak.v2``) login theme: the form ``kc-form-login`` with the fields ``username`` and
``password``, the message ``input-error`` (a refused login) and ``kc-error-message`` (an error
page). Every value is HTML-escaped. The headers are those Keycloak sends with its login pages:
no caching, no framing by other sites, no referrer (the page URL holds the login session).
"""

from __future__ import annotations

from html import escape

from aiohttp import web

HEADERS = {
    "Cache-Control": "no-store, must-revalidate, max-age=0",
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-src 'self'; frame-ancestors 'self'; object-src 'none';",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page(status: int, title: str, body: str) -> web.Response:
    """An HTML page (``body`` is already escaped)."""
    text = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>\n'
            f"<body>\n{body}\n</body></html>\n")
    return web.Response(status=status, text=text, content_type="text/html", charset="utf-8", headers=HEADERS)


def error_page(status: int, message: str) -> web.Response:
    """Keycloak's error page ("We are sorry..."): used where redirecting to the client would be unsafe."""
    return page(status, "We are sorry...",
                f'<h1 id="kc-page-title">We are sorry...</h1>\n<p id="kc-error-message">{escape(message)}</p>')


def login_page(realm: str, action: str, username: str = "", error: str | None = None) -> web.Response:
    """The login form (HTTP 200, also when it shows why the last attempt was refused)."""
    message = f'<span id="input-error" aria-live="polite">{escape(error)}</span>\n' if error else ""
    form = (f'<form id="kc-form-login" action="{escape(action)}" method="post">\n'
            f'<label for="username">Username or email</label>\n'
            f'<input id="username" name="username" type="text" value="{escape(username)}" autofocus '
            f'autocomplete="username">\n'
            f'<label for="password">Password</label>\n'
            f'<input id="password" name="password" type="password" autocomplete="current-password">\n'
            f'<input id="kc-login" name="login" type="submit" value="Sign In">\n</form>')
    return page(200, f"Sign in to {realm}",
                f'<h1 id="kc-page-title">Sign in to your account</h1>\n{message}{form}')


def logged_out_page() -> web.Response:
    """The page Keycloak shows after a logout without a redirect back to the client."""
    return page(200, "Logging out", '<h1 id="kc-page-title">You are logged out</h1>')
