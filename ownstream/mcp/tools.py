"""The MCP tools: each one validates its arguments, calls the read domain (`ownstream.reads`)
exactly as the REST handler of the same read does, and returns the REST body as
`structuredContent.data` (bounded: see `bounds`), with a short text for the model.

A tool is one `Tool` entry in `TOOLS`: a name, a description written for a model, an input
schema (which also validates the arguments) and a function of the reader and the arguments.
Adding a tool is adding one function and its entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jsonschema_rs
import orjson

from ownstream.errors import FieldNotGranted, InvalidArgument, InvalidRequest, UnknownField
from ownstream.grants.scope import readable_streams, scope_for
from ownstream.home import Home
from ownstream.mcp.bounds import LIST_TEXT_CHARS, RECORD_TEXT_CHARS, bound_page, bound_record
from ownstream.mcp.handles import RecordHandle, parse_handle
from ownstream.model import Bearer, ReadScope
from ownstream.reads import aggregation, field_window, metadata, records

Args = dict[str, Any]
TITLE_CHARS = 200
PREVIEW_HITS = 5
OBJECT: dict[str, Any] = {"type": "object"}
LIST: dict[str, Any] = {"type": "array"}
STRING: dict[str, Any] = {"type": "string"}


@dataclass(frozen=True)
class Reader:
    """Who reads, and from which data directory: every tool reads as this bearer only."""

    home: Home
    who: Bearer

    def scope(
        self, stream: str, connection_id: str | None = None, fields: list[str] | None = None
    ) -> ReadScope:
        return scope_for(
            self.who, self.home.store, self.home.catalog, stream,
            connection_id=connection_id, fields=fields,
        )


@dataclass(frozen=True)
class Answer:
    """A tool's result: the structured content and the text a model reads."""

    structured: dict[str, Any]
    text: str


def as_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def query_value(args: Args, name: str) -> str | None:
    """An argument as the REST query parameter it stands for: the read functions that parse
    parameters (field windows, aggregations) parse exactly what REST hands them."""
    value = args.get(name)
    return None if value is None else str(value)


def summarized(summary: str, structured: dict[str, Any]) -> Answer:
    """A summary line for the model, then the structured content itself as JSON (for hosts
    that show a model only the text)."""
    return Answer(structured, f"{summary}\n{as_json(structured)}")


@dataclass(frozen=True)
class Tool:
    """One MCP tool; its input schema is both what `tools/list` shows and what a call's
    arguments must match."""

    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[Reader, Args], Answer]
    output_schema: dict[str, Any] = field(default_factory=lambda: output_schema({"data": OBJECT}))

    @cached_property
    def _validator(self) -> jsonschema_rs.Draft202012Validator:
        return jsonschema_rs.Draft202012Validator(self.input_schema)

    def arguments(self, raw: Args | None) -> Args:
        """The arguments, if they match the input schema; otherwise `invalid_request`, as a
        REST request that fails validation is."""
        args = raw or {}
        error = next(self._validator.iter_errors(args), None)
        if error is not None:
            path = list(error.instance_path)
            raise InvalidRequest(error.message, param=str(path[0]) if path else None)
        return args


def output_schema(properties: dict[str, Any]) -> dict[str, Any]:
    """The structured content of a call: these properties, or `error` (the PDPP error object)
    when the call failed; clients validate a failed call's content against it too."""
    return {
        "type": "object",
        "properties": {**properties, "error": {"type": "object"}},
        "anyOf": [{"required": list(properties)}, {"required": ["error"]}],
    }


# -- argument schemas -----------------------------------------------------------------------
def _schema(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


TEXT = {"type": "string", "minLength": 1}
COUNT = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
PAGE_LIMIT = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
STREAM = {**TEXT, "description": "A stream name from schema or list_streams."}
CONNECTION_ID = {
    **TEXT,
    "description": "Read only this connection (one account or archive the owner connected) "
    "instead of every connection the grant covers. Ids come from list_streams, schema "
    "(granted_connections) or an ambiguous_connection error.",
}
CURSOR = {**TEXT, "description": "data.next_cursor of the previous page."}
FIELDS = {
    "type": "array",
    "items": TEXT,
    "minItems": 1,
    "description": "Only these fields (plus the stream's required ones). A field the grant "
    "withholds is refused with field_not_granted.",
}
SCALAR = {"type": ["string", "number", "boolean"]}
FILTER = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": r"^[^\[\]]+$"},
    "additionalProperties": {
        "anyOf": [
            SCALAR,
            {
                "type": "object",
                "properties": {op: SCALAR for op in ("gte", "gt", "lte", "lt")},
                "minProperties": 1,
                "additionalProperties": False,
            },
        ]
    },
    "description": "Typed record filter, {field: value} or {field: {gte|gt|lte|lt: value}}: "
    "only on fields whose schema capabilities mark exact_filter or range_filter usable. No "
    "stream declares filters yet, so a filter is refused (invalid_request).",
}


