"""Request plumbing shared by the routers: the bearer, the data directory, parameter checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ownstream.auth.discovery import normalize_public_url
from ownstream.errors import InsufficientScope, InvalidArgument, InvalidRequest
from ownstream.grants.tokens import authenticate
from ownstream.home import Home
from ownstream.model import Bearer

OWNER_ONLY_PARAMS = ("filter", "view", "expand", "expand_limit")
ALIAS = "connector_instance_id"


def home(request: Request) -> Home:
    found: Home = request.app.state.home
    return found


def public_url(request: Request) -> str:
    """The server's public base URL: `serve --public-url`, else the URL it was reached at."""
    configured: str | None = request.app.state.public_url
    return configured or normalize_public_url(str(request.base_url))


def bearer(request: Request) -> Bearer:
    h = home(request)
    found = authenticate(
        h.store, request.headers.get("authorization"), resource=public_url(request)
    )
    h.usage.note_token(found)
    return found


def owner(request: Request) -> Bearer:
    found = bearer(request)
    if found.kind != "owner":
        raise InsufficientScope("this operation needs the owner token")
    return found


def check_params(request: Request, who: Bearer, allowed: Iterable[str]) -> None:
    """Unknown parameters are errors, never ignored; owner-only ones are refused to clients."""
    allowed_set = set(allowed)
    for name in request.query_params:
        base = name.split("[", 1)[0]
        if base in OWNER_ONLY_PARAMS:
            if who.kind == "client":
                raise InvalidRequest(f"{base} is available to the owner only", param=name)
            raise InvalidRequest(f"{base} is not supported by this server", param=name)
        if name not in allowed_set and base not in allowed_set:
            raise InvalidRequest(f"unknown query parameter {name!r}", param=name)


def connection_param(request: Request, warnings: list[dict[str, Any]]) -> str | None:
    """`connection_id`, or its deprecated alias with a warning; conflicting values are an error."""
    canonical = request.query_params.get("connection_id")
    alias = request.query_params.get(ALIAS)
    if alias is not None:
        warnings.append(
            {
                "code": "deprecated_alias_used",
                "message": f"{ALIAS} is deprecated; use connection_id",
                "param": ALIAS,
            }
        )
        if canonical is not None and canonical != alias:
            raise InvalidArgument("connection_id and connector_instance_id differ", param=ALIAS)
        return alias
    return canonical


def list_param(request: Request, name: str) -> list[str] | None:
    """A list given as repeated `name=`, `name[]=`, or comma-separated values."""
    values = request.query_params.getlist(name) + request.query_params.getlist(f"{name}[]")
    if not values:
        return None
    return [part for value in values for part in value.split(",") if part]


MAX_INT_PARAM = 2**31 - 1


def int_param(
    request: Request, name: str, default: int, *, minimum: int = 1, maximum: int = MAX_INT_PARAM
) -> int:
    """An integer query parameter within [minimum, maximum]; anything else is a 400."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.strip().lstrip("+-").isdigit() or len(raw) > 12:
        raise InvalidArgument(
            f"{name} must be an integer between {minimum} and {maximum}", param=name
        )
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InvalidArgument(
            f"{name} must be an integer between {minimum} and {maximum}", param=name
        )
    return value


async def stream_body(request: Request, write: Callable[[bytes], None]) -> None:
    """Hand the request body to `write` chunk by chunk, in the thread pool: an upload is never
    held in memory, and its disk writes and hashing never run on the event loop."""
    async for chunk in request.stream():
        if chunk:
            await run_in_threadpool(write, chunk)
