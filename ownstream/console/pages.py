"""Rendering console pages: Jinja2 templates with autoescaping, and the headers every page sends.

Scripts come only from this origin (`static/`: vendored htmx and `console.js`); every page
and form works without them.

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

from ownstream.auth import console

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
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


def owner_page(
    name: str, session_id: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page of the signed-in owner's console: the navigation, and the session's CSRF token
    for its forms."""
    return render(
        name,
        status_code=status_code,
        csrf_token=console.csrf_token(session_id),
        signed_in=True,
        **context,
    )


def message_page(
    request: Request,
    title: str,
    message: str,
    *,
    status_code: int = 200,
    refresh_to: str | None = None,
    csrf_token: str | None = None,
    back: str | None = None,
) -> HTMLResponse:
    """A page that only says something (an outcome, an error, how to sign in); `back` links
    to the page the owner came from."""
    return render(
        "message.html",
        status_code=status_code,
        title=title,
        message=message,
        refresh_to=refresh_to,
        csrf_token=csrf_token,
        signed_in=csrf_token is not None,
        back=back,
    )


def error_page(request: Request, message: str, *, status_code: int = 400) -> HTMLResponse:
    return message_page(request, "This request cannot go on", message, status_code=status_code)
