"""The MCP tools over both transports, driven by the SDK's own client and compared with the
REST surface read with the same token and parameters."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent, TextResourceContents

from ownstream.mcp.bounds import LIST_TEXT_CHARS, RECORD_TEXT_CHARS, bound_page
from ownstream.mcp.handles import RecordHandle
from ownstream.owner import AccessOperations
from tests.api.conftest import SECRET_WORDS

from .conftest import LONG_BODY, Connect, McpWorld, run

TOOLS = {
    "schema", "list_streams", "query_records", "search", "fetch", "read_record_field",
    "aggregate",
}


def text(block: Any) -> str:
    """The text of a tool result's content block or of a resource's contents."""
    assert isinstance(block, TextContent | TextResourceContents), block
    return block.text


async def call(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A successful call's structured content (its text is that content, after a summary)."""
    result = await client.call_tool(name, args)
    assert not result.is_error, result.content
    structured: dict[str, Any] = result.structured_content
    assert text(result.content[0])
    return structured


async def failure(
    client: Client, name: str, args: dict[str, Any], output_schema: Any = None
) -> dict[str, Any]:
    """A tool error's PDPP error object. The SDK's Python client does not check a failed
    call's structured content against the tool's output schema, but other clients (the
    TypeScript SDK's) do: with `output_schema`, so does this."""
    result = await client.call_tool(name, args)
    assert result.is_error, result.structured_content
    error: dict[str, Any] = result.structured_content["error"]
    assert text(result.content[0]).startswith(f"{error['code']}: ")
    if output_schema is not None:
        assert jsonschema_rs.validator_for(output_schema).is_valid(result.structured_content)
    return error


def test_lists_the_tools_and_resources(connect: Connect, mcp_world: McpWorld) -> None:
    async def scenario() -> None:
        async with connect(mcp_world.token) as client:
            tools = (await client.list_tools()).tools
            assert {t.name for t in tools} == TOOLS
            for tool in tools:
                assert tool.description and len(tool.description) > 100
                assert tool.input_schema["additionalProperties"] is False
                assert tool.annotations is not None and tool.annotations.read_only_hint
                assert tool.output_schema is not None
            schemas = {t.name: t.input_schema for t in tools}
            # the typed filter: an object of scalars or range objects, never a string
            assert schemas["query_records"]["properties"]["filter"]["type"] == "object"
            assert "connector_instance_id" not in json.dumps(schemas)
            resources = (await client.list_resources()).resources
            assert [r.uri for r in resources] == ["pdpp://stream/notes"]
            templates = (await client.list_resource_templates()).resource_templates
            assert {t.uri_template for t in templates} == {
                "pdpp://stream/{name}", "pdpp://record/{id}",
            }

    run(scenario)


