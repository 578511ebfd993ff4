"""Turn a bearer and a request into the ReadScope the store enforces.

The grant is the authority: a request may only narrow it. A connection outside the grant is
`connection_not_found`, worded the same whether or not it exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from ownstream.errors import (
    ConnectionNotFound,
    FieldNotGranted,
    GrantStreamNotAllowed,
    UnknownField,
)
from ownstream.model import Bearer, Connection, ReadScope, StreamDefinition
from ownstream.registry import Catalog
from ownstream.store.base import Store


def owner_connections(store: Store, catalog: Catalog, stream: str) -> list[str]:
    """Connections the owner may read a stream from: those with a path that emits it."""
    emitters = set(catalog.emitters(stream))
    return [
        c.connection_id
        for c in store.connections()
        if any(p.connector_key in emitters for p in c.paths)
    ]


def readable_streams(bearer: Bearer, catalog: Catalog) -> list[StreamDefinition]:
    if bearer.grant is None:
        return list(catalog.all_definitions())
    return [catalog.definition(s.name) for s in bearer.grant.streams]


def scope_for(
    bearer: Bearer,
    store: Store,
    catalog: Catalog,
    stream: str,
    *,
    connection_id: str | None = None,
    fields: Sequence[str] | None = None,
) -> ReadScope:
    grant = bearer.grant
    if grant is not None and grant.stream(stream) is None:
        raise GrantStreamNotAllowed(f"the grant does not include stream {stream!r}", param="stream")
    definition = catalog.definition(stream)
    if grant is None:
        allowed = owner_connections(store, catalog, stream)
        granted_fields = definition.fields
        since = until = None
        resources = None
    else:
        stream_grant = grant.stream(stream)
        assert stream_grant is not None
        allowed = list(stream_grant.instance_ids)
        granted_fields = stream_grant.fields
        since, until, resources = stream_grant.since, stream_grant.until, stream_grant.resources
    if connection_id is not None:
        if connection_id not in allowed:
            raise ConnectionNotFound(
                f"no readable connection {connection_id!r} for stream {stream!r}",
                param="connection_id",
            )
        allowed = [connection_id]
    if fields is not None:
        granted_fields = requested_fields(definition, granted_fields, fields)
    return ReadScope(
        stream=definition,
        connection_ids=tuple(allowed),
        fields=tuple(granted_fields),
        since=since,
        until=until,
        resources=resources,
    )


def requested_fields(
    definition: StreamDefinition, granted: Sequence[str], requested: Sequence[str]
) -> tuple[str, ...]:
    """A sparse fieldset within the grant: the requested fields plus the schema's required
    ones (those the grant has). Naming a field the grant withholds is refused, not silently
    dropped, so a client never mistakes a withheld field for an absent value."""
    unknown = [f for f in requested if f not in definition.fields]
    if unknown:
        raise UnknownField(
            f"{definition.name} has no field(s) {', '.join(unknown)}", param="fields"
        )
    withheld = [f for f in requested if f not in granted]
    if withheld:
        raise FieldNotGranted(
            f"the grant does not include field(s) {', '.join(withheld)} of {definition.name}",
            param="fields",
        )
    wanted = {*requested, *definition.schema.get("required", ())}
    return tuple(f for f in granted if f in wanted)


def display_names(store: Store, connection_ids: Sequence[str]) -> dict[str, str | None]:
    """Client-safe labels: a meaningful owner label, never a placeholder."""
    found: list[Connection] = store.connections(connection_ids=list(connection_ids))
    return {c.connection_id: c.client_display_name for c in found}
