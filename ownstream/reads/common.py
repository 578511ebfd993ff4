"""Pieces every read shares: attribution, record bodies, page sizes, per-stream scopes."""

from __future__ import annotations

from typing import Any

from ownstream.errors import ConnectionNotFound, UnknownStream
from ownstream.grants.scope import scope_for
from ownstream.home import Home
from ownstream.model import Bearer, ReadScope, StreamDefinition
from ownstream.records import with_fetch_urls

Warnings = list[dict[str, Any]]


def attribution(connection_id: str, labels: dict[str, str | None]) -> dict[str, Any]:
    """Grant-safe attribution: the connection id (and its deprecated alias) and a meaningful,
    owner-given label, never a placeholder."""
    entry: dict[str, Any] = {"connection_id": connection_id, "connector_instance_id": connection_id}
    label = labels.get(connection_id)
    if label:
        entry["display_name"] = label
    return entry


def connection_entry(connection_id: str, labels: dict[str, str | None]) -> dict[str, Any]:
    """A connection a bearer may name in `connection_id`: its id and label, no alias."""
    entry: dict[str, Any] = {"connection_id": connection_id}
    label = labels.get(connection_id)
    if label:
        entry["display_name"] = label
    return entry


def record_body(
    definition: StreamDefinition,
    connection_id: str,
    key: str,
    data: dict[str, Any],
    emitted_at: str,
    labels: dict[str, str | None],
) -> dict[str, Any]:
    """A record as PDPP serves it; each `blob_ref` the data holds gets its `fetch_url`."""
    return {
        "object": "record",
        "id": key,
        "stream": definition.name,
        "data": with_fetch_urls(definition, data),
        "emitted_at": emitted_at,
        **attribution(connection_id, labels),
    }


def clamped(value: int, maximum: int, param: str, warnings: Warnings) -> int:
    """A size no larger than `maximum`, with a `limit_clamped` warning when it was (PDPP clamps
    page and window sizes rather than failing the request)."""
    if value <= maximum:
        return value
    warnings.append(
        {
            "code": "limit_clamped",
            "message": f"{param} was clamped to {maximum}",
            "param": param,
            "detail": {"max_limit": maximum, "requested_limit": value},
        }
    )
    return maximum


def page_size(limit: int | None, default: int, maximum: int, warnings: Warnings) -> int:
    """The page size: the default, or the requested one clamped to the maximum."""
    return default if limit is None else clamped(limit, maximum, "limit", warnings)


def scopes(
    who: Bearer, home: Home, names: list[str], narrowed: str | None, *, soft: bool = False
) -> list[ReadScope]:
    """A scope per stream. With `connection_id`, streams that connection is not readable in
    drop out; if it is readable in none, the answer is `connection_not_found`. With `soft`,
    a stream the owner does not have yields nothing instead of an error (owner search)."""
    found = []
    for name in dict.fromkeys(names):
        try:
            found.append(scope_for(who, home.store, home.catalog, name, connection_id=narrowed))
        except ConnectionNotFound:
            continue
        except UnknownStream:
            if soft and who.grant is None:
                continue
            raise
    if narrowed is not None and not found:
        raise ConnectionNotFound(f"no readable connection {narrowed!r}", param="connection_id")
    return found


def note_read(home: Home, who: Bearer, stream: str, connection_ids: list[str]) -> None:
    """Count a client's read for the owner's access log (in memory; flushed in bulk)."""
    if who.kind == "client":
        counts: dict[str, int] = {}
        for connection_id in connection_ids:
            counts[connection_id] = counts.get(connection_id, 0) + 1
        home.usage.note_read(who, stream, counts)
