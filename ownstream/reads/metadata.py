"""Stream metadata and the `/v1/schema` document.

Stream metadata is not grant-projected (PDPP core §8): every field of the shared definition is
listed, with `granted: true` or `false`, because field names are schema, not data. Values never
leave the grant, and a field outside it has no usable capability.

`/v1/schema` groups streams into PDPP `connector` entries. A client never learns connector
types or acquisition paths, so its document has one entry, `shared-definitions`, holding every
stream of its grant (each stream is one shared definition, whichever connectors fill it). The
owner's document has one entry per registered connector type, each stream listing only the
connections that connector feeds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ownstream.clock import parse_iso
from ownstream.errors import InvalidArgument, NotFound
from ownstream.grants.scope import readable_streams
from ownstream.home import Home
from ownstream.model import (
    AGGREGATION_KINDS,
    Bearer,
    Connection,
    ConnectorManifest,
    ReadScope,
    StreamDefinition,
)
from ownstream.reads.common import Warnings, attribution, connection_entry, scopes
from ownstream.registry.definitions import aggregable, value_types

SHARED_CONNECTOR_ID = "shared-definitions"
SHARED_SOURCE = {"kind": "connector", "id": "urn:ownstream:shared-definitions"}
NOT_GRANTED = "field_not_granted"
# the order agents read aggregation flags in (`a=count_distinct|group_by|…`)
FLAG_ORDER = ("count_distinct", "group_by", "group_by_time", "sum", "min", "max")
FRESHNESS_RUNS = 50  # a connection's newest runs that freshness considers


def _flag(declared: bool, granted: bool) -> dict[str, Any]:
    flag: dict[str, Any] = {"declared": declared, "usable": declared and granted}
    if declared and not granted:
        flag["reason"] = NOT_GRANTED
    return flag


def field_capabilities(
    definition: StreamDefinition, granted: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Every field of the definition, what the stream declares for it and what this bearer
    may use. Ownstream declares no record filters, so no field is filterable."""
    declared = definition.aggregations
    found = {}
    for name, prop in definition.schema.get("properties", {}).items():
        ok = name in granted
        found[name] = {
            "schema": prop,
            "granted": ok,
            "exact_filter": _flag(False, ok),
            "range_filter": _flag(False, ok),
            "lexical_search": _flag(name in definition.searchable_fields, ok),
            "semantic_search": _flag(False, ok),
            "aggregation": {
                kind: _flag(
                    declared is not None
                    and name in declared.fields_for(kind)
                    and aggregable(kind, prop),
                    ok,
                )
                for kind in AGGREGATION_KINDS
            },
        }
    return found


def compact_flags(capabilities: dict[str, Any]) -> str:
    """One field's capabilities as the terse token list PDPP agents read: `t=<type>`,
    `g=false` when withheld, `lex` when searchable, `a=<usable aggregations>`."""
    types = sorted(value_types(capabilities["schema"]))
    flags = [f"t={types[0] if len(types) == 1 else '|'.join(types) or 'any'}"]
    if not capabilities["granted"]:
        flags.append("g=false")
    if capabilities["lexical_search"]["usable"]:
        flags.append("lex")
    usable = [k for k in FLAG_ORDER if capabilities["aggregation"][k]["usable"]]
    if usable:
        flags.append("a=" + "|".join(usable))
    return ",".join(flags)


def connection_freshness(home: Home, stream: str, connection: Connection) -> dict[str, Any]:
    """What ownstream knows of how current one connection's records of a stream are: when a
    collection last succeeded (`captured_at`), when one was last tried, and `stale` when the
    latest finished attempt failed or the newest success is older than the connector's
    `maximum_staleness_seconds`."""
    emitters = {
        key: home.catalog.manifest(key)
        for key in home.catalog.emitters(stream)
        if connection.has_path(key)
    }
    runs = [
        r
        for r in home.store.runs(connection.connection_id, limit=FRESHNESS_RUNS)
        if r.connector_key in emitters
    ]
    found: dict[str, Any] = {"status": "unknown"}
    if not runs:
        return found
    found["last_attempted_at"] = max(r.started_at for r in runs)
    finished = [r for r in runs if r.ended_at is not None and r.status != "running"]
    succeeded = [r for r in finished if r.status == "succeeded"]
    if not succeeded:
        return found
    captured = max(str(r.ended_at) for r in succeeded)
    found["captured_at"] = captured
    latest = max(finished, key=lambda r: str(r.ended_at))
    limits = [
        m.refresh_policy.maximum_staleness_seconds
        for m in emitters.values()
        if m.refresh_policy.maximum_staleness_seconds
    ]
    too_old = bool(limits) and parse_iso(captured) < home.store.clock() - timedelta(
        seconds=min(limits)
    )
    found["status"] = "stale" if latest.status != "succeeded" or too_old else "current"
    return found