def test_each_tool_carries_the_rest_body(connect: Connect, mcp_world: McpWorld) -> None:
    alice = mcp_world.world.conns["alice"]
    dora = mcp_world.world.conns["dora"]
    rest, same = mcp_world.rest, mcp_world.unsealed
    cases: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
        ("schema", {}, "/v1/schema", {"detail": "compact"}),
        ("schema", {"stream": "notes", "detail": "full", "connection_id": alice},
         "/v1/schema", {"stream": "notes", "connection_id": alice}),
        ("list_streams", {}, "/v1/streams", {}),
        ("list_streams", {"connection_id": alice}, "/v1/streams", {"connection_id": alice}),
        ("query_records",
         {"stream": "notes", "limit": 5, "order": "asc", "fields": ["title", "tag"]},
         "/v1/streams/notes/records",
         {"limit": 5, "order": "asc", "fields": "title,tag"}),
        ("query_records", {"stream": "notes", "limit": 500, "connection_id": alice},
         "/v1/streams/notes/records", {"limit": 500, "connection_id": alice}),
        ("query_records", {"stream": "notes", "changes_since": "beginning", "limit": 3},
         "/v1/streams/notes/records", {"changes_since": "beginning", "limit": 3}),
        ("search", {"q": "garden", "limit": 2}, "/v1/search", {"q": "garden", "limit": 2}),
        ("search", {"q": "harb*", "streams": ["notes"], "connection_id": dora},
         "/v1/search", {"q": "harb*", "streams": "notes", "connection_id": dora}),
        ("read_record_field",
         {"id": f"{dora}/notes:n01", "field_path": "body", "offset_chars": 100,
          "limit_chars": 50},
         "/v1/streams/notes/records/n01/field-window",
         {"connection_id": dora, "field": "body", "offset_chars": 100, "limit_chars": 50}),
        ("read_record_field",
         {"id": f"{dora}/notes:n01", "field_path": "body", "q": "LINE 0042",
          "before_chars": 5, "after_chars": 10},
         "/v1/streams/notes/records/n01/field-window",
         {"connection_id": dora, "field": "body", "q": "LINE 0042", "before_chars": 5,
          "after_chars": 10}),
        ("aggregate",
         {"stream": "notes", "metric": "count", "group_by_time": "updated_at",
          "granularity": "month", "time_zone": "Europe/Paris", "limit": 4},
         "/v1/streams/notes/aggregate",
         {"metric": "count", "group_by_time": "updated_at", "granularity": "month",
          "time_zone": "Europe/Paris", "limit": 4}),
        ("aggregate", {"stream": "notes", "metric": "max", "field": "updated_at"},
         "/v1/streams/notes/aggregate", {"metric": "max", "field": "updated_at"}),
    ]

    async def scenario() -> None:
        async with connect(mcp_world.token) as client:
            for name, args, path, params in cases:
                found = await call(client, name, args)
                assert same(found["data"]) == same(rest(path, **params)), (name, args)
            # fetch is a document around the REST record
            document = await call(client, "fetch", {"id": f"{alice}/notes:n03"})
            record = rest("/v1/streams/notes/records/n03", connection_id=alice)
            assert document["data"] == record
            assert document["id"] == f"{alice}/notes:n03"
            assert document["title"] == record["data"]["title"]
            assert json.loads(document["text"]) == record["data"]
            assert document["url"] == RecordHandle("notes", "n03", alice).uri
            assert document["metadata"]["connection_id"] == alice
            assert document["metadata"]["display_name"] == "Alice notebook"
            # search results are fetch handles carrying their connection
            hits = await call(client, "search", {"q": "garden"})
            for result, hit in zip(hits["results"], hits["data"]["data"], strict=True):
                assert result["id"] == f"{hit['connection_id']}/notes:{hit['record_key']}"
                fetched = await call(client, "fetch", {"id": result["id"]})
                assert fetched["data"]["connection_id"] == hit["connection_id"]
            # resources carry the same bodies
            stream = await client.read_resource("pdpp://stream/notes")
            assert json.loads(text(stream.contents[0])) == rest("/v1/streams/notes")
            record_uri = RecordHandle("notes", "n03", alice).uri
            read = await client.read_resource(record_uri)
            assert json.loads(text(read.contents[0]))["data"] == record

    run(scenario)


def test_paging_by_tool_yields_the_records_of_rest_paging(
    connect: Connect, mcp_world: McpWorld
) -> None:
    world = mcp_world.world

    def rest_pages(params: dict[str, Any]) -> list[dict[str, Any]]:
        pages = world.page_all("/v1/streams/notes/records", mcp_world.token, params)
        return [record for page in pages for record in page["data"]]

    async def tool_pages(client: Client, args: dict[str, Any]) -> list[dict[str, Any]]:
        found, args = [], {"stream": "notes", **args}
        while True:
            page = await call(client, "query_records", args)
            found.extend(page["data"]["data"])
            if not page["data"]["has_more"]:
                assert ("next_changes_since" in page["data"]) == ("changes_since" in args)
                return found
            args["cursor"] = page["data"]["next_cursor"]

    async def scenario() -> None:
        async with connect(mcp_world.token) as client:
            for args in (
                {"limit": 7},
                {"limit": 4, "order": "asc"},
                {"limit": 6, "changes_since": "beginning"},
            ):
                by_tool = await tool_pages(client, dict(args))
                expected, _ = bound_page(
                    {"data": rest_pages({k: v for k, v in args.items()})}, LIST_TEXT_CHARS
                )
                assert by_tool == expected["data"], args
                assert len(by_tool) == 39  # 3 x 12 notes and dora's 3

    run(scenario)