def refuse_filter(scope: ReadScope, requested: Args | None) -> None:
    """A typed filter meets the same refusal as REST `filter[...]`: no stream declares a
    filterable field (`field_capabilities.*.exact_filter/range_filter` are never usable)."""
    if requested is None:
        return
    for name in requested:
        if name not in scope.stream.fields:
            raise UnknownField(f"{scope.stream.name} has no field {name!r}", param="filter")
        if name not in scope.fields:
            raise FieldNotGranted(f"the grant does not include field {name!r}", param="filter")
    raise InvalidRequest(
        f"{scope.stream.name} declares no filterable field; use search or aggregate",
        param="filter",
    )


# -- the tools ------------------------------------------------------------------------------
def schema(reader: Reader, args: Args) -> Answer:
    detail = args.get("detail", "compact")
    body = metadata.schema_document(
        reader.home,
        reader.who,
        stream=args.get("stream"),
        connection_id=args.get("connection_id"),
        connector_id=None,
        view=None,
        detail=detail,
    )
    names = [s["name"] for c in body["connectors"] for s in c["streams"]]
    return summarized(f"{len(names)} readable stream(s): {', '.join(names)}", {"data": body})


def list_streams(reader: Reader, args: Args) -> Answer:
    body = metadata.list_streams(reader.home, reader.who, args.get("connection_id"), [])
    lines = [
        f"{e['name']} from {e['connection_id']}"
        + (f" ({e['display_name']})" if "display_name" in e else "")
        + f": {e['record_count']} records, last updated {e['last_updated']}"
        for e in body["data"]
    ]
    return summarized("\n".join(lines) or "no readable streams", {"data": body})


def _paging(body: dict[str, Any]) -> str:
    if body.get("has_more"):
        return f"has_more=true; pass cursor={body['next_cursor']} for the next page"
    if "next_changes_since" in body:
        return f"last page; next sync: changes_since={body['next_changes_since']}"
    return "last page"


def query_records(reader: Reader, args: Args) -> Answer:
    stream = args["stream"]
    scope = reader.scope(stream, args.get("connection_id"), args.get("fields"))
    refuse_filter(scope, args.get("filter"))
    body = records.list_records(
        reader.home,
        reader.who,
        scope,
        limit=args.get("limit"),
        cursor=args.get("cursor"),
        order=args.get("order"),
        changes_since=args.get("changes_since"),
        warnings=[],
    )
    shown, cuts = bound_page(body, LIST_TEXT_CHARS)
    return summarized(
        f"{len(shown['data'])} record(s) of {stream}; {_paging(body)}",
        {"data": shown, "windows": cuts},
    )


def search_result(hit: dict[str, Any]) -> dict[str, Any]:
    """A hit in the shape search-and-fetch assistants expect: an id for `fetch`, a title and
    a URL, with its stream and connection."""
    handle = RecordHandle(hit["stream"], hit["record_key"], hit["connection_id"])
    label = [hit["display_name"]] if "display_name" in hit else []
    result = {
        "id": handle.id,
        "title": " · ".join([*label, hit["stream"], hit["record_key"]]),
        "url": handle.uri,
        "stream": hit["stream"],
        "record_id": hit["record_key"],
        "connection_id": hit["connection_id"],
        "matched_fields": hit["matched_fields"],
    }
    if "snippet" in hit:
        result["snippet"] = hit["snippet"]["text"]
    return result


def search(reader: Reader, args: Args) -> Answer:
    if args.get("filter") is not None:
        readable = [d.name for d in readable_streams(reader.who, reader.home.catalog)]
        for stream in args.get("streams") or readable:
            refuse_filter(reader.scope(stream), args["filter"])
    body = records.search(
        reader.home,
        reader.who,
        args["q"],
        streams=args.get("streams"),
        connection_id=args.get("connection_id"),
        limit=args.get("limit"),
        cursor=args.get("cursor"),
        warnings=[],
    )
    results = [search_result(hit) for hit in body["data"]]
    lines = [f"{len(results)} hit(s); {_paging(body)}"]
    if results:
        lines.append(f"first_fetch_id={results[0]['id']} (pass an id to fetch unchanged)")
    lines += [
        f"{r['id']}: {r.get('snippet', r['title'])}" for r in results[:PREVIEW_HITS]
    ]
    return summarized("\n".join(lines), {"data": body, "results": results})


def _title(scope: ReadScope, record: dict[str, Any]) -> str:
    """The first granted searchable text of the record (a subject, a title, a track name),
    else its stream and key."""
    for name in scope.stream.searchable_fields:
        value = record["data"].get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:TITLE_CHARS]
    return f"{record['stream']} {record['id']}"


