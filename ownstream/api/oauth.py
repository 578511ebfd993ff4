"""The client front door: discovery documents, /oauth/* and agent connect.

Each route reads the request body on the event loop, then runs the OAuth work (which touches the
store) in the thread pool. OAuth errors are raised and rendered as RFC 6749 JSON by
`api/errors.py`.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from ownstream.api.deps import home, public_url
from ownstream.api.responses import JSONBody
from ownstream.auth import AUTHORIZATION_SECONDS
from ownstream.auth import discovery as paths
from ownstream.auth.authorizations import (
    approval_url,
    is_expired,
    poll_agent_connect,
    start_agent_connect,
)
from ownstream.auth.discovery import (
    Endpoints,
    authorization_server_metadata,
    mcp_resource_metadata,
    protected_resource_metadata,
)
from ownstream.auth.server import (
    PAR_URN,
    AuthorizationServer,
    OAuthJsonRequest,
    OAuthRequest,
    OAuthResponse,
)
from ownstream.clock import random_id
from ownstream.console.pages import error_page
from ownstream.grants.tokens import token_hash

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def endpoints(request: Request) -> Endpoints:
    return Endpoints(public_url(request))


def auth_server(request: Request) -> AuthorizationServer:
    """Authlib's server on this home (call it in the thread pool: the catalog may load)."""
    h = home(request)
    return AuthorizationServer(h.store, h.catalog, endpoints(request))


async def oauth_request(request: Request) -> OAuthRequest:
    """The request as Authlib sees it. Its URI is the public one, which Authlib requires to be
    https or loopback (the transport check is the operator's `--public-url`)."""
    form = await request.form() if request.method == "POST" else None
    return OAuthRequest(
        request.method,
        endpoints(request).url(request.url.path),
        request.headers,
        list(request.query_params.multi_items()),
        [(k, v) for k, v in form.multi_items() if isinstance(v, str)] if form else [],
    )


async def json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def to_response(result: OAuthResponse) -> Response:
    headers = dict(result.headers)
    if result.status == 302:
        return Response(status_code=302, headers=headers)
    return JSONBody(result.body, status_code=result.status, headers=headers)


@router.get(paths.RESOURCE_METADATA_PATH)
def resource_metadata(request: Request) -> dict[str, Any]:
    return protected_resource_metadata(endpoints(request))


@router.get(paths.RESOURCE_METADATA_PATH + paths.MCP_PATH)
def mcp_metadata(request: Request) -> dict[str, Any]:
    return mcp_resource_metadata(endpoints(request))


@router.get(paths.AUTHORIZATION_SERVER_METADATA_PATH)
def authorization_metadata(request: Request) -> dict[str, Any]:
    return authorization_server_metadata(endpoints(request))


@router.post(paths.REGISTER, status_code=201)
async def register(request: Request) -> Response:
    """RFC 7591 dynamic registration (open: the owner decides at consent)."""
    data = await json_body(request)
    json_request = OAuthJsonRequest(
        "POST", endpoints(request).url(paths.REGISTER), request.headers, data
    )
    return to_response(
        await run_in_threadpool(
            lambda: auth_server(request).endpoint("client_registration", json_request)
        )
    )


@router.post(paths.PAR, status_code=201)
async def pushed_authorization_request(request: Request) -> Response:
    """RFC 9126: validate the whole request now; the browser then carries only `request_uri`."""
    oauth = await oauth_request(request)

    def push() -> dict[str, Any]:
        server = auth_server(request)
        client = server.authenticate_client(oauth, ["client_secret_basic", "none"], "par")
        named = oauth.payload.data.get("client_id")
        if named is None:
            oauth.payload.add("client_id", client.client_id)
        elif named != client.client_id:
            raise InvalidRequestError("client_id is not the authenticated client")
        try:
            authorization = server.validate_code_request(oauth)
        except OAuth2Error as error:
            # PAR answers errors in JSON to the client, never by redirecting the browser.
            error.redirect_uri = None
            raise
        request_uri = PAR_URN + random_id("par")
        server.store.create_authorization(authorization, request_uri_hash=token_hash(request_uri))
        return {"request_uri": request_uri, "expires_in": AUTHORIZATION_SECONDS}

    return JSONBody(await run_in_threadpool(push), status_code=201, headers=NO_STORE)


@router.get(paths.AUTHORIZE, include_in_schema=False)  # a browser page
def authorize(request: Request) -> Response:
    """With a PAR `request_uri`, or a plain request (MCP clients): either way the browser goes
    on to the consent page of one pending request."""
    server = auth_server(request)
    query = list(request.query_params.multi_items())
    data = dict(query)
    if "request_uri" in data:
        found = server.store.authorization_by_request_uri(token_hash(data["request_uri"]))
        if (
            found is None
            or found.client_id != data.get("client_id")
            or found.status != "pending"
            or is_expired(found)
        ):
            return error_page(
                request,
                "This authorization request is unknown, was already used or has expired. "
                "Go back to the application and start again.",
            )
        return RedirectResponse(approval_url(server.endpoints, found.authorization_id), 303)
    oauth = OAuthRequest(
        "GET", server.endpoints.url(paths.AUTHORIZE), request.headers, query
    )
    try:
        authorization = server.validate_code_request(oauth)
    except OAuth2Error as error:
        if error.redirect_uri:
            raise
        return error_page(request, error.description or error.error, status_code=400)
    server.store.create_authorization(authorization)
    return RedirectResponse(approval_url(server.endpoints, authorization.authorization_id), 303)


@router.post(paths.TOKEN)
async def token(request: Request) -> Response:
    oauth = await oauth_request(request)
    response = to_response(await run_in_threadpool(lambda: auth_server(request).token(oauth)))
    response.headers.update(NO_STORE)
    return response


async def _endpoint(request: Request, name: str) -> Response:
    """One of Authlib's endpoints, on the request's form."""
    oauth = await oauth_request(request)
    return to_response(await run_in_threadpool(lambda: auth_server(request).endpoint(name, oauth)))


@router.post(paths.DEVICE_AUTHORIZATION)
async def device_authorization(request: Request) -> Response:
    return await _endpoint(request, "device_authorization")


@router.post(paths.INTROSPECT)
async def introspect(request: Request) -> Response:
    return await _endpoint(request, "introspection")


@router.post(paths.REVOKE)
async def revoke(request: Request) -> Response:
    return await _endpoint(request, "revocation")


@router.post(paths.AGENT_CONNECT)
async def agent_connect(request: Request) -> Response:
    """The PDPP agent-connect start (what `pdpp connect` posts)."""
    body = await json_body(request)
    urls = endpoints(request)
    started = await run_in_threadpool(lambda: start_agent_connect(home(request).store, urls, body))
    return JSONBody(started, headers=NO_STORE)


@router.post(paths.AGENT_POLL)
async def agent_connect_poll(request: Request) -> Response:
    body = await json_body(request)
    polled = await run_in_threadpool(lambda: poll_agent_connect(home(request).store, body))
    return JSONBody(polled, headers=NO_STORE)
