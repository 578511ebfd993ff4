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
    416: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def bearer_challenge(request: Request) -> str:
    """RFC 6750 §3 with RFC 9728 §5: where a client finds out how to get a token."""
    metadata = public_url(request) + RESOURCE_METADATA_PATH
    challenge = f'Bearer resource_metadata="{metadata}"'
    if request.headers.get("authorization"):
        challenge += ', error="invalid_token"'
    return challenge


def envelope(request: Request, status: int, body: dict[str, object]) -> JSONBody:
    request_id = getattr(request.state, "request_id", "")
    error = {"type": TYPES.get(status, "api_error"), **body, "request_id": request_id}
    headers = {"WWW-Authenticate": bearer_challenge(request)} if status == 401 else {}
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
