"""The owner's reads of collected records, for the CLI and the console.

They go through the scope machinery clients go through (`scope_for` with the owner's bearer,
then the store's `records_page` and `search`), and continue with the read surface's sealed
cursors (`reads/cursors.py`), so a cursor from the CLI also continues an owner read of
`/v1/streams/{stream}/records`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ownstream.grants.scope import scope_for
from ownstream.home import Home
from ownstream.model import Bearer, ReadScope
from ownstream.reads import cursors
from ownstream.search import parse_query
from ownstream.store.base import StoredRecord

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
    after = cursors.page_position(home.vault, cursor, stream, order)
    page, has_more = home.store.records_page(scope, limit=limit, order=order, after=after)
    next_cursor = cursors.page_cursor(home.vault, stream, order, page[-1]) if has_more else None
    return RecordPage(page, next_cursor)


def search_page(
    home: Home, scope: ReadScope, q: str, *, limit: int, cursor: str | None = None
) -> RecordPage:
    """Records of one stream matching `q`, newest-collected first."""
    before = cursors.search_position(home.vault, cursor, q)
    hits, has_more = home.store.search([scope], parse_query(q), limit=limit, before=before)
    found = [
        StoredRecord(h.connection_id, h.stream, h.record_key, h.data, h.emitted_at, "")
        for h in hits
    ]
    next_cursor = cursors.search_cursor(home.vault, q, hits[-1]) if has_more else None
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
