"""The owner's browser side of client access: sign-in and sign-out, the consent page and the
device-code entry page; the session and CSRF checks every console page uses.

Pages need a console session (`auth/console.py`). The session cookie is `SameSite=Strict`, so
a browser arriving from a client's site (a cross-site navigation) does not send it: such a
request gets a page that reloads itself once from here, a same-site navigation that does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from ownstream.api.deps import home, public_url
from ownstream.auth import console
from ownstream.auth.authorizations import approve, client_name, deny, status_of
from ownstream.console.pages import error_page, message_page, render
from ownstream.errors import OwnstreamError
from ownstream.grants.issue import connections_with_stream
from ownstream.home import Home
from ownstream.store.auth import PendingAuthorization
from ownstream.store.base import Store

router = APIRouter(include_in_schema=False)  # browser pages, not API operations
RESUME = "resume"
FLOW_LABELS = {"code": "web app", "device": "device", "agent": "agent / command line"}
EXPIRY_CHOICES = ((3600, "in 1 hour"), (86400, "in 1 day"), (7 * 86400, "in 7 days"),
                  (30 * 86400, "in 30 days"), (90 * 86400, "in 90 days"))


def current_session(request: Request) -> str | None:
    session_id = request.cookies.get(console.SESSION_COOKIE)
    if session_id and console.session_is_valid(home(request).store, session_id):
        return session_id
    return None


def signed_out(request: Request) -> Response:
    """Reload once from this page (the cookie is then sent); after that, explain sign-in."""
    if request.query_params.get(RESUME) != "1":
        query = urlencode([*request.query_params.multi_items(), (RESUME, "1")])
        return message_page(
            request,
            "One moment",
            "Checking that you are signed in…",
            refresh_to=f"{request.url.path}?{query}",
        )
    if request.cookies.get(console.SESSION_COOKIE):
        return message_page(
            request,
            "Your session has ended",
            "Sessions last 12 hours, and end when you sign out. Run `ownstream console-link` "
            "on the server for a fresh sign-in link, then come back to this page.",
            status_code=401,
        )
    return message_page(
        request,
        "Sign in first",
        "Open the sign-in link that `ownstream serve` printed, or run `ownstream console-link` "
        "on the server for a fresh one, then come back to this page.",
        status_code=401,
    )


@router.get(console.LOGIN_PATH)
def login(request: Request) -> Response:
    token = request.query_params.get("token")
    if not token:
        return message_page(
            request,
            "Sign in",
            "Open the one-time sign-in link that `ownstream serve` printed, or run "
            "`ownstream console-link` on the server for a fresh one.",
        )
    session_id = console.sign_in(home(request).store, token)
    if session_id is None:
        return message_page(
            request,
            "This link cannot be used",
            "The sign-in link is unknown, expired or was already used. Run "
            "`ownstream console-link` for a fresh one.",
            status_code=400,
        )
    target = console.safe_next(request.query_params.get("next")) or "/console/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        console.SESSION_COOKIE,
        session_id,
        max_age=console.SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=public_url(request).startswith("https://"),
    )
    return response


async def posted_form(request: Request) -> tuple[FormData, str] | Response:
    """A form post from a signed-in owner carrying this session's CSRF token, or the page to
    answer instead."""
    form = await request.form()
    session_id = await run_in_threadpool(current_session, request)
    if session_id is None:
        return signed_out(request)
    if not console.csrf_matches(session_id, form_text(form, "csrf_token")):
        return error_page(request, "The form expired; reload the page and try again.")
    return form, session_id


def console_page(request: Request, build: Callable[[str], Response]) -> Response:
    """A page for the signed-in owner (`build` gets the session id); a typed error becomes an
    HTML page, never the API's JSON envelope."""
    session_id = current_session(request)
    if session_id is None:
        return signed_out(request)
    try:
        return build(session_id)
    except OwnstreamError as exc:
        return _explained(request, session_id, "This cannot be shown", exc, "/console/")


def _explained(
    request: Request, session_id: str, title: str, error: OwnstreamError, back: str
) -> Response:
    return message_page(
        request,
        title,
        error.message,
        status_code=error.status,
        csrf_token=console.csrf_token(session_id),
        back=back,
    )


