"""The ASGI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ownstream import __version__
from ownstream.api import client, console_auth, errors, oauth, owner, owner_clients
from ownstream.api.responses import JSONBody
from ownstream.auth.discovery import normalize_public_url
from ownstream.clock import random_id
from ownstream.home import Home


class RequestIdMiddleware:
    """Give every request an id (`request.state.request_id`) and every response its header.

    A plain ASGI middleware: it adds no task or stream hop to the hot read path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = random_id("req")
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Request-Id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(home: Home, public_url: str | None = None) -> FastAPI:
    """The app; `public_url` is the base URL clients see (`serve --public-url`), else the URL
    each request reached."""
    app = FastAPI(
        title="ownstream",
        version=__version__,
        default_response_class=JSONBody,
        docs_url=None,
        redoc_url=None,
    )
    app.state.home = home
    app.state.public_url = normalize_public_url(public_url) if public_url else None
    errors.install(app)

    app.add_middleware(RequestIdMiddleware)
    app.include_router(client.router)
    app.include_router(owner.router)
    app.include_router(owner_clients.router)
    app.include_router(oauth.router)
    app.include_router(console_auth.router)
    app.mount(
        "/console/static",
        StaticFiles(packages=[("ownstream.console", "static")]),
        name="console-static",
    )
    return app
