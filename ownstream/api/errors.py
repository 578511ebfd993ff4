"""The PDPP error envelope, produced in exactly one place for every error the API returns."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ownstream.api.deps import public_url
from ownstream.api.responses import JSONBody
from ownstream.auth.discovery import RESOURCE_METADATA_PATH
from ownstream.errors import OwnstreamError

PDPP_VERSION = "2026-04-06"  # the PDPP HTTP API contract this server speaks
VERSION_HEADER = "PDPP-Version"

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    410: "gone_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def bearer_challenge(request: Request, resource_metadata: str | None = None) -> str:
    """RFC 6750 §3 with RFC 9728 §5: where a client finds out how to get a token (the REST
    surface's metadata unless another resource, such as MCP, names its own)."""
    metadata = resource_metadata or public_url(request) + RESOURCE_METADATA_PATH
    challenge = f'Bearer resource_metadata="{metadata}"'
    if request.headers.get("authorization"):
        challenge += ', error="invalid_token"'
    return challenge


def error_body(status: int, body: dict[str, object], request_id: str | None) -> dict[str, object]:
    """The PDPP error object: its type (from the status), code, message and details."""
    error = {"type": TYPES.get(status, "api_error"), **body}
    if request_id is not None:
        error["request_id"] = request_id
    return error


def envelope(
    request: Request,
    status: int,
    body: dict[str, object],
    *,
    resource_metadata: str | None = None,
) -> JSONBody:
    error = error_body(status, body, getattr(request.state, "request_id", ""))
    headers = (
        {"WWW-Authenticate": bearer_challenge(request, resource_metadata)}
        if status == 401
        else {}
    )
    return JSONBody({"error": error}, status_code=status, headers=headers)


def oauth_error(error: OAuth2Error) -> Response:
    """RFC 6749 §5.2 JSON (or, for an authorization request with a validated redirect URI, the
    redirect carrying the error), never the PDPP envelope."""
    status, body, headers = error()
    if status == 302:
        return Response(status_code=302, headers=dict(headers))
    return JSONBody(body, status_code=status, headers=dict(headers))


def install(app: FastAPI) -> None:
    @app.exception_handler(OwnstreamError)
    async def domain_error(request: Request, exc: OwnstreamError) -> JSONBody:
        return envelope(request, exc.status, exc.to_dict())

    @app.exception_handler(OAuth2Error)
    async def oauth_protocol_error(request: Request, exc: OAuth2Error) -> Response:
        return oauth_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONBody:
        first = exc.errors()[0] if exc.errors() else {}
        location = first.get("loc", ())
        body: dict[str, object] = {
            "code": "invalid_request",
            "message": str(first.get("msg", "invalid request")),
        }
        if location:
            body["param"] = str(location[-1])
        return envelope(request, 400, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONBody:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "api_error")
        return envelope(request, exc.status_code, {"code": code, "message": str(exc.detail)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONBody:
        # Runs outside the request-id middleware (Starlette's outermost layer): set the header.
        response = envelope(request, 500, {"code": "api_error", "message": "internal error"})
        response.headers["Request-Id"] = getattr(request.state, "request_id", "")
        response.headers["Cache-Control"] = "no-store"
        response.headers[VERSION_HEADER] = PDPP_VERSION
        return response
