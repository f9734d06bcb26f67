"""The console's own small HTML pages (login refused, logged out) and the security headers of every answer."""

from __future__ import annotations

from html import escape

from aiohttp import web

#: Sent with every answer: the page loads nothing from elsewhere, is never framed, leaks no URL (the callback's
#: carries a one-time code) and is never cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def page(status: int, title: str, text: str, link: tuple[str, str] | None = None) -> web.Response:
    """A minimal HTML page (no script, no style) in Japanese and English."""
    anchor = f'<p><a href="{escape(link[0])}" data-testid="page-link">{escape(link[1])}</a></p>' if link else ""
    body = (f'<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
            f'<body><h1 data-testid="page-title">{escape(title)}</h1>'
            f'<p data-testid="page-message">{escape(text)}</p>{anchor}</body></html>')
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def refused_page(status: int, reason: str) -> web.Response:
    """A login that did not succeed, and why (never a token or a code)."""
    return page(status, "ログインできません / Login refused", reason, ("/login", "もう一度ログイン / Log in again"))


def logged_out_page() -> web.Response:
    """After Keycloak's logout."""
    return page(200, "ログアウトしました / Logged out", "コンソールからログアウトしました。 You are logged out of "
                "the console.", ("/", "コンソールへ / To the console"))


def missing_page() -> web.Response:
    """The console's page files are not installed."""
    return page(503, "PLAT Sync console", "the console's page (streams/console/static/index.html) is not "
                "installed; the JSON API is at /api (see /api/openapi.json)")
