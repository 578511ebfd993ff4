"""PDPP read endpoints (/v1/streams, /v1/search, /v1/schema) for clients and the owner.

Each handler parses its declared parameters, calls the read domain (`ownstream.reads`) and
renders the body; every read is scoped by `grants.scope.scope_for`, and nothing here filters
data itself. Handlers are plain `def`: FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from ownstream.api.deps import bearer, check_params, home, int_value, list_param, narrowing
from ownstream.api.errors import envelope
from ownstream.api.responses import JSONBody
from ownstream.errors import InsufficientScope, RangeNotSatisfiable
from ownstream.grants.scope import scope_for
from ownstream.model import Bearer, ReadScope
from ownstream.owner import WriteOperations
from ownstream.reads import aggregation, blobs, field_window, metadata, records
from ownstream.reads.query import NO_QUERY, OWNER_PARAMS, OwnerQuery, parse_owner_query

router = APIRouter(tags=["read"])

Text = Annotated[str | None, Query()]
NARROWING = ("connection_id", "connector_instance_id")
RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
# Content someone else chose (an HTML or SVG attachment) is never rendered in our origin: it is
# a download, never sniffed into another type, and sandboxed if a browser shows it anyway.
BLOB_HEADERS = {
    "Accept-Ranges": "bytes",
    "Cache-Control": "private, no-store",
    "Content-Disposition": "attachment",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}


@dataclass(frozen=True)
class Read:
    """A read request's common part: the bearer, the connection narrowing and its warnings."""

    request: Request
    who: Bearer
    connection_id: str | None
    warnings: list[dict[str, Any]]

    def scope(self, stream: str, fields: list[str] | None = None) -> ReadScope:
        h = home(self.request)
        return scope_for(
            self.who, h.store, h.catalog, stream, connection_id=self.connection_id, fields=fields
        )

    def owner_query(self, scope: ReadScope, *, fields_requested: bool) -> OwnerQuery:
        """The owner's filters, view, expansions and sort (a client never has any: they were
        refused before anything was looked up)."""
        if self.who.kind != "owner":
            return NO_QUERY
        return parse_owner_query(
            self.request.query_params.multi_items(),
            scope.stream,
            home(self.request).catalog,
            fields_requested=fields_requested,
            warnings=self.warnings,
        )


def read(
    request: Request,
    connection_id: Annotated[
        str | None, Query(description="Narrow the read to one readable connection.")
    ] = None,
    connector_instance_id: Annotated[
        str | None, Query(deprecated=True, description="Deprecated alias of connection_id.")
    ] = None,
) -> Read:
    warnings: list[dict[str, Any]] = []
    return Read(
        request,
        bearer(request),
        narrowing(connection_id, connector_instance_id, warnings),
        warnings,
    )


def allow(names: tuple[str, ...], owner_params: tuple[str, ...] = ()) -> Any:
    """A dependency: the read, once every query parameter is known to be one of `names`
    (or the connection narrowing), or, for the owner, one of `owner_params`."""

    # async: checking names is pure Python, and a sync dependency costs a worker-thread hop
    async def checked(current: Annotated[Read, Depends(read)]) -> Read:
        check_params(current.request, current.who, (*names, *NARROWING), owner_params)
        return current

    return Depends(checked)


# List parameters are declared one by one (FastAPI reads a parameter's name from the signature);
# each is also read as `name[]=` and comma-separated.
def fields_param(
    request: Request,
    fields: Annotated[list[str] | None, Query(description="Sparse fieldset")] = None,
) -> list[str] | None:
    return list_param(request, "fields", fields)


def streams_param(
    request: Request,
    streams: Annotated[list[str] | None, Query(description="Streams to search")] = None,
) -> list[str] | None:
    return list_param(request, "streams", streams)


def expand_param(
    request: Request,
    expand: Annotated[
        list[str] | None,
        Query(description="Owner only: relations to expand (declared under `expand`)"),
    ] = None,
) -> list[str] | None:
    return list_param(request, "expand", expand)


Fields = Annotated[list[str] | None, Depends(fields_param)]
Expand = Annotated[list[str] | None, Depends(expand_param)]
OwnerText = Annotated[str | None, Query(description="Owner only")]
# `filter[field]`, `filter[field][op]` and `expand_limit[relation]` have open names: documented
# as deep objects (the read domain validates each against the definition)
DEEP_PARAMS = {
    "filter": "Owner only: filter[field]=value (exact), filter[field][op]=value (gte, gt, lte, "
    "lt on declared range_filters)",
    "expand_limit": "Owner only: expand_limit[relation]=n for a has_many expansion",
}


