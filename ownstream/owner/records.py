"""The owner's reads of collected records, for the CLI and the console.

They go through the scope machinery clients go through (`scope_for` with the owner's bearer,
then the store's `records_page` and `search`), and continue with the read surface's sealed
cursors: the same payloads as `api/client.py` issues, so a cursor from the CLI also continues
an owner read of `/v1/streams/{stream}/records`. (Kept here rather than shared with
`api/client.py`, which is being reworked.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ownstream.api import cursors
from ownstream.errors import InvalidCursor
from ownstream.grants.scope import scope_for
from ownstream.home import Home
from ownstream.model import Bearer, ReadScope
from ownstream.search import parse_query
from ownstream.store.base import RecordPosition, StoredRecord

OWNER = Bearer(kind="owner", token_id="")  # the owner reading in person: no grant limits them


@dataclass(frozen=True)
class RecordPage:
    records: list[StoredRecord]
    next_cursor: str | None


def owner_scope(home: Home, stream: str, connection_id: str | None = None) -> ReadScope:
    """Every connection with a path that emits `stream` (or just `connection_id`), all fields."""
    return scope_for(OWNER, home.store, home.catalog, stream, connection_id=connection_id)


def records_page(
    home: Home, scope: ReadScope, *, limit: int, cursor: str | None = None, order: str = "desc"
) -> RecordPage:
    stream = scope.stream.name
    after = None
    if cursor is not None:
        position = cursors.decode(home.vault, "page", cursor)
        if position.get("s") != stream or position.get("o") != order:
            raise InvalidCursor("cursor belongs to another stream or order", param="cursor")
        after = RecordPosition(*cursors.values(position, "cursor", v=str, c=str, r=str))
    page, has_more = home.store.records_page(scope, limit=limit, order=order, after=after)
    next_cursor = None
    if has_more:
        last = page[-1]
        next_cursor = cursors.encode(
            home.vault,
            "page",
            {"s": stream, "o": order, "v": last.cursor_value, "c": last.connection_id,
             "r": last.record_key},
        )
    return RecordPage(page, next_cursor)


def search_page(
    home: Home, scope: ReadScope, q: str, *, limit: int, cursor: str | None = None
) -> RecordPage:
    """Records of one stream matching `q`, newest-collected first."""
    before = None
    if cursor is not None:
        position = cursors.decode(home.vault, "search", cursor)
        if position.get("q") != q:
            raise InvalidCursor("cursor belongs to another query", param="cursor")
        (before,) = cursors.values(position, "cursor", before=int)
    hits, has_more = home.store.search([scope], parse_query(q), limit=limit, before=before)
    found = [
        StoredRecord(h.connection_id, h.stream, h.record_key, h.data, h.emitted_at, "")
        for h in hits
    ]
    next_cursor = (
        cursors.encode(home.vault, "search", {"q": q, "before": hits[-1].record_id})
        if has_more
        else None
    )
    return RecordPage(found, next_cursor)


def record_row(record: StoredRecord) -> dict[str, Any]:
    """A record as the owner's exports print it."""
    return {
        "id": record.record_key,
        "stream": record.stream,
        "connection_id": record.connection_id,
        "emitted_at": record.emitted_at,
        "data": record.data,
    }
