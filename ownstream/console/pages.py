"""Rendering console pages: Jinja2 templates with autoescaping, and the headers every page sends.

No page may be framed (clickjacking a consent button), cached, or leak its URL (which may hold a
sign-in link) through `Referer`. The CSP sets no `form-action`: approving a web-app request
redirects the form's browser on to the client's registered redirect URI, which Chromium would
otherwise block.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

templates = Environment(
    loader=PackageLoader("ownstream.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def message_page(
    request: Request,
    title: str,
    message: str,
    *,
    status_code: int = 200,
    refresh_to: str | None = None,
    csrf_token: str | None = None,
) -> HTMLResponse:
    """A page that only says something (an outcome, an error, how to sign in)."""
    return render(
        "message.html",
        status_code=status_code,
        title=title,
        message=message,
        refresh_to=refresh_to,
        csrf_token=csrf_token,
    )


def error_page(request: Request, message: str, *, status_code: int = 400) -> HTMLResponse:
    return message_page(request, "This request cannot go on", message, status_code=status_code)
