"""The ASGI application factory."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ownstream import __version__
from ownstream.api import (
    client,
    console,
    console_auth,
    console_imports,
    console_reads,
    errors,
    oauth,
    owner,
    owner_clients,
    provider_oauth,
)
from ownstream.api.responses import JSONBody
from ownstream.auth.discovery import MCP_PATH, normalize_public_url
from ownstream.clock import random_id
from ownstream.errors import UnsupportedVersion
from ownstream.home import Home
from ownstream.mcp.http import McpEndpoint

log = logging.getLogger("ownstream.http")
SHUTDOWN_GRACE_SECONDS = 10.0


class RequestMiddleware:
    """Every request gets an id (`request.state.request_id`, the `Request-Id` header), every
    response `Cache-Control: no-store` (personal data is never cached), and one log line.

    A plain ASGI middleware: it adds no task or stream hop to the hot read path. The log line
    has the method, the path (never the query string, which may hold cursors), the status,
    the duration and the request id — never a token or record data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = random_id("req")
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append("Request-Id", request_id)
                if "cache-control" not in headers:
                    headers.append("Cache-Control", "no-store")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "%s %s %s %.1fms %s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "request_id": request_id,
                },
            )


class VersionMiddleware:
    """PDPP-Version negotiation for every route, OAuth ones included: each response names the
    version it speaks, and a request for another version is refused (400
    `unsupported_version`) before any handler runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = Headers(scope=scope).get(errors.VERSION_HEADER)

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[errors.VERSION_HEADER] = errors.PDPP_VERSION
            await send(message)

        if asked is not None and asked.strip() != errors.PDPP_VERSION:
            refusal = UnsupportedVersion(
                f"PDPP-Version {asked!r} is not supported; this server speaks "
                f"{errors.PDPP_VERSION}",
                param=errors.VERSION_HEADER,
            )
            response = errors.envelope(Request(scope), refusal.status, refusal.to_dict())
            await response(scope, receive, send_with_version)
            return
        await self.app(scope, receive, send_with_version)


def create_app(home: Home, public_url: str | None = None) -> FastAPI:
    """The app; `public_url` is the base URL clients see (`serve --public-url`), else the URL
    each request reached."""

    mcp_endpoint = McpEndpoint(home)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        home.usage.start()
        try:
            async with mcp_endpoint.running():
                yield
        finally:
            home.usage.stop()
            home.background.join(SHUTDOWN_GRACE_SECONDS)

    app = FastAPI(
        title="ownstream",
        version=__version__,
        default_response_class=JSONBody,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.home = home
    app.state.public_url = normalize_public_url(public_url) if public_url else None
    errors.install(app)

    app.add_middleware(VersionMiddleware)
    app.add_middleware(RequestMiddleware)  # outermost: the request id exists for every layer
    app.include_router(client.router)
    app.include_router(owner.router)
    app.include_router(owner_clients.router)
    app.include_router(oauth.router)
    app.include_router(console_auth.router)
    app.include_router(provider_oauth.router)
    app.include_router(console.router)
    app.include_router(console_imports.router)
    app.include_router(console_reads.router)
    app.router.routes.append(
        Route(MCP_PATH, mcp_endpoint, methods=["POST"], include_in_schema=False)
    )
    app.mount(
        "/console/static",
        StaticFiles(packages=[("ownstream.console", "static")]),
        name="console-static",
    )
    return app
