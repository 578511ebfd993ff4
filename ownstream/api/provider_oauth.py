"""Connecting by OAuth over HTTP: the provider's callback, and starting from the console.

The callback is where the provider sends the owner's browser back, so it answers a small HTML
page saying what happened (connected as whom, or why not); it needs no bearer token, the
single-use state is what ties the request to an authorization the owner started. The owner
endpoints start an authorization and report on it, for the console's connect button.
Handlers are plain `def`: the callback exchanges the code and probes the account, blocking work
that must not run on the event loop.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import HTMLResponse, Response

from ownstream.api.console import console_return
from ownstream.api.deps import check_params, home, owner, public_url
from ownstream.errors import InvalidArgument, InvalidRequest, OwnstreamError
from ownstream.owner.provider_oauth import (
    CALLBACK_PATH,
    ProviderOAuth,
    authorization_view,
    outcome_message,
)

router = APIRouter()
JsonObject = Body(default_factory=dict)


def _page(status: int, title: str, text: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>ownstream</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>",
        status_code=status,
        # the URL that led here held a code and state: send it to no other site
        headers={"Referrer-Policy": "no-referrer"},
    )


@router.get(CALLBACK_PATH, response_class=HTMLResponse, include_in_schema=False)
def oauth_callback(request: Request) -> Response:
    """The page saying what happened; a browser that started the authorization in the
    console goes back there instead, to the connection (or the connect form) it concerns."""
    params = request.query_params
    try:
        authorization = ProviderOAuth(home(request)).complete(
            state=params.get("state"), code=params.get("code"), error=params.get("error")
        )
    except OwnstreamError as exc:
        return console_return(request) or _page(exc.status, "Not connected", exc.message)
    return console_return(request) or _page(
        200, "Connected", f"{outcome_message(authorization)} You can close this window."
    )


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string", param=name)
    return value


@router.post("/v1/owner/connect/oauth", status_code=201)
def start_oauth(request: Request, body: Any = JsonObject) -> dict[str, Any]:
    """Start an authorization; the owner's browser goes to `authorization_url`, and the
    provider redirects back to this server's public URL (`serve --public-url`)."""
    check_params(request, owner(request), ())
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    settings = body.get("settings") or {}
    if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
        raise InvalidArgument("settings must be an object of strings", param="settings")
    allow_recreate = body.get("allow_recreate", False)
    if not isinstance(allow_recreate, bool):
        raise InvalidArgument("allow_recreate must be true or false", param="allow_recreate")
    connector_key = _text(body, "connector_key")
    if not connector_key:
        raise InvalidArgument("connector_key is required", param="connector_key")
    flow = ProviderOAuth(home(request))
    started = flow.start(
        connector_key,
        redirect_base=public_url(request),
        client_id=_text(body, "client_id"),
        client_secret=_text(body, "client_secret"),
        settings=settings,
        display_name=_text(body, "display_name"),
        connection_id=_text(body, "connection_id"),
        allow_recreate=allow_recreate,
    )
    view = authorization_view(flow.home.store.provider_authorization(started.authorization_id))
    return {**view, "authorization_url": started.authorization_url}


@router.get("/v1/owner/connect/oauth/{authorization_id}")
def oauth_status(authorization_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    return authorization_view(home(request).store.provider_authorization(authorization_id))
