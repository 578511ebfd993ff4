"""The contentless full-text index: what goes in for a record, and exactly what comes out.

The index keeps no copy of the text (the record's data is its only copy), so removing a row
means handing FTS5 the very values it indexed: they are derived again from the record's data,
the stream's searchable fields as recorded in `search_fields`, and its scope tokens.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from ownstream.model import StreamDefinition
from ownstream.records import search_text
from ownstream.search import MAX_SEARCHABLE_FIELDS
from ownstream.store.sqlite.database import SQLiteBase, dumps_text

SLOTS = MAX_SEARCHABLE_FIELDS
_INSERT = (
    "INSERT INTO search_index (rowid, scope, f0, f1, f2, f3, f4, f5, f6, f7) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# a whole batch in one statement (one call into SQLite, left for a commit behind)
_INSERT_ROWS = (
    "INSERT INTO search_index (rowid, scope, f0, f1, f2, f3, f4, f5, f6, f7) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, "
    "value ->> 6, value ->> 7, value ->> 8, value ->> 9 FROM json_each(?)"
)
_DELETE = (
    "INSERT INTO search_index (search_index, rowid, scope, f0, f1, f2, f3, f4, f5, f6, f7) "
    "VALUES ('delete', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def scope_token(kind: str, value: str) -> str:
    """An opaque, tokenizer-safe search-scope token for a stream or a connection."""
    return kind + hashlib.sha1(value.encode()).hexdigest()[:16]


def _row(
    record_id: int, scope: str, fields: tuple[str, ...], data: dict[str, Any]
) -> tuple[Any, ...]:
    texts = [search_text(data.get(name)) for name in fields]
    return (record_id, scope, *texts, *[""] * (SLOTS - len(texts)))


class SearchIndex(SQLiteBase):
    def _search_fields(
        self, db: sqlite3.Connection, stream: str, wanted: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        """The searchable fields a stream's rows are indexed with. With `wanted` (the current
        definition's), a change of definition re-indexes the stream's rows first."""
        row = db.execute("SELECT fields FROM search_fields WHERE stream = ?", (stream,)).fetchone()
        stored = tuple(orjson.loads(row[0])) if row else None
        if wanted is None or stored == wanted:
            return stored or ()
        self._reindex(db, stream, stored or (), wanted)
        db.execute(
            "INSERT INTO search_fields (stream, fields) VALUES (?, ?) "
            "ON CONFLICT DO UPDATE SET fields = excluded.fields",
            (stream, dumps_text(list(wanted))),
        )
        return wanted

    def _reindex(
        self,
        db: sqlite3.Connection,
        stream: str,
        old: tuple[str, ...],
        new: tuple[str, ...],
    ) -> None:
        rows = db.execute(
            "SELECT record_id, connection_id, data FROM records WHERE stream = ? AND deleted = 0",
            (stream,),
        ).fetchall()
        for record_id, connection_id, data in rows:
            scope = self._scope(stream, connection_id)
            loaded = self._record_data(data)
            if old:
                db.execute(_DELETE, _row(record_id, scope, old, loaded))
            if new:
                db.execute(_INSERT, _row(record_id, scope, new, loaded))

    def sync_search(self, definitions: Iterable[StreamDefinition]) -> None:
        """Index every stream with its definition's searchable fields (after an upgrade, or
        when a definition changed them); a no-op when they already match."""
        for definition in definitions:
            with self._tx() as db:
                self._search_fields(db, definition.name, definition.searchable_fields)

    @staticmethod
    def _scope(stream: str, connection_id: str) -> str:
        return f"{scope_token('s', stream)} {scope_token('c', connection_id)}"

    def _index(
        self,
        db: sqlite3.Connection,
        stream: str,
        connection_id: str,
        fields: tuple[str, ...],
        items: Iterable[tuple[int, dict[str, Any]]],
    ) -> None:
        if fields:
            scope = self._scope(stream, connection_id)
            rows = [_row(i, scope, fields, data) for i, data in items]
            if rows and not self._later(_INSERT_ROWS, (orjson.dumps(rows),)):
                db.executemany(_INSERT, rows)

    def _unindex(
        self,
        db: sqlite3.Connection,
        stream: str,
        connection_id: str,
        fields: tuple[str, ...],
        items: Iterable[tuple[int, dict[str, Any]]],
    ) -> None:
        if fields:
            scope = self._scope(stream, connection_id)
            db.executemany(_DELETE, [_row(i, scope, fields, data) for i, data in items])