def fetched(reader: Reader, handle: RecordHandle, fields: list[str] | None) -> dict[str, Any]:
    """One record as a search-and-fetch document, its REST body as `data` (bounded)."""
    scope = reader.scope(handle.stream, handle.connection_id, fields)
    body = records.get_record(reader.home, reader.who, scope, handle.record_id, [])
    shown, cuts = bound_record(body, RECORD_TEXT_CHARS)
    found = RecordHandle(handle.stream, body["id"], body["connection_id"])
    about = {
        key: body[key]
        for key in ("stream", "connection_id", "display_name", "emitted_at")
        if key in body
    }
    return {
        "id": found.id,
        "title": _title(scope, shown),
        "text": as_json(shown["data"]),
        "url": found.uri,
        "metadata": {**about, "record_id": body["id"]},
        "data": shown,
        "windows": cuts,
    }


def fetch(reader: Reader, args: Args) -> Answer:
    handle = parse_handle(args["id"])
    named = args.get("connection_id")
    if named is not None and handle.connection_id not in (None, named):
        raise InvalidArgument(
            f"the id names connection {handle.connection_id}, connection_id names {named}",
            param="connection_id",
        )
    if named is not None:
        handle = RecordHandle(handle.stream, handle.record_id, named)
    document = fetched(reader, handle, args.get("fields"))
    cut = f"; cut: {as_json(document['windows'])}" if document["windows"] else ""
    return Answer(
        document, f"{document['id']}: {document['title']}{cut}\n{document['text']}"
    )


def read_record_field(reader: Reader, args: Args) -> Answer:
    handle = parse_handle(args["id"])
    warnings: list[dict[str, Any]] = []
    selector = field_window.parse_selector(
        offset_chars=query_value(args, "offset_chars"),
        limit_chars=query_value(args, "limit_chars"),
        q=args.get("q"),
        before_chars=query_value(args, "before_chars"),
        after_chars=query_value(args, "after_chars"),
        warnings=warnings,
    )
    body = field_window.field_window(
        reader.home,
        reader.who,
        reader.scope(handle.stream, handle.connection_id),
        handle.record_id,
        args["field_path"],
        selector,
        warnings,
    )
    part = body["window"]
    more = (
        f"; read on with offset_chars={part['next_offset_chars']}" if part["has_more"] else ""
    )
    header = (
        f"{handle.id} {args['field_path']}: characters {part['start_chars']}-"
        f"{part['end_chars']} of {part['total_chars']}{more}"
    )
    return Answer({"data": body}, f"{header}\n{part['text']}")


def aggregate(reader: Reader, args: Args) -> Answer:
    stream = args["stream"]
    scope = reader.scope(stream, args.get("connection_id"))
    refuse_filter(scope, args.get("filter"))
    params = {name: query_value(args, name) for name in aggregation.PARAMS}
    body = aggregation.aggregate(reader.home.store, scope, params)
    head = f"{body['metric']}({stream}" + (f", {body['field']})" if body["field"] else ")")
    if "groups" in body:
        by = body["group_by"] or f"{body['group_by_time']} by {body['granularity']}"
        groups = ", ".join(f"{g['key']}={g['count']}" for g in body["groups"])
        summary = f"{head} grouped by {by}: {groups}; other_count={body['other_count']}"
    else:
        summary = f"{head} = {body['value']} over {body['filtered_record_count']} records"
    return summarized(summary, {"data": body})