def test_a_withheld_field_never_appears(connect: Connect, mcp_world: McpWorld) -> None:
    alice = mcp_world.world.conns["alice"]
    seen: list[str] = []

    reads: list[tuple[str, dict[str, Any]]] = [
        ("schema", {"detail": "full"}),
        ("list_streams", {}),
        ("query_records", {"stream": "notes", "limit": 100}),
        ("query_records", {"stream": "notes", "changes_since": "beginning", "limit": 100}),
        ("search", {"q": "alice"}),
        ("fetch", {"id": f"{alice}/notes:n01"}),
        ("aggregate", {"stream": "notes", "metric": "count", "group_by": "tag"}),
    ]
    refused: list[tuple[str, dict[str, Any]]] = [
        ("query_records", {"stream": "notes", "fields": ["secret"]}),
        ("fetch", {"id": f"{alice}/notes:n01", "fields": ["title", "secret"]}),
        ("read_record_field", {"id": f"{alice}/notes:n01", "field_path": "secret"}),
        ("aggregate", {"stream": "notes", "metric": "count", "group_by": "secret"}),
        ("aggregate", {"stream": "notes", "metric": "count_distinct", "field": "secret"}),
        ("query_records", {"stream": "notes", "filter": {"secret": "zephyr alice"}}),
    ]

    async def scenario() -> None:
        async with connect(mcp_world.token) as client:
            for name, args in reads:
                result = await client.call_tool(name, args)
                assert not result.is_error, (name, result.content)
                seen.extend([text(result.content[0]), json.dumps(result.structured_content)])
            for word in SECRET_WORDS:
                hits = await call(client, "search", {"q": word})
                assert hits["results"] == []
            for name, args in refused:
                error = await failure(client, name, args)
                assert error["code"] == "field_not_granted", (name, error)
                seen.append(json.dumps(error))
            for uri in ("pdpp://stream/notes", RecordHandle("notes", "n02", alice).uri):
                seen.extend(text(c) for c in (await client.read_resource(uri)).contents)

    run(scenario)
    everything = "\n".join(seen)
    assert "alice" in everything and "garden" in everything
    assert not [word for word in SECRET_WORDS if word in everything]


def test_a_revoked_grant_is_a_tool_error_on_the_next_call(
    connect: Connect, mcp_world: McpWorld
) -> None:
    grant_id, token = mcp_world.grant()

    async def scenario() -> None:
        async with connect(token) as client:
            await call(client, "list_streams", {})
            AccessOperations(mcp_world.world.home).revoke_grant(grant_id)
            for name, args in [
                ("list_streams", {}),
                ("query_records", {"stream": "notes"}),
                ("search", {"q": "garden"}),
            ]:
                error = await failure(client, name, args)
                assert error["code"] == "grant_revoked" and error["type"] == "permission_error"
                assert grant_id in error["message"]
            with pytest.raises(MCPError) as raised:
                await client.read_resource("pdpp://stream/notes")
            assert raised.value.data["error"]["code"] == "grant_revoked"

    run(scenario)


def test_long_text_is_cut_with_the_way_to_read_the_rest(
    connect: Connect, mcp_world: McpWorld
) -> None:
    dora = mcp_world.world.conns["dora"]
    handle = f"{dora}/notes:n01"

    async def scenario() -> None:
        async with connect(mcp_world.token) as client:
            page = await call(
                client, "query_records", {"stream": "notes", "connection_id": dora}
            )
            [cut] = page["windows"]
            assert cut["id"] == handle and cut["field"] == "body"
            assert cut["total_chars"] == len(LONG_BODY)
            assert cut["shown_chars"] == LIST_TEXT_CHARS
            [record] = [r for r in page["data"]["data"] if r["id"] == "n01"]
            assert record["data"]["body"] == LONG_BODY[:LIST_TEXT_CHARS]
            # the pointer reads on from where the page stopped
            text = record["data"]["body"]
            step = cut["read_more"]
            assert step["tool"] == "read_record_field"
            args = step["arguments"]
            while True:
                window = (await call(client, step["tool"], args))["data"]["window"]
                text += window["text"]
                if not window["has_more"]:
                    break
                args = {**args, "offset_chars": window["next_offset_chars"]}
            assert text == LONG_BODY
            # one record is cut at a field window's default length
            document = await call(client, "fetch", {"id": handle})
            assert document["data"]["data"]["body"] == LONG_BODY[:RECORD_TEXT_CHARS]
            assert document["windows"][0]["read_more"]["arguments"]["offset_chars"] == (
                RECORD_TEXT_CHARS
            )

    run(scenario)


