"""Record pages, single records and lexical search, for a bearer, as PDPP bodies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from ownstream.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    InvalidArgument,
    InvalidRequest,
    NotFound,
)
from ownstream.grants.scope import display_names, readable_streams, scope_for
from ownstream.home import Home
from ownstream.model import Bearer, FieldFilter, ReadScope
from ownstream.reads import cursors
from ownstream.reads.changes import changes_page
from ownstream.reads.common import (
    Warnings,
    attribution,
    connection_entry,
    note_read,
    page_size,
    record_body,
    scopes,
)
from ownstream.reads.metadata import SHARED_CONNECTOR_ID
from ownstream.reads.query import NO_QUERY, OwnerQuery, foreign_value
from ownstream.search import matches, parse_query
from ownstream.store.base import StoredRecord

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
# the lexical retrieval profile's advertised page sizes (`capabilities.lexical_retrieval`)
SEARCH_DEFAULT_LIMIT = 25
SEARCH_MAX_LIMIT = 100


def list_records(
    home: Home,
    who: Bearer,
    scope: ReadScope,
    *,
    limit: int | None,
    cursor: str | None,
    order: str | None,
    changes_since: str | None,
    warnings: Warnings,
    query: OwnerQuery = NO_QUERY,
) -> dict[str, Any]:
    """A page of the stream's records, or of its change feed with `changes_since`; the
    owner's query (filters, view, expansions, sort) shapes a page."""
    size = page_size(limit, DEFAULT_LIMIT, MAX_LIMIT, warnings)
    scope = query.narrow(scope)
    if changes_since is not None:
        if query.filters or query.expand or query.order:
            raise InvalidRequest(
                "filters, expansions and sort shape pages, not change feeds",
                param="changes_since",
            )
        changes = changes_page(
            home, who, scope, changes_since=changes_since, cursor=cursor, limit=size
        )
        return {**changes, "meta": {"count": {"kind": "none"}, "warnings": warnings}}
    if order is not None and query.order is not None and order != query.order:
        raise InvalidRequest("sort and order disagree", param="sort")
    order = query.order or order or "desc"
    if order not in ("asc", "desc"):
        raise InvalidArgument("order must be asc or desc", param="order")
    stream = scope.stream.name
    shape = query.fingerprint() if query.filters else None
    after = cursors.page_position(home.vault, cursor, stream, order, shape)
    page, has_more = home.store.records_page(scope, limit=size, order=order, after=after)
    note_read(home, who, stream, [r.connection_id for r in page])
    labels = display_names(home.store, sorted({r.connection_id for r in page}))
    data = []
    for r in page:
        body = record_body(scope.stream, r.connection_id, r.record_key, r.data, r.emitted_at,
                           labels)
        data.append(_expanded(home, who, query, r, body, labels))
    listing: dict[str, Any] = {
        "object": "list",
        "url": f"/v1/streams/{stream}/records",
        "data": data,
        "has_more": has_more,
        "meta": {"count": {"kind": "none"}, "warnings": warnings},
    }
    if has_more:
        listing["next_cursor"] = cursors.page_cursor(home.vault, stream, order, page[-1], shape)
    return listing


def _expanded(
    home: Home,
    who: Bearer,
    query: OwnerQuery,
    record: StoredRecord,
    body: dict[str, Any],
    labels: dict[str, str | None],
) -> dict[str, Any]:
    """The record body with each requested relation under `expanded`: the related records
    of the same connection whose foreign key is this record's key (a `has_one` relation
    gives the first, or null; a `has_many` one a bounded list)."""
    if not query.expand:
        return body
    expanded: dict[str, Any] = {}
    for expansion in query.expand:
        relation, target = expansion.relation, expansion.target
        one = relation.cardinality == "has_one"
        value = foreign_value(target, relation.foreign_key, record.record_key)
        found: list[StoredRecord] = []
        more = False
        try:
            child: ReadScope | None = scope_for(
                who, home.store, home.catalog, target.name, connection_id=record.connection_id
            )
        except ConnectionNotFound:  # the connection has no path that emits the related stream
            child = None
        if child is not None and value is not None:
            narrowed = replace(child, filters=(FieldFilter(relation.foreign_key, "eq", value),))
            found, more = home.store.records_page(narrowed, limit=1 if one else expansion.limit)
        bodies = [
            record_body(target, c.connection_id, c.record_key, c.data, c.emitted_at, labels)
            for c in found
        ]
        if one:
            expanded[relation.name] = bodies[0] if bodies else None
        else:
            expanded[relation.name] = {"object": "list", "data": bodies, "has_more": more}
    return {**body, "expanded": expanded}


