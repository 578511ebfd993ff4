"""The ASGI application factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from ownstream import __version__
from ownstream.api import client, errors, owner
from ownstream.api.responses import JSONBody
from ownstream.clock import random_id
from ownstream.home import Home


def create_app(home: Home) -> FastAPI:
    app = FastAPI(
        title="ownstream",
        version=__version__,
        default_response_class=JSONBody,
        docs_url=None,
        redoc_url=None,
    )
    app.state.home = home
    errors.install(app)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = random_id("req")
        response = await call_next(request)
        response.headers["Request-Id"] = request.state.request_id
        return response

    app.include_router(client.router)
    app.include_router(owner.router)
    return app