def deep_params(*names: str) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "style": "deepObject",
                "explode": True,
                "description": DEEP_PARAMS[name],
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            }
            for name in names
        ]
    }


@router.get("/v1/streams")
def list_streams(current: Annotated[Read, allow(())]) -> JSONBody:
    return JSONBody(
        metadata.list_streams(
            home(current.request), current.who, current.connection_id, current.warnings
        )
    )


@router.get("/v1/streams/{stream}")
def get_stream(stream: str, current: Annotated[Read, allow(())]) -> JSONBody:
    return JSONBody(
        metadata.metadata_for(
            home(current.request),
            current.scope(stream),
            current.warnings,
            owner=current.who.kind == "owner",
        )
    )


@router.get("/v1/streams/{stream}/records", openapi_extra=deep_params("filter", "expand_limit"))
def list_records(
    stream: str,
    current: Annotated[
        Read,
        allow(("limit", "cursor", "order", "fields", "fields[]", "changes_since"), OWNER_PARAMS),
    ],
    fields: Fields,
    expand: Expand,
    limit: Text = None,
    cursor: Text = None,
    order: Annotated[str | None, Query(description="desc (default) or asc")] = None,
    changes_since: Annotated[
        str | None, Query(description="`beginning`, or a next_changes_since token")
    ] = None,
    view: OwnerText = None,
    sort: Annotated[
        str | None, Query(description="Owner only: the cursor field, `-` first for descending")
    ] = None,
) -> JSONBody:
    scope = current.scope(stream, fields)
    return JSONBody(
        records.list_records(
            home(current.request),
            current.who,
            scope,
            limit=int_value(limit, "limit"),
            cursor=cursor,
            order=order,
            changes_since=changes_since,
            warnings=current.warnings,
            query=current.owner_query(scope, fields_requested=fields is not None),
        )
    )


@router.get("/v1/streams/{stream}/aggregate", openapi_extra=deep_params("filter"))
def aggregate(
    stream: str,
    current: Annotated[Read, allow(aggregation.PARAMS, ("filter",))],
    metric: Annotated[
        str | None, Query(description="Required: count, sum, min, max or count_distinct")
    ] = None,
    field: Text = None,
    group_by: Text = None,
    group_by_time: Text = None,
    granularity: Annotated[
        str | None, Query(description="minute, hour, day, week, month, quarter or year")
    ] = None,
    time_zone: Annotated[str | None, Query(description="an IANA time zone name")] = None,
    limit: Text = None,
) -> JSONBody:
    params = {
        "metric": metric,
        "field": field,
        "group_by": group_by,
        "group_by_time": group_by_time,
        "granularity": granularity,
        "time_zone": time_zone,
        "limit": limit,
    }
    h = home(current.request)
    scope = current.scope(stream)
    query = current.owner_query(scope, fields_requested=False)
    return JSONBody(aggregation.aggregate(h.store, query.narrow(scope), params))


@router.get("/v1/streams/{stream}/records/{record_id:path}/field-window")
def get_field_window(
    stream: str,
    record_id: str,
    current: Annotated[
        Read,
        allow(("field", "offset_chars", "limit_chars", "q", "before_chars", "after_chars")),
    ],
    field: Annotated[str | None, Query(description="Required: a top-level text field")] = None,
    offset_chars: Text = None,
    limit_chars: Text = None,
    q: Text = None,
    before_chars: Text = None,
    after_chars: Text = None,
) -> JSONBody:
    selector = field_window.parse_selector(
        offset_chars=offset_chars,
        limit_chars=limit_chars,
        q=q,
        before_chars=before_chars,
        after_chars=after_chars,
        warnings=current.warnings,
    )
    return JSONBody(
        field_window.field_window(
            home(current.request),
            current.who,
            current.scope(stream),
            record_id,
            field,
            selector,
            current.warnings,
        )
    )


