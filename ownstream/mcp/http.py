"""`/mcp` on `ownstream serve`: the same MCP server over streamable HTTP, for hosted and remote
assistants.

Stateless (a fresh transport per POST, JSON responses, no MCP session to hijack, no SSE
stream: `create_app` routes only POST here). A gate in front authenticates each request's
bearer for the resource `<public URL>/mcp` (RFC 8707): no token or a token for another
resource is 401 with a challenge naming this endpoint's protected-resource metadata, an owner
token is 403. A client token whose grant was revoked or expired passes the gate so that each
tool call reports `grant_revoked`/`grant_expired` as a tool error naming the grant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ownstream.api.deps import public_url
from ownstream.api.errors import envelope
from ownstream.auth.discovery import Endpoints
from ownstream.errors import AuthenticationError, GrantExpired, GrantRevoked, OwnstreamError
from ownstream.home import Home
from ownstream.mcp.server import build_server, client_bearer
from ownstream.model import Bearer

BEARER_STATE = "mcp_bearer"  # the gate's outcome, in the request's state


def gate_bearer(request: Request) -> Bearer:
    """The bearer the gate authenticated for this request, or its grant's error."""
    outcome: Bearer | OwnstreamError = getattr(request.state, BEARER_STATE)
    if isinstance(outcome, OwnstreamError):
        raise outcome
    return outcome


class McpEndpoint:
    """The ASGI app mounted at `/mcp`; it serves while `running()` (the app's lifespan)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.server = build_server(home, gate_bearer)
        self._sessions: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # the SDK's manager runs once: each lifespan gets its own
        self._sessions = StreamableHTTPSessionManager(
            app=self.server, stateless=True, json_response=True
        )
        try:
            async with self._sessions.run():
                yield
        finally:
            self._sessions = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        urls = Endpoints(public_url(request))
        outcome: Bearer | OwnstreamError
        try:
            outcome = await run_in_threadpool(
                client_bearer, self.home, request.headers.get("authorization"), urls.mcp
            )
        except (GrantRevoked, GrantExpired) as error:
            outcome = error
        except AuthenticationError as error:
            metadata = urls.mcp_resource_metadata
            refusal = envelope(
                request, 401, {**error.to_dict(), "resource_metadata": metadata},
                resource_metadata=metadata,
            )
            await refusal(scope, receive, send)
            return
        except OwnstreamError as error:
            await envelope(request, error.status, error.to_dict())(scope, receive, send)
            return
        if self._sessions is None:
            raise RuntimeError("/mcp serves only within the app's lifespan")
        scope.setdefault("state", {})[BEARER_STATE] = outcome
        await self._sessions.handle_request(scope, receive, send)