def test_errors_keep_the_read_surface_codes(connect: Connect, mcp_world: McpWorld) -> None:
    alice, bob = mcp_world.world.conns["alice"], mcp_world.world.conns["bob"]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("query_records", {"stream": "listening_history"}, "grant_stream_not_allowed"),
        ("query_records", {"stream": "notes", "cursor": "pg1.forged"}, "invalid_cursor"),
        ("query_records", {"stream": "notes", "changes_since": "cs1.forged"}, "cursor_expired"),
        ("query_records", {"stream": "notes", "fields": ["nope"]}, "unknown_field"),
        ("query_records", {"stream": "notes", "connection_id": "cin_nope"},
         "connection_not_found"),
        ("query_records", {"stream": "notes", "limit": 0}, "invalid_request"),
        ("query_records", {"stream": "notes", "colour": "red"}, "invalid_request"),
        ("query_records", {"stream": "notes", "filter": "tag=odd"}, "invalid_request"),
        ("query_records", {"stream": "notes", "filter": {}}, "invalid_request"),
        ("query_records", {"stream": "notes", "filter": {"filter[tag]": "odd"}},
         "invalid_request"),
        ("query_records", {"stream": "notes", "filter": {"tag": "odd"}}, "invalid_request"),
        ("search", {"q": "garden", "filter": {"tag": {"gte": "a"}}}, "invalid_request"),
        ("aggregate", {"stream": "notes", "metric": "count", "filter": {"nope": 1}},
         "unknown_field"),
        ("fetch", {"id": "notes:n01"}, "ambiguous_connection"),
        ("fetch", {"id": f"{alice}/notes:n01", "connection_id": bob}, "invalid_argument"),
        ("fetch", {"id": "n01"}, "invalid_argument"),
        ("fetch", {"id": f"{alice}/notes:nope"}, "not_found"),
        ("read_record_field", {"id": f"{alice}/notes:n01", "field_path": "body", "q": "zzz"},
         "query_not_found"),
        ("read_record_field",
         {"id": f"{alice}/notes:n01", "field_path": "body", "before_chars": 3},
         "invalid_window"),
        ("aggregate", {"stream": "notes", "metric": "sum", "field": "title"}, "invalid_request"),
        ("aggregate", {"stream": "notes", "metric": "count", "group_by": "tag", "limit": 101},
         "invalid_request"),
        ("search", {"q": "garden", "cursor": "sr1.forged"}, "invalid_cursor"),
    ]

    async def scenario() -> None:
        async with connect(mcp_world.token) as client:
            schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}
            for name, args, code in cases:
                error = await failure(client, name, args, schemas[name])
                assert error["code"] == code, (name, args, error)
            ambiguous = await failure(client, "fetch", {"id": "notes:n01"})
            assert alice in {c["connection_id"] for c in ambiguous["available_connections"]}
            # the legacy id with a connection_id is one record
            found = await call(client, "fetch", {"id": "notes:n01", "connection_id": bob})
            assert found["id"] == f"{bob}/notes:n01"
            with pytest.raises(MCPError):
                await client.call_tool("no_such_tool", {})

    run(scenario)


def test_reads_count_in_the_access_log_and_audit_nothing(
    connect: Connect, mcp_world: McpWorld, request: pytest.FixtureRequest
) -> None:
    client_id = f"counted.{request.node.callspec.id}"
    grant_id, token = mcp_world.grant(client_id)
    store = mcp_world.world.store
    audited = len(store.audit_events(limit=10_000))

    async def scenario() -> None:
        async with connect(token) as client:
            await call(client, "query_records", {"stream": "notes", "limit": 5})
            await call(client, "schema", {})

    run(scenario)  # closing the session flushes the counts (the stdio server exits)
    mcp_world.world.home.usage.flush()
    counted = store.access_log(client_id=client_id)
    assert {(c.grant_id, c.stream) for c in counted} == {(grant_id, "notes")}
    assert sum(c.records for c in counted) == 5
    assert len(store.audit_events(limit=10_000)) == audited