async def console_action(
    request: Request, act: Callable[[FormData, str], Response], back: str
) -> Response:
    """A form post of the signed-in owner with this session's CSRF token, acted on in the
    thread pool; a typed error becomes a page linking `back`."""
    posted = await posted_form(request)
    if isinstance(posted, Response):
        return posted
    form, session_id = posted

    def act_or_explain() -> Response:
        try:
            return act(form, session_id)
        except OwnstreamError as exc:
            return _explained(request, session_id, "This did not work", exc, back)

    response: Response = await run_in_threadpool(act_or_explain)
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    posted = await posted_form(request)
    if isinstance(posted, Response):
        return posted
    _, session_id = posted
    await run_in_threadpool(lambda: console.sign_out(home(request).store, session_id))
    response = message_page(request, "Signed out", "You are signed out of ownstream.")
    response.delete_cookie(console.SESSION_COOKIE, path="/")
    return response


def pending_requests(store: Store) -> list[dict[str, Any]]:
    """Authorization requests waiting for the owner's decision, for the console's pages."""
    return [
        {
            "id": a.authorization_id,
            "client_name": client_name(store, a),
            "flow_label": FLOW_LABELS[a.flow],
            "user_code": a.user_code,
            "expires_at": a.expires_at,
        }
        for a in store.authorizations("pending")
        if status_of(a) == "pending"
    ]


@router.get("/oauth/device")
def device_entry(request: Request) -> Response:
    """RFC 8628 `verification_uri`: the owner types the user code, then sees the consent."""
    session_id = current_session(request)
    if session_id is None:
        return signed_out(request)
    raw = (request.query_params.get("user_code") or "").strip().upper().replace(" ", "")
    error = None
    if raw:
        user_code = raw if "-" in raw or len(raw) != 8 else f"{raw[:4]}-{raw[4:]}"
        found = home(request).store.authorization_by_user_code(user_code)
        if found is not None and status_of(found) == "pending":
            return RedirectResponse(f"/console/authorizations/{found.authorization_id}", 303)
        error = "No request is waiting with that code. Check it, or start again in the app."
    return render(
        "device.html",
        title="Enter the code",
        user_code=raw,
        error=error,
        csrf_token=console.csrf_token(session_id),
        status_code=404 if error else 200,
    )


@router.get("/console/authorizations/{authorization_id}")
def consent_page(authorization_id: str, request: Request) -> Response:
    session_id = current_session(request)
    if session_id is None:
        return signed_out(request)
    h = home(request)
    authorization = h.store.authorization(authorization_id)
    if authorization is None:
        return error_page(request, "There is no such request.", status_code=404)
    if status_of(authorization) != "pending":
        return message_page(
            request,
            "Already decided",
            f"This request is {status_of(authorization)}.",
            csrf_token=console.csrf_token(session_id),
        )
    return _consent(h, authorization, session_id)


@router.post("/console/authorizations/{authorization_id}")
async def decide(authorization_id: str, request: Request) -> Response:
    posted = await posted_form(request)
    if isinstance(posted, Response):
        return posted
    form, session_id = posted
    return await run_in_threadpool(_decide, request, authorization_id, form, session_id)


def _decide(request: Request, authorization_id: str, form: FormData, session_id: str) -> Response:
    h = home(request)
    authorization = h.store.authorization(authorization_id)
    if authorization is None:
        return error_page(request, "There is no such request.", status_code=404)
    name = client_name(h.store, authorization)
    try:
        if form_text(form, "decision") == "approve":
            outcome = approve(h.store, h.catalog, authorization_id, _decision(form))
            title, message = "Access approved", f"{name} may now read what you approved."
        else:
            outcome = deny(h.store, authorization_id)
            title, message = "Access denied", f"{name} gets nothing."
    except OwnstreamError as exc:
        if status_of(h.store.authorization(authorization_id) or authorization) != "pending":
            return error_page(request, exc.message, status_code=409)
        return _consent(h, authorization, session_id, error=exc.message)
    if outcome.redirect_to is not None:
        return RedirectResponse(outcome.redirect_to, status_code=303)
    return message_page(
        request,
        title,
        message + " You can close this page and go back to the application.",
        csrf_token=console.csrf_token(session_id),
    )