def stream_freshness(per_connection: list[dict[str, Any]]) -> dict[str, Any]:
    """A stream's freshness over its connections: stale if any is stale, unknown if any is
    unknown; captured no later than its least recently captured connection."""
    statuses = {f["status"] for f in per_connection}
    status = next((s for s in ("stale", "unknown") if s in statuses), "current")
    found: dict[str, Any] = {"status": "unknown" if not per_connection else status}
    captured = [f["captured_at"] for f in per_connection if "captured_at" in f]
    if captured and len(captured) == len(per_connection):
        found["captured_at"] = min(captured)
    attempted = [f["last_attempted_at"] for f in per_connection if "last_attempted_at" in f]
    if attempted:
        found["last_attempted_at"] = max(attempted)
    return found


def stream_metadata(
    home: Home, scope: ReadScope, connections: dict[str, Connection]
) -> dict[str, Any]:
    """A stream's metadata for a bearer: the whole shared definition, what the bearer may use
    of it, and the readable connections (those in `connections`, which still exist)."""
    definition = scope.stream
    readable = [c for c in scope.connection_ids if c in connections]
    labels = {c: connections[c].client_display_name for c in readable}
    freshness = [
        {"connection_id": c, **connection_freshness(home, definition.name, connections[c])}
        for c in readable
    ]
    query: dict[str, Any] = {"range_filters": {}}
    if definition.aggregations is not None:
        query["aggregations"] = definition.aggregations.to_dict()
    if definition.searchable_fields:
        query["search"] = {"lexical_fields": list(definition.searchable_fields)}
    return {
        "object": "stream_metadata",
        "name": definition.name,
        "version": definition.version,
        "description": definition.description,
        "semantics": definition.semantics,
        "schema": definition.schema,
        "primary_key": list(definition.primary_key),
        "cursor_field": definition.cursor_field,
        "consent_time_field": definition.consent_time_field,
        "selection": {"fields": True, "resources": True},
        "granted_fields": list(scope.fields),
        "field_capabilities": field_capabilities(definition, scope.fields),
        "expand_capabilities": [],
        "query": query,
        "freshness": stream_freshness(
            [{k: v for k, v in f.items() if k != "connection_id"} for f in freshness]
        ),
        "freshness_by_connection": freshness,
        "granted_connections": [connection_entry(c, labels) for c in readable],
    }


def compact_stream(metadata: dict[str, Any]) -> dict[str, Any]:
    """The token-efficient form: identity, keys, connections, flag strings per field."""
    return {
        "object": "stream_metadata",
        **{
            k: metadata[k]
            for k in (
                "name",
                "primary_key",
                "cursor_field",
                "consent_time_field",
                "granted_connections",
                "expand_capabilities",
                "query",
            )
        },
        "field_capabilities": {
            name: compact_flags(caps) for name, caps in metadata["field_capabilities"].items()
        },
    }


def live_connections(home: Home, ids: list[str]) -> dict[str, Connection]:
    return {c.connection_id: c for c in home.store.connections(connection_ids=sorted(set(ids)))}


def metadata_for(home: Home, scope: ReadScope, warnings: Warnings) -> dict[str, Any]:
    """`GET /v1/streams/{stream}`."""
    body = stream_metadata(home, scope, live_connections(home, list(scope.connection_ids)))
    return {**body, "meta": {"warnings": warnings}}


