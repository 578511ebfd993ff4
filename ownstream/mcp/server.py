"""The MCP server both transports serve: the tools of `tools`, and resources for streams and
records, all read as the request's client bearer.

Every handler runs its reads (and the bearer check) in a worker thread, never on the event
loop. A domain error is a tool error carrying the PDPP error object in
`structuredContent.error` (a revoked grant is `grant_revoked`, never an empty result); on a
resource read it is an MCP error with the same object as its data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError

from ownstream import __version__
from ownstream.api.errors import error_body
from ownstream.errors import InsufficientScope, InternalError, NotFound, OwnstreamError
from ownstream.grants.scope import readable_streams
from ownstream.grants.tokens import authenticate
from ownstream.home import Home
from ownstream.mcp import handles
from ownstream.mcp.tools import TOOLS, Reader, as_json, fetched
from ownstream.model import Bearer
from ownstream.reads import metadata

log = logging.getLogger(__name__)
R = TypeVar("R")

Credential = Callable[[Any], Bearer]
"""The bearer of one MCP request, from the transport's request (None on stdio); it raises the
domain error (`grant_revoked`, …) when there is none. Called in a worker thread."""

RESOURCE_NOT_FOUND = -32002  # the MCP specification's code for an unknown resource
READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
INSTRUCTIONS = (
    "ownstream holds its owner's personal data (listening history, mail, notes, ...) collected "
    "from accounts and archives they connected; these tools read only what the owner granted "
    "this client. Start with schema (or list_streams). search finds records by words and "
    "fetch reads one by the id search returned; query_records pages through a stream; "
    "aggregate answers counts, sums and per-month or per-artist questions without reading "
    "records. Records of several accounts of one kind share a stream: connection_id and "
    "display_name say which account a record came from. Errors keep the PDPP codes "
    "(grant_revoked, field_not_granted, ambiguous_connection, ...)."
)


def client_bearer(home: Home, authorization: str | None, resource: str | None) -> Bearer:
    """The client bearer of `authorization`, for `resource`; an owner token is refused, so
    nothing of the owner's self-export is reachable through MCP."""
    who = authenticate(home.store, authorization, resource=resource)
    if who.kind != "client":
        raise InsufficientScope(
            "MCP takes a client token, issued with a grant the owner approved; an owner "
            "token is refused"
        )
    home.usage.note_token(who)
    return who


def error_result(error: OwnstreamError) -> types.CallToolResult:
    """A failed call as MCP reports it to the model (`isError`), with the PDPP error object."""
    found = error_body(error.status, error.to_dict(), None)
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error.code}: {error.message}\n{as_json(found)}")],
        structured_content={"error": found},
        is_error=True,
    )


def build_server(home: Home, credential: Credential) -> Server[Any]:
    """The MCP server over `home`, reading as whoever `credential` names per request."""
    tools = {tool.name: tool for tool in TOOLS}

    async def list_tools(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=t.name,
                    title=t.title,
                    description=t.description,
                    input_schema=t.input_schema,
                    output_schema=t.output_schema,
                    annotations=READ_ONLY,
                )
                for t in TOOLS
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = tools.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"no tool named {params.name!r}")

        def run() -> types.CallToolResult:
            reader = Reader(home, credential(ctx.request))
            answer = tool.run(reader, tool.arguments(params.arguments))
            return types.CallToolResult(
                content=[types.TextContent(text=answer.text)],
                structured_content=answer.structured,
            )

        try:
            return await anyio.to_thread.run_sync(run)
        except OwnstreamError as error:
            return error_result(error)
        except Exception:
            log.exception("MCP tool %s failed", params.name)
            return error_result(InternalError("internal error; the server log has details"))

    async def list_resources(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        def run() -> types.ListResourcesResult:
            who = credential(ctx.request)
            return types.ListResourcesResult(
                resources=[
                    types.Resource(
                        uri=handles.stream_uri(d.name),
                        name=d.name,
                        description=d.description,
                        mime_type="application/json",
                    )
                    for d in readable_streams(who, home.catalog)
                ]
            )

        return await _resource_call(run)

    async def list_resource_templates(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=handles.STREAM_TEMPLATE,
                    name="stream",
                    description="A stream's metadata: fields, capabilities, connections, "
                    "freshness (the REST GET /v1/streams/{name} body).",
                    mime_type="application/json",
                ),
                types.ResourceTemplate(
                    uri_template=handles.RECORD_TEMPLATE,
                    name="record",
                    description="One record, as the fetch tool returns it; {id} is a search "
                    "result id (connection_id/stream:record_id), URL-encoded.",
                    mime_type="application/json",
                ),
            ]
        )

    async def read_resource(
        ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = params.uri

        def run() -> types.ReadResourceResult:
            reader = Reader(home, credential(ctx.request))
            stream = handles.parse_stream_uri(uri)
            if stream is not None:
                body = metadata.metadata_for(home, reader.scope(stream), [])
            elif uri.startswith(handles.RECORD_URI):
                body = fetched(reader, handles.parse_handle(uri, "uri"), None)
            else:
                raise NotFound("ownstream serves pdpp://stream/… and pdpp://record/…", param="uri")
            return types.ReadResourceResult(
                contents=[
                    types.TextResourceContents(
                        uri=uri, mime_type="application/json", text=as_json(body)
                    )
                ]
            )

        return await _resource_call(run)

    return Server(
        "ownstream",
        version=__version__,
        title="ownstream personal data",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
    )


async def _resource_call(run: Callable[[], R]) -> R:
    """Run a resource handler's work in a worker thread; a domain error becomes an MCP error
    whose data is the PDPP error object."""
    try:
        return await anyio.to_thread.run_sync(run)
    except OwnstreamError as error:
        code = RESOURCE_NOT_FOUND if error.status == 404 else types.INVALID_PARAMS
        data = {"error": error_body(error.status, error.to_dict(), None)}
        raise MCPError(code, f"{error.code}: {error.message}", data) from None