def form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _decision(form: FormData) -> dict[str, Any]:
    """The consent form as a decision: ticked streams with their ticked fields and
    connections, and the chosen expiry."""
    streams = []
    for name in form.getlist("stream"):
        if not isinstance(name, str):
            continue
        streams.append(
            {
                "name": name,
                "fields": [f for f in form.getlist(f"field:{name}") if isinstance(f, str)],
                "connection_ids": [
                    c for c in form.getlist(f"connection:{name}") if isinstance(c, str)
                ],
            }
        )
    decision: dict[str, Any] = {"streams": streams}
    expires_in = form_text(form, "expires_in")
    if expires_in:
        decision["expires_in"] = int(expires_in)
    return decision


def _consent(
    h: Home, authorization: PendingAuthorization, session_id: str, *, error: str | None = None
) -> Response:
    store, catalog = h.store, h.catalog
    selection = authorization.selection
    requested = {s["name"]: s for s in selection["streams"]} if selection else None
    streams = []
    names = list(requested) if requested is not None else [
        d.name for d in catalog.all_definitions()
    ]
    for name in names:
        definition = catalog.definition(name)
        asked = (requested or {}).get(name, {})
        connection_ids = asked.get("connection_ids") or connections_with_stream(
            store, catalog, name
        )
        if not connection_ids:
            continue
        labels = {c.connection_id: c.display_name for c in store.connections(
            connection_ids=connection_ids)}
        time_range = asked.get("time_range") or {}
        streams.append(
            {
                "name": name,
                "description": definition.description,
                "checked": requested is not None,
                "fields": asked.get("fields") or list(definition.fields),
                "connections": [{"id": c, "label": labels.get(c, c)} for c in connection_ids],
                "time_range_label": _time_range_label(time_range),
            }
        )
    display = authorization.request.get("client_display") or {}
    name = client_name(store, authorization)
    consent = {
        "id": authorization.authorization_id,
        "client_id": authorization.client_id,
        "client_name": name,
        "monogram": name[:1].upper(),
        "display_links": [
            (label, display[key])
            for key, label in (("uri", "home page"), ("policy_uri", "privacy policy"),
                               ("tos_uri", "terms"))
            if key in display
        ],
        "user_code": authorization.user_code,
        "purpose": (selection or {}).get("purpose_description")
        or (selection or {}).get("purpose_code")
        or "Not stated by the application.",
        "access_mode_label": "One-time access"
        if (selection or {}).get("access_mode") == "single_use"
        else "Ongoing access until it ends or you revoke it",
        "claims": authorization.request.get("client_claims") or [],
        "chooses": selection is None,
        "streams": streams,
        "expiry_options": _expiry_options((selection or {}).get("expires_in"), selection is None),
    }
    return render(
        "consent.html",
        title=f"{name} asks for access",
        c=consent,
        error=error,
        csrf_token=console.csrf_token(session_id),
        status_code=400 if error else 200,
    )


def _time_range_label(time_range: dict[str, Any]) -> str:
    since, until = time_range.get("since"), time_range.get("until")
    if since and until:
        return f"from {since} until {until}"
    if since:
        return f"from {since} on"
    if until:
        return f"until {until}"
    return "all time"


def _expiry_options(requested: int | None, owner_chooses: bool) -> list[dict[str, Any]]:
    """As requested or shorter; with no requested expiry, never-ending access is allowed too."""
    options: list[dict[str, Any]] = []
    if requested is None:
        options.append({"value": "", "label": "when you revoke it", "selected": not owner_chooses})
    else:
        options.append({"value": requested, "label": f"as requested ({requested} s)",
                        "selected": True})
    for seconds, label in EXPIRY_CHOICES:
        if requested is None or seconds < requested:
            options.append({
                "value": seconds,
                "label": label,
                "selected": owner_chooses and seconds == 30 * 86400,
            })
    return options
