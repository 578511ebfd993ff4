"""PDPP read endpoints (/v1/streams, /v1/search, /v1/schema) for clients and the owner.

Each handler parses its declared parameters, calls the read domain (`ownstream.reads`) and
renders the body; every read is scoped by `grants.scope.scope_for`, and nothing here filters
data itself. Handlers are plain `def`: FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ownstream.api.deps import bearer, check_params, home, int_value, list_param, narrowing
from ownstream.api.responses import JSONBody
from ownstream.grants.scope import scope_for
from ownstream.model import Bearer, ReadScope
from ownstream.reads import aggregation, field_window, metadata, records

router = APIRouter(tags=["read"])

Text = Annotated[str | None, Query()]
NARROWING = ("connection_id", "connector_instance_id")


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


def allow(names: tuple[str, ...]) -> Any:
    """A dependency: the read, once every query parameter is known to be one of `names`
    (or the connection narrowing)."""

    def checked(current: Annotated[Read, Depends(read)]) -> Read:
        check_params(current.request, current.who, (*names, *NARROWING))
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


Fields = Annotated[list[str] | None, Depends(fields_param)]


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
        metadata.metadata_for(home(current.request), current.scope(stream), current.warnings)
    )


@router.get("/v1/streams/{stream}/records")
def list_records(
    stream: str,
    current: Annotated[
        Read, allow(("limit", "cursor", "order", "fields", "fields[]", "changes_since"))
    ],
    fields: Fields,
    limit: Text = None,
    cursor: Text = None,
    order: Annotated[str | None, Query(description="desc (default) or asc")] = None,
    changes_since: Annotated[
        str | None, Query(description="`beginning`, or a next_changes_since token")
    ] = None,
) -> JSONBody:
    return JSONBody(
        records.list_records(
            home(current.request),
            current.who,
            current.scope(stream, fields),
            limit=int_value(limit, "limit"),
            cursor=cursor,
            order=order,
            changes_since=changes_since,
            warnings=current.warnings,
        )
    )


@router.get("/v1/streams/{stream}/aggregate")
def aggregate(
    stream: str,
    current: Annotated[Read, allow(aggregation.PARAMS)],
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
    return JSONBody(aggregation.aggregate(h.store, current.scope(stream), params))


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


@router.get("/v1/streams/{stream}/records/{record_id:path}")
def get_record(
    stream: str,
    record_id: str,
    current: Annotated[Read, allow(("fields", "fields[]"))],
    fields: Fields,
) -> JSONBody:
    return JSONBody(
        records.get_record(
            home(current.request),
            current.who,
            current.scope(stream, fields),
            record_id,
            current.warnings,
        )
    )


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
