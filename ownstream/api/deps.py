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

OWNER_ONLY_PARAMS = ("filter", "view", "expand", "expand_limit", "sort")
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


def check_params(
    request: Request, who: Bearer, allowed: Iterable[str], owner_params: Iterable[str] = ()
) -> None:
    """Unknown parameters are errors, never ignored; owner-only ones are refused to clients
    before anything else is looked up (PDPP), and to the owner where an endpoint takes none."""
    allowed_set = set(allowed)
    for name in request.query_params:
        base = name.split("[", 1)[0]
        if name in allowed_set:
            continue
        if base in OWNER_ONLY_PARAMS:
            if who.kind == "client":
                raise InvalidRequest(f"{base} is available to the owner only", param=name)
            if base in owner_params:
                continue
            raise InvalidRequest(f"{base} is not supported on this endpoint", param=name)
        if name not in allowed_set and base not in allowed_set:
            raise InvalidRequest(f"unknown query parameter {name!r}", param=name)


def narrowing(
    canonical: str | None, alias: str | None, warnings: list[dict[str, Any]]
) -> str | None:
    """`connection_id`, or its deprecated alias with a warning; conflicting values are an error."""
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


def list_param(request: Request, name: str, values: list[str] | None) -> list[str] | None:
    """A list given as repeated `name=` (`values`, as declared), `name[]=`, or
    comma-separated values."""
    values = [*(values or []), *request.query_params.getlist(f"{name}[]")]
    if not values:
        return None
    return [part for value in values for part in value.split(",") if part]


MAX_INT_PARAM = 2**31 - 1


def int_value(
    raw: str | None, name: str, *, minimum: int = 1, maximum: int = MAX_INT_PARAM
) -> int | None:
    """An integer query parameter within [minimum, maximum] (None when absent); anything
    else is a 400."""
    if raw is None:
        return None
    digits = raw.strip().lstrip("+-")
    if not digits.isascii() or not digits.isdigit() or len(raw) > 12:
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