def find_record(
    home: Home, scope: ReadScope, record_id: str
) -> tuple[StoredRecord, dict[str, str | None]]:
    """The one readable record with this key, and its connection's label; a key that exists
    under several readable connections is `ambiguous_connection` (name one)."""
    found = home.store.record(scope, record_id)
    if not found:
        raise NotFound(f"no record {record_id!r} in {scope.stream.name}", param="id")
    labels = display_names(home.store, [r.connection_id for r in found])
    if len(found) > 1:
        raise AmbiguousConnection(
            f"record {record_id!r} exists under {len(found)} connections; name one",
            retry_with={
                "field": "connection_id",
                "guidance": "repeat the request with one of available_connections",
            },
            available_connections=[connection_entry(r.connection_id, labels) for r in found],
        )
    return found[0], labels


def get_record(
    home: Home,
    who: Bearer,
    scope: ReadScope,
    record_id: str,
    warnings: Warnings,
    query: OwnerQuery = NO_QUERY,
) -> dict[str, Any]:
    record, labels = find_record(home, query.narrow(scope), record_id)
    note_read(home, who, scope.stream.name, [record.connection_id])
    body = record_body(
        scope.stream, record.connection_id, record.record_key, record.data,
        record.emitted_at, labels,
    )
    return {**_expanded(home, who, query, record, body, labels), "meta": {"warnings": warnings}}


def _connector_ids(
    home: Home, who: Bearer, hits: set[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The connector entry of `/v1/schema` each hit's (stream, connection) is listed under:
    the shared entry for a client, the first connector feeding it for the owner."""
    if who.kind == "client":
        return dict.fromkeys(hits, SHARED_CONNECTOR_ID)
    connections = {
        c.connection_id: c
        for c in home.store.connections(connection_ids=sorted({c for _, c in hits}))
    }
    return {
        (s, c): next(
            (k for k in home.catalog.emitters(s) if c in connections
             and connections[c].has_path(k)),
            SHARED_CONNECTOR_ID,
        )
        for s, c in hits
    }


def search(
    home: Home,
    who: Bearer,
    q: str | None,
    *,
    streams: list[str] | None,
    connection_id: str | None,
    limit: int | None,
    cursor: str | None,
    warnings: Warnings,
) -> dict[str, Any]:
    """Lexical search over the (granted ∩ searchable) fields of every readable stream,
    newest-collected first."""
    if not q:
        raise InvalidRequest("q is required", param="q")
    terms = parse_query(q)
    size = page_size(limit, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT, warnings)
    names = streams or [d.name for d in readable_streams(who, home.catalog)]
    found = scopes(who, home, names, connection_id, soft=True)
    before = cursors.search_position(home.vault, cursor, q)
    hits, has_more = home.store.search(found, terms, limit=size, before=before)
    for name in {hit.stream for hit in hits}:
        note_read(home, who, name, [hit.connection_id for hit in hits if hit.stream == name])
    labels = display_names(home.store, sorted({hit.connection_id for hit in hits}))
    connectors = _connector_ids(home, who, {(h.stream, h.connection_id) for h in hits})
    searchable = {
        s.stream.name: tuple(f for f in s.stream.searchable_fields if f in s.fields) for s in found
    }
    data = []
    for hit in hits:
        matched, snippet = matches(hit.data, searchable[hit.stream], terms)
        entry: dict[str, Any] = {
            "object": "search_result",
            "stream": hit.stream,
            "record_key": hit.record_key,
            "connector_id": connectors[(hit.stream, hit.connection_id)],
            **attribution(hit.connection_id, labels),
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
            "recall": {"complete": True, "ranking_scope": "all_matches", "truncated": False},
            "warnings": warnings,
        },
    }
    if has_more:
        body["next_cursor"] = cursors.search_cursor(home.vault, q, hits[-1])
    return body