def _connector_source(manifest: ConnectorManifest) -> dict[str, Any]:
    return {
        "kind": "connector",
        "id": manifest.manifest_uri or f"urn:ownstream:connector:{manifest.connector_key}",
        "name": manifest.source,
        "display_name": manifest.display_name,
        "acquisition_method": manifest.acquisition_method,
    }


def _view(view: str | None, detail: str | None) -> bool:
    """Whether the compact view was asked for (`view=compact`, or the MCP adapter's
    `detail=compact`); `full` is the default."""
    for param, value in (("view", view), ("detail", detail)):
        if value not in (None, "compact", "full"):
            raise InvalidArgument(f"{param} must be compact or full", param=param)
    if {view, detail} >= {"compact", "full"}:
        raise InvalidArgument("view and detail disagree", param="detail")
    return "compact" in (view, detail)


def schema_document(
    home: Home,
    who: Bearer,
    *,
    stream: str | None,
    connection_id: str | None,
    connector_id: str | None,
    view: str | None,
    detail: str | None,
) -> dict[str, Any]:
    """`GET /v1/schema`: the bearer's readable streams, grouped into connector entries."""
    compact = _view(view, detail)
    names = [d.name for d in readable_streams(who, home.catalog) if stream in (None, d.name)]
    found = scopes(who, home, names, connection_id)
    connections = live_connections(home, [c for s in found for c in s.connection_ids])
    entries: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
    if who.kind == "client":
        entries.append(
            (
                SHARED_CONNECTOR_ID,
                SHARED_SOURCE,
                [stream_metadata(home, s, connections) for s in found],
            )
        )
    else:
        for key, manifest in sorted(home.catalog.manifests.items()):
            streams = []
            for scope in found:
                if manifest.stream(scope.stream.name) is None:
                    continue
                fed = tuple(
                    c
                    for c in scope.connection_ids
                    if c in connections and connections[c].has_path(key)
                )
                if fed:
                    narrowed = ReadScope(scope.stream, fed, scope.fields)
                    streams.append(stream_metadata(home, narrowed, connections))
            entries.append((key, _connector_source(manifest), streams))
    if connector_id is not None:
        entries = [e for e in entries if e[0] == connector_id]
        if not entries:
            raise NotFound("no readable connector has that connector_id", param="connector_id")
    grant = who.grant
    body: dict[str, Any] = {
        "object": "schema",
        "bearer": {
            "token_kind": who.kind,
            "scope": "owner" if grant is None else "grant",
            **({"client_id": grant.client_id, "grant_id": grant.grant_id} if grant else {}),
        },
        "connectors": [
            {
                "object": "connector",
                "connector_id": key,
                "source": source,
                "stream_count": len(streams),
                "streams": [compact_stream(s) for s in streams] if compact else streams,
            }
            for key, source, streams in entries
        ],
    }
    if compact:
        body["detail"] = "compact"
    return body


def list_streams(
    home: Home, who: Bearer, connection_id: str | None, warnings: Warnings
) -> dict[str, Any]:
    """`GET /v1/streams`: one entry per readable (stream, connection) with its count and last
    update, both within the grant's window and resources."""
    found = scopes(who, home, [d.name for d in readable_streams(who, home.catalog)], connection_id)
    connections = live_connections(home, [c for s in found for c in s.connection_ids])
    labels = {c: k.client_display_name for c, k in connections.items()}
    stats = {
        (row.connection_id, row.stream): row
        for row in home.store.stream_counts(sorted(connections))
    }
    entries: list[dict[str, Any]] = []
    for scope in found:
        windowed = scope.since is not None or scope.until is not None or scope.resources is not None
        counted = home.store.scoped_count(scope) if windowed else {}
        # a client's last_updated moves only with data it can see, never with hidden fields
        visible = home.store.visible_last_change(scope) if who.kind == "client" else None
        for connection_id in scope.connection_ids:
            if connection_id not in connections:
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
                    **attribution(connection_id, labels),
                    "record_count": count,
                    "last_updated": last,
                }
            )
    return {"object": "list", "data": entries, "has_more": False, "meta": {"warnings": warnings}}