@router.get(
    "/v1/streams/{stream}/records/{record_id:path}", openapi_extra=deep_params("expand_limit")
)
def get_record(
    stream: str,
    record_id: str,
    current: Annotated[Read, allow(("fields", "fields[]"), ("view", "expand", "expand_limit"))],
    fields: Fields,
    expand: Expand,
    view: OwnerText = None,
) -> JSONBody:
    scope = current.scope(stream, fields)
    return JSONBody(
        records.get_record(
            home(current.request),
            current.who,
            scope,
            record_id,
            current.warnings,
            current.owner_query(scope, fields_requested=fields is not None),
        )
    )


@router.delete("/v1/streams/{stream}/records/{record_id:path}", status_code=204)
def delete_record(
    stream: str, record_id: str, current: Annotated[Read, allow(())]
) -> Response:
    """The owner deletes a record (PDPP "Delete a record"): a tombstone with provenance
    `owner`, whatever paths evidence it; a key held by several connections needs
    `connection_id` (409 `ambiguous_connection` otherwise)."""
    if current.who.kind != "owner":
        raise InsufficientScope("deleting a record needs the owner token")
    WriteOperations(home(current.request)).delete_record(stream, record_id, current.connection_id)
    return Response(status_code=204)


@router.get("/v1/search")
def search(
    current: Annotated[Read, allow(("q", "streams", "streams[]", "limit", "cursor"))],
    streams: Annotated[list[str] | None, Depends(streams_param)],
    q: Annotated[
        str | None, Query(description="Required: words that must all match; `word*` prefixes")
    ] = None,
    limit: Text = None,
    cursor: Text = None,
) -> JSONBody:
    return JSONBody(
        records.search(
            home(current.request),
            current.who,
            q,
            streams=streams,
            connection_id=current.connection_id,
            limit=int_value(limit, "limit"),
            cursor=cursor,
            warnings=current.warnings,
        )
    )


@router.get("/v1/schema")
def schema(
    current: Annotated[Read, allow(("stream", "connector_id", "view", "detail"))],
    stream: Text = None,
    connector_id: Text = None,
    view: Annotated[str | None, Query(description="compact or full (the default)")] = None,
    detail: Annotated[str | None, Query(description="compact or full; as view")] = None,
) -> JSONBody:
    return JSONBody(
        metadata.schema_document(
            home(current.request),
            current.who,
            stream=stream,
            connection_id=current.connection_id,
            connector_id=connector_id,
            view=view,
            detail=detail,
        )
    )


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range (first, last) a `Range` header asks for, or None to send the whole
    blob (no header, or one this server ignores as RFC 9110 allows: several ranges, another
    unit, malformed). A range that starts past the end is `range_not_satisfiable`."""
    match = RANGE.fullmatch(header.strip()) if header else None
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # the last N bytes
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("the range is empty", param="Range")
        return max(0, size - suffix), size - 1
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    if first >= size:
        raise RangeNotSatisfiable(f"the blob has {size} bytes", param="Range")
    return None if last < first else (first, last)


@router.head("/v1/blobs/{blob_id}", include_in_schema=False)  # the headers of the GET
@router.get("/v1/blobs/{blob_id}")
def get_blob(blob_id: str, request: Request) -> Response:
    """A blob's bytes, for a bearer that can read a record referencing it in a granted field
    (otherwise 404 `blob_not_found`, as for an unknown id). One `Range` is honoured (206);
    the file is read a chunk at a time off the event loop."""
    who = bearer(request)
    check_params(request, who, ())
    content = blobs.find_blob(home(request), who, blob_id)
    headers = {**BLOB_HEADERS, "ETag": content.etag, "Content-Type": content.mime_type}
    if request.headers.get("if-none-match") in (content.etag, "*"):
        return Response(status_code=304, headers=headers)
    # a Range is honoured unless If-Range names another version of the content
    honoured = request.headers.get("if-range") in (None, content.etag)
    try:
        span = byte_range(request.headers.get("range"), content.size) if honoured else None
    except RangeNotSatisfiable as exc:
        refused = envelope(request, exc.status, exc.to_dict())
        refused.headers["Content-Range"] = f"bytes */{content.size}"
        return refused
    status, first, last = 200, 0, content.size - 1
    if span is not None:
        status, (first, last) = 206, span
        headers["Content-Range"] = f"bytes {first}-{last}/{content.size}"
    headers["Content-Length"] = str(last - first + 1)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    return StreamingResponse(content.chunks(first, last + 1), status_code=status, headers=headers)