TOOLS: tuple[Tool, ...] = (
    Tool(
        "schema",
        "What the grant can read",
        "Describes every stream this grant can read: its fields (granted or not), which "
        "fields search, aggregate and fields= can use, and the connections it covers "
        "(connection_id, display_name). Call it first. detail=compact (the default) gives one "
        "capability string per field: t=type, lex=searchable, a=aggregations usable, "
        "g=false=withheld by the grant; detail=full adds each field's JSON Schema and "
        "freshness. stream and connection_id narrow it. structuredContent.data is the REST "
        "GET /v1/schema body.",
        _schema(
            {
                "stream": STREAM,
                "connection_id": CONNECTION_ID,
                "detail": {"enum": ["compact", "full"]},
            }
        ),
        schema,
    ),
    Tool(
        "list_streams",
        "Streams and their connections",
        "One entry per (stream, connection) the grant can read: name, connection_id, "
        "display_name (the owner's label for that account or archive, when set), "
        "record_count and last_updated, within the grant's time window. A stream filled from "
        "several accounts or archives appears once per connection.",
        _schema({"connection_id": CONNECTION_ID}),
        list_streams,
    ),
    Tool(
        "query_records",
        "Page through a stream",
        "A page of one stream's records, newest first (order=asc for oldest first), merged "
        "across the grant's connections; every record carries connection_id (and "
        "display_name) naming the account or archive it came from. limit is 25 by default "
        "and at most 100. While data.has_more, pass data.next_cursor as cursor. "
        "changes_since=beginning reads a change feed instead (inserts, updates, deletions as "
        "tombstones): follow next_cursor, then keep data.next_changes_since for the next "
        "sync. Text values over 1,000 characters and lists over 50 items are cut; "
        "structuredContent.windows lists each cut with read_record_field arguments to read "
        "on. Use aggregate for counts and sums.",
        _schema(
            {
                "stream": STREAM,
                "limit": PAGE_LIMIT,
                "cursor": CURSOR,
                "order": {"enum": ["desc", "asc"]},
                "fields": FIELDS,
                "changes_since": {
                    **TEXT,
                    "description": "beginning, or data.next_changes_since of an earlier "
                    "sync; never a timestamp.",
                },
                "connection_id": CONNECTION_ID,
                "filter": FILTER,
            },
            "stream",
        ),
        query_records,
        output_schema=output_schema({"data": OBJECT, "windows": LIST}),
    ),
    Tool(
        "search",
        "Find records by words",
        "Lexical search over the searchable fields the grant includes, in every granted "
        "stream (streams narrows), newest-collected first. All words must match; word* "
        "matches a prefix. Each result has an id (connection_id/stream:record_id) to pass to "
        "fetch unchanged, the stream, connection_id, matched fields and a snippet, never the "
        "whole record. limit is 25 by default and at most 100; while data.has_more, pass "
        "data.next_cursor as cursor.",
        _schema(
            {
                "q": {**TEXT, "description": "Words that must all occur; word* for a prefix."},
                "streams": {"type": "array", "items": TEXT, "minItems": 1},
                "limit": PAGE_LIMIT,
                "cursor": CURSOR,
                "connection_id": CONNECTION_ID,
                "filter": FILTER,
            },
            "q",
        ),
        search,
        output_schema=output_schema({"data": OBJECT, "results": LIST}),
    ),
    Tool(
        "fetch",
        "Read one record",
        "One record by a search result id (connection_id/stream:record_id; stream:record_id "
        "with connection_id also works). Returns a document: id, title, text (the record's "
        "fields as JSON), url (its pdpp://record resource), metadata (stream, connection_id, "
        "display_name, emitted_at) and data, the REST record body. Text values over 4,096 "
        "characters and lists over 50 items are cut; windows lists each cut with "
        "read_record_field arguments to read on. An ambiguous_connection error lists the "
        "connections to choose from.",
        _schema(
            {
                "id": {
                    **TEXT,
                    "description": "A search result id, or a pdpp://record/... URI.",
                },
                "connection_id": CONNECTION_ID,
                "fields": FIELDS,
            },
            "id",
        ),
        fetch,
        output_schema=output_schema(
            {"id": STRING, "title": STRING, "text": STRING, "url": STRING, "metadata": OBJECT,
             "data": OBJECT, "windows": LIST}
        ),
    ),
    Tool(
        "read_record_field",
        "Read more of a long text field",
        "A window of one long text field of one record (a mail body, say): from offset_chars "
        "(default 0), limit_chars long (4,096 by default, at most 16,384); or, with q, around "
        "the first occurrence of q (case-insensitive) with before_chars/after_chars of "
        "context. data.window has the text, total_chars, has_more and next_offset_chars for "
        "the next call.",
        _schema(
            {
                "id": {**TEXT, "description": "A record id as search and fetch return it."},
                "field_path": {**TEXT, "description": "A top-level text field."},
                "offset_chars": COUNT,
                "limit_chars": PAGE_LIMIT,
                "q": TEXT,
                "before_chars": COUNT,
                "after_chars": COUNT,
            },
            "id",
            "field_path",
        ),
        read_record_field,
    ),
    Tool(
        "aggregate",
        "Count, sum and group records",
        "Answers how many, how much and when without reading records: metric count, sum, "
        "min, max or count_distinct (field required except for count) over the stream's "
        "records the grant can read, or counts grouped by one field (group_by) or by time "
        "bucket (group_by_time with granularity minute|hour|day|week|month|quarter|year, "
        "time_zone an IANA name, default UTC). Only fields whose schema capabilities list the "
        "operation (a=...) work. Grouped results hold the top limit groups (default 10, 1 to "
        "100, largest first); other_count totals the groups left out, so other_count > 0 "
        "means there are more.",
        _schema(
            {
                "stream": STREAM,
                "metric": {"enum": list(aggregation.METRICS)},
                "field": TEXT,
                "group_by": TEXT,
                "group_by_time": TEXT,
                "granularity": {"enum": list(aggregation.GRANULARITIES)},
                "time_zone": TEXT,
                "limit": {"type": "integer"},
                "connection_id": CONNECTION_ID,
                "filter": FILTER,
            },
            "stream",
            "metric",
        ),
        aggregate,
    ),
)
