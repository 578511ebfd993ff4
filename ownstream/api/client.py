"""PDPP read endpoints (/v1/streams, /v1/search, /v1/schema) for clients and the owner.

Every read is scoped by `grants.scope.scope_for`; nothing here filters data itself. Responses
carry grant-safe attribution (`connection_id`, a meaningful `display_name`) and never
acquisition provenance.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request

from ownstream.api import cursors
from ownstream.api.deps import (
    bearer,
    check_params,
    connection_param,
    home,
    int_param,
    list_param,
)
from ownstream.api.responses import JSONBody
from ownstream.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    CursorExpired,
    InvalidArgument,
    InvalidCursor,
    NotFound,
)
from ownstream.grants.scope import display_names, readable_streams, scope_for
from ownstream.home import Home
from ownstream.model import Bearer, ReadScope
from ownstream.search import matches, parse_query
from ownstream.store.base import RecordPosition

router = APIRouter()

MAX_LIMIT = 100
DEFAULT_LIMIT = 25
SEARCH_MAX_LIMIT = 50
SEARCH_DEFAULT_LIMIT = 10


def _attribution(connection_id: str, labels: dict[str, str | None]) -> dict[str, Any]:
    entry: dict[str, Any] = {"connection_id": connection_id, "connector_instance_id": connection_id}
    label = labels.get(connection_id)
    if label:
        entry["display_name"] = label
    return entry


def _limit(request: Request, warnings: list[dict[str, Any]], default: int, maximum: int) -> int:
    limit = int_param(request, "limit", default)
    if limit > maximum:
        warnings.append(
            {
                "code": "limit_clamped",
                "message": f"limit was clamped to {maximum}",
                "param": "limit",
                "detail": {"max_limit": maximum, "requested_limit": limit},
            }
        )
        return maximum
    return limit


def _scopes(who: Bearer, h: Home, names: list[str], narrowed: str | None) -> list[ReadScope]:
    """A scope per stream. With `connection_id`, streams that connection is not readable in
    drop out; if it is readable in none, the answer is `connection_not_found`."""
    scopes = []
    for name in dict.fromkeys(names):
        try:
            scopes.append(scope_for(who, h.store, h.catalog, name, connection_id=narrowed))
        except ConnectionNotFound:
            continue
    if narrowed is not None and not scopes:
        raise ConnectionNotFound(f"no readable connection {narrowed!r}", param="connection_id")
    return scopes


def _note_read(h: Home, who: Bearer, stream: str, connection_ids: list[str]) -> None:
    """Count a client's read for the owner's access log (in memory; flushed in bulk)."""
    if who.kind == "client":
        counts: dict[str, int] = {}
        for connection_id in connection_ids:
            counts[connection_id] = counts.get(connection_id, 0) + 1
        h.usage.note_read(who, stream, counts)


def stream_metadata(scope: ReadScope, labels: dict[str, str | None]) -> dict[str, Any]:
    """A stream as the bearer sees it: the schema of its visible fields, and its readable
    connections (`labels` holds the connections that still exist)."""
    definition, visible = scope.stream, scope.fields
    schema = {
        **definition.schema,
        "properties": {
            k: v for k, v in definition.schema.get("properties", {}).items() if k in visible
        },
        "required": [f for f in definition.schema.get("required", []) if f in visible],
    }
    return {
        "object": "stream_metadata",
        "name": definition.name,
        "version": definition.version,
        "description": definition.description,
        "semantics": definition.semantics,
        "schema": schema,
        "primary_key": list(definition.primary_key),
        "cursor_field": definition.cursor_field,
        "consent_time_field": definition.consent_time_field,
        "granted_fields": list(visible),
        "query": {
            "search": {
                "lexical_fields": [f for f in definition.searchable_fields if f in visible],
            }
        },
        "granted_connections": [
            {k: v for k, v in _attribution(c, labels).items() if k != "connector_instance_id"}
            for c in scope.connection_ids
            if c in labels
        ],
    }


@router.get("/v1/streams")
def list_streams(request: Request) -> JSONBody:
    who = bearer(request)
    check_params(request, who, ("connection_id", "connector_instance_id"))
    warnings: list[dict[str, Any]] = []
    narrowed = connection_param(request, warnings)
    h = home(request)
    entries: list[dict[str, Any]] = []
    scopes = _scopes(who, h, [d.name for d in readable_streams(who, h.catalog)], narrowed)
    live = {
        c.connection_id
        for c in h.store.connections(
            connection_ids=sorted({c for s in scopes for c in s.connection_ids})
        )
    }
    labels = display_names(h.store, sorted(live))
    stats = {(row.connection_id, row.stream): row for row in h.store.stream_counts(sorted(live))}
    for scope in scopes:
        windowed = scope.since is not None or scope.until is not None or scope.resources is not None
        counted = h.store.scoped_count(scope) if windowed else {}
        # a client's last_updated moves only with data it can see, never with hidden fields
        visible = h.store.visible_last_change(scope) if who.kind == "client" else None
        for connection_id in scope.connection_ids:
            if connection_id not in live:
                continue
            if windowed:
                count, last = counted.get(connection_id, (0, None))
            else:
                row = stats.get((connection_id, scope.stream.name))
                count, last = (row.record_count, row.last_updated) if row else (0, None)
            if visible is not None:
                last = visible.get(connection_id)
            entries.append(
                {
                    "object": "stream",
                    "name": scope.stream.name,
                    **_attribution(connection_id, labels),
                    "record_count": count,
                    "last_updated": last,
                }
            )
    return JSONBody(
        {"object": "list", "data": entries, "has_more": False, "meta": {"warnings": warnings}}
    )


@router.get("/v1/streams/{stream}")
def get_stream(stream: str, request: Request) -> JSONBody:
    who = bearer(request)
    check_params(request, who, ("connection_id", "connector_instance_id"))
    warnings: list[dict[str, Any]] = []
    narrowed = connection_param(request, warnings)
    h = home(request)
    scope = scope_for(who, h.store, h.catalog, stream, connection_id=narrowed)
    body = stream_metadata(scope, display_names(h.store, scope.connection_ids))
    body["meta"] = {"warnings": warnings}
    return JSONBody(body)


def _record(
    stream: str,
    connection_id: str,
    key: str,
    data: dict[str, Any],
    emitted_at: str,
    labels: dict[str, str | None],
) -> dict[str, Any]:
    return {
        "object": "record",
        "id": key,
        "stream": stream,
        "data": data,
        "emitted_at": emitted_at,
        **_attribution(connection_id, labels),
    }


@router.get("/v1/streams/{stream}/records")
def list_records(stream: str, request: Request) -> JSONBody:
    who = bearer(request)
    check_params(
        request,
        who,
        (
            "limit",
            "cursor",
            "order",
            "fields",
            "changes_since",
            "connection_id",
            "connector_instance_id",
        ),
    )
    warnings: list[dict[str, Any]] = []
    narrowed = connection_param(request, warnings)
    limit = _limit(request, warnings, DEFAULT_LIMIT, MAX_LIMIT)
    h = home(request)
    scope = scope_for(
        who,
        h.store,
        h.catalog,
        stream,
        connection_id=narrowed,
        fields=list_param(request, "fields"),
    )
    changes_since = request.query_params.get("changes_since")
    if changes_since is not None:
        return JSONBody(_changes(request, who, scope, changes_since, limit, warnings))
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidArgument("order must be asc or desc", param="order")
    after = None
    token = request.query_params.get("cursor")
    if token is not None:
        position = cursors.decode(h.vault, "page", token)
        if position.get("s") != stream or position.get("o") != order:
            raise InvalidCursor("cursor belongs to another stream or order", param="cursor")
        after = RecordPosition(*cursors.values(position, "cursor", v=str, c=str, r=str))
    page, has_more = h.store.records_page(scope, limit=limit, order=order, after=after)
    _note_read(h, who, stream, [r.connection_id for r in page])
    labels = display_names(h.store, sorted({r.connection_id for r in page}))
    body: dict[str, Any] = {
        "object": "list",
        "url": f"/v1/streams/{stream}/records",
        "data": [
            _record(stream, r.connection_id, r.record_key, r.data, r.emitted_at, labels)
            for r in page
        ],
        "has_more": has_more,
        "meta": {"count": {"kind": "none"}, "warnings": warnings},
    }
    if has_more:
        last = page[-1]
        body["next_cursor"] = cursors.encode(
            h.vault,
            "page",
            {
                "s": stream,
                "o": order,
                "v": last.cursor_value,
                "c": last.connection_id,
                "r": last.record_key,
            },
        )
    return JSONBody(body)


def _changes(
    request: Request,
    who: Bearer,
    scope: ReadScope,
    changes_since: str,
    limit: int,
    warnings: list[dict[str, Any]],
) -> dict[str, Any]:
    """One page of a change session: every readable connection, one global sequence."""
    h = home(request)
    store = h.store
    epoch = store.epoch()
    token = request.query_params.get("cursor")
    if token is not None:
        session = cursors.decode(h.vault, "changes", token)
        if session.get("s") != scope.stream.name or session.get("e") != epoch:
            raise InvalidCursor("cursor belongs to another stream or server", param="cursor")
        since, upto, after_publish, after_seq = cursors.values(
            session, "cursor", **{"from": int, "to": int, "ap": int, "as": int}
        )
        after: tuple[int, int] | None = (after_publish, after_seq)
    else:
        if changes_since == "beginning":
            since = 0
        else:
            try:
                start = cursors.decode(h.vault, "since", changes_since, "changes_since")
            except cursors.ForeignCursor:
                start = {}  # sealed by another server key: a token this database cannot honour
            if start.get("e") != epoch or start.get("s") != scope.stream.name:
                raise CursorExpired(
                    "changes_since was issued by another database or stream; re-sync from "
                    "changes_since=beginning",
                    param="changes_since",
                )
            (since,) = cursors.values(start, "changes_since", seq=int)
            # `beginning` is the advertised way out of a 410, so only tokens can expire.
            if since < store.change_floor():
                raise CursorExpired(
                    "changes_since is older than the retained change history; re-sync from "
                    "changes_since=beginning",
                    param="changes_since",
                )
        upto, after = store.change_horizon(), None
    page, has_more = store.changes_page(scope, since=since, upto=upto, after=after, limit=limit)
    _note_read(h, who, scope.stream.name, [c.connection_id for c in page])
    labels = display_names(store, sorted({c.connection_id for c in page}))
    data = []
    for change in page:
        if change.deleted:
            data.append(
                {
                    "object": "record",
                    "id": change.record_key,
                    "stream": scope.stream.name,
                    "deleted": True,
                    "deleted_at": change.deleted_at,
                    "emitted_at": change.emitted_at,
                    **_attribution(change.connection_id, labels),
                }
            )
        else:
            assert change.data is not None
            data.append(
                _record(
                    scope.stream.name,
                    change.connection_id,
                    change.record_key,
                    change.data,
                    change.emitted_at,
                    labels,
                )
            )
    body: dict[str, Any] = {
        "object": "list",
        "url": f"/v1/streams/{scope.stream.name}/records",
        "data": data,
        "has_more": has_more,
        "meta": {"count": {"kind": "none"}, "warnings": warnings},
    }
    if has_more:
        body["next_cursor"] = cursors.encode(
            h.vault,
            "changes",
            {
                "s": scope.stream.name,
                "e": epoch,
                "from": since,
                "to": upto,
                "ap": page[-1].position[0],
                "as": page[-1].position[1],
            },
        )
    else:
        body["next_changes_since"] = cursors.encode(
            h.vault, "since", {"s": scope.stream.name, "e": epoch, "seq": upto}
        )
    return body


@router.get("/v1/streams/{stream}/records/{record_id:path}")
def get_record(stream: str, record_id: str, request: Request) -> JSONBody:
    who = bearer(request)
    check_params(request, who, ("fields", "connection_id", "connector_instance_id"))
    warnings: list[dict[str, Any]] = []
    narrowed = connection_param(request, warnings)
    h = home(request)
    scope = scope_for(
        who,
        h.store,
        h.catalog,
        stream,
        connection_id=narrowed,
        fields=list_param(request, "fields"),
    )
    found = h.store.record(scope, record_id)
    if not found:
        raise NotFound(f"no record {record_id!r} in {stream}", param="id")
    labels = display_names(h.store, [r.connection_id for r in found])
    if len(found) > 1:
        raise AmbiguousConnection(
            f"record {record_id!r} exists under {len(found)} connections; name one",
            retry_with="connection_id",
            available_connections=[
                {
                    k: v
                    for k, v in _attribution(r.connection_id, labels).items()
                    if k != "connector_instance_id"
                }
                for r in found
            ],
        )
    record = found[0]
    _note_read(h, who, stream, [record.connection_id])
    body = _record(
        stream, record.connection_id, record.record_key, record.data, record.emitted_at, labels
    )
    body["meta"] = {"warnings": warnings}
    return JSONBody(body)


@router.get("/v1/search")
def search(request: Request) -> JSONBody:
    who = bearer(request)
    check_params(
        request,
        who,
        ("q", "streams", "limit", "cursor", "connection_id", "connector_instance_id"),
    )
    q = request.query_params.get("q")
    if not q:
        raise InvalidArgument("q is required", param="q")
    terms = parse_query(q)
    warnings: list[dict[str, Any]] = []
    narrowed = connection_param(request, warnings)
    limit = _limit(request, warnings, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT)
    h = home(request)
    names = list_param(request, "streams") or [d.name for d in readable_streams(who, h.catalog)]
    scopes = _scopes(who, h, names, narrowed)
    before = None
    token = request.query_params.get("cursor")
    if token is not None:
        position = cursors.decode(h.vault, "search", token)
        if position.get("q") != q:
            raise InvalidCursor("cursor belongs to another query", param="cursor")
        (before,) = cursors.values(position, "cursor", before=int)
    hits, has_more = h.store.search(scopes, terms, limit=limit, before=before)
    for name in {hit.stream for hit in hits}:
        _note_read(h, who, name, [hit.connection_id for hit in hits if hit.stream == name])
    labels = display_names(h.store, sorted({hit.connection_id for hit in hits}))
    searchable = {
        s.stream.name: tuple(f for f in s.stream.searchable_fields if f in s.fields) for s in scopes
    }
    data = []
    for hit in hits:
        matched, snippet = matches(hit.data, searchable[hit.stream], terms)
        entry: dict[str, Any] = {
            "object": "search_result",
            "stream": hit.stream,
            "record_key": hit.record_key,
            **_attribution(hit.connection_id, labels),
            "emitted_at": hit.emitted_at,
            "matched_fields": matched,
            "record_url": f"/v1/streams/{hit.stream}/records/{quote(hit.record_key, safe='')}"
            f"?connection_id={hit.connection_id}",
        }
        if snippet is not None:
            entry["snippet"] = snippet
        data.append(entry)
    body: dict[str, Any] = {
        "object": "list",
        "url": "/v1/search",
        "data": data,
        "has_more": has_more,
        "meta": {
            "count": None,
            "count_accuracy": "not_counted",
            "recall": {"complete": True, "ranking_scope": "recency", "truncated": False},
            "warnings": warnings,
        },
    }
    if has_more:
        body["next_cursor"] = cursors.encode(
            h.vault, "search", {"q": q, "before": hits[-1].record_id}
        )
    return JSONBody(body)


@router.get("/v1/schema")
def schema(request: Request) -> JSONBody:
    who = bearer(request)
    check_params(request, who, ("stream", "connection_id", "connector_instance_id"))
    warnings: list[dict[str, Any]] = []
    narrowed = connection_param(request, warnings)
    only = request.query_params.get("stream")
    h = home(request)
    streams = []
    names = [d.name for d in readable_streams(who, h.catalog) if only in (None, d.name)]
    for scope in _scopes(who, h, names, narrowed):
        if who.kind == "owner" and not scope.connection_ids:
            continue
        streams.append(stream_metadata(scope, display_names(h.store, scope.connection_ids)))
    grant = who.grant
    body: dict[str, Any] = {
        "object": "schema",
        "bearer": {
            "token_kind": who.kind,
            "scope": "owner" if grant is None else "grant",
            **({"client_id": grant.client_id, "grant_id": grant.grant_id} if grant else {}),
        },
        "streams": streams,
        "meta": {"warnings": warnings},
    }
    if who.kind == "owner":
        body["connectors"] = [
            {
                "object": "connector",
                "connector_key": m.connector_key,
                "source": m.source,
                "acquisition_method": m.acquisition_method,
                "streams": [s.name for s in m.streams],
            }
            for m in h.catalog.manifests.values()
        ]
    return JSONBody(body)
