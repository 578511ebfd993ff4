"""The full-text index: one tsvector per record row, built so PostgreSQL finds what SQLite finds.

Design (the alternative, per-field tsvectors of the `simple` configuration with `unaccent`,
would use PostgreSQL's parser, which keeps e-mail addresses, URLs and hyphenated words whole,
so "ada" would not find "ada@example.org" as it does in SQLite):

- tokens come from `unicode61.tokens`, SQLite's own tokenizer rules, so both backends hold the
  same tokens for the same text, and query words are tokenized the same way;
- each token is qualified by its field's slot, "<slot>:<token>" (slots in the order
  `search_fields` recorded for the stream, as SQLite's f0..f7 columns), so a grant's visible
  fields are part of the query itself and hidden text never produces a hit;
- the row also holds an opaque stream token and connection token (without a colon, so they can
  never be confused with field tokens), so the granted streams and connections are part of the
  same query, answered by one GIN index;
- `array_to_tsvector`-style entries carry no positions: SQLite treats a query word that its
  tokenizer splits into several tokens (rare: "¼" folds to "1", a fraction slash, "4") as a
  phrase, this index as
  all of those tokens in one field. PostgreSQL caps a lexeme at 2 KB and an entry at 1 MB;
  longer tokens are cut (prefix queries still find them) and an entry stops growing at the cap.

The entry lives on the record row (a parked copy carries its own), so publishing, parking,
restoring and purging need no separate index upkeep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson

from ownstream.model import StreamDefinition
from ownstream.records import search_text
from ownstream.search import MAX_SEARCHABLE_FIELDS, Term
from ownstream.store.postgres.database import Connection, PostgresBase
from ownstream.store.postgres.unicode61 import tokens

MAX_LEXEME_BYTES = 2046
MAX_ENTRY_BYTES = 1_000_000
REINDEX_CHUNK = 2000


@lru_cache(maxsize=4096)
def scope_lexeme(kind: str, value: str) -> str:
    """An opaque stream ("s…") or connection ("c…") token."""
    return kind + hashlib.sha1(value.encode()).hexdigest()[:16]


def _quoted(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _cut(lexeme: str) -> str:
    encoded = lexeme.encode()
    if len(encoded) <= MAX_LEXEME_BYTES:
        return lexeme
    return encoded[:MAX_LEXEME_BYTES].decode(errors="ignore")


def _bounded(lexemes: set[str]) -> set[str]:
    """Within PostgreSQL's limits: each lexeme cut to its cap, the entry stopped at its own
    (the slow path, for text of a quarter of a megabyte, or a single 500-character word)."""
    kept: set[str] = set()
    size = 0
    for lexeme in sorted(_cut(lexeme) for lexeme in lexemes):
        size += len(lexeme.encode()) + 8
        if size > MAX_ENTRY_BYTES:
            break
        kept.add(lexeme)
    return kept


def entry(
    stream: str, connection_id: str, fields: Sequence[str], data: dict[str, Any]
) -> str | None:
    """The tsvector (as its text form) of one live record; None when nothing is searchable."""
    if not fields:
        return None
    lexemes = {scope_lexeme("s", stream), scope_lexeme("c", connection_id)}
    for slot, name in enumerate(fields[:MAX_SEARCHABLE_FIELDS]):
        value = data.get(name)
        if value is not None:
            prefix = f"{slot}:"
            lexemes.update([prefix + token for token in tokens(search_text(value))])
    # a character is at most 4 bytes: only text near a limit needs the exact, slow count
    if max(map(len, lexemes)) * 4 > MAX_LEXEME_BYTES or sum(map(len, lexemes)) * 4 > (
        MAX_ENTRY_BYTES // 2
    ):
        lexemes = _bounded(lexemes)
    # unicode61 tokens hold no quote, backslash or space; exact for any lexeme all the same
    text = " ".join(lexemes)
    if "'" in text or "\\" in text or len(text.split(" ")) != len(lexemes):
        return " ".join(_quoted(lexeme) for lexeme in lexemes)
    return "'" + text.replace(" ", "' '") + "'"


def query(slots: Sequence[int], terms: Sequence[Term]) -> str | None:
    """The tsquery (text form) for terms that must all match within these field slots; None
    when a term has no token at all (then nothing can match, as in SQLite)."""
    parts = []
    for term in terms:
        found = tokens(term.text)
        if not found:
            return None
        per_slot = []
        for slot in slots:
            words = [_quoted(_cut(f"{slot}:{token}")) for token in found]
            if term.prefix:
                words[-1] += ":*"
            per_slot.append(" & ".join(words))
        parts.append("(" + " | ".join(f"({p})" for p in per_slot) + ")")
    return " & ".join(parts)


class SearchIndex(PostgresBase):
    def _search_fields(
        self, db: Connection, stream: str, wanted: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        """The searchable fields a stream's rows are indexed with. With `wanted` (the current
        definition's), a change of definition re-indexes the stream's rows first."""
        row = db.execute("SELECT fields FROM search_fields WHERE stream = %s", (stream,)).fetchone()
        stored = tuple(row[0]) if row else None
        if wanted is None or stored == wanted:
            return stored or ()
        # one process re-indexes a stream at a time; a second one then finds it current
        db.execute("SELECT pg_advisory_xact_lock(hashtext('search:' || %s))", (stream,))
        row = db.execute(
            "SELECT fields FROM search_fields WHERE stream = %s", (stream,)
        ).fetchone()
        if row is not None and tuple(row[0]) == wanted:
            return wanted
        self._reindex(db, stream, wanted)
        db.execute(
            "INSERT INTO search_fields (stream, fields) VALUES (%s, %s) "
            "ON CONFLICT (stream) DO UPDATE SET fields = excluded.fields",
            (stream, list(wanted)),
        )
        return wanted

    def _reindex(self, db: Connection, stream: str, fields: tuple[str, ...]) -> None:
        last = 0
        while True:
            rows = db.execute(
                "SELECT record_id, connection_id, data FROM records WHERE stream = %s "
                "AND NOT deleted AND record_id > %s ORDER BY record_id LIMIT %s",
                (stream, last, REINDEX_CHUNK),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            self._set_entries(
                db,
                [
                    (record_id, entry(stream, connection_id, fields, orjson.loads(data)))
                    for record_id, connection_id, data in rows
                ],
            )

    @staticmethod
    def _set_entries(db: Connection, items: Iterable[tuple[int, str | None]]) -> None:
        ids, entries = [], []
        for record_id, text in items:
            ids.append(record_id)
            entries.append(text)
        if ids:
            db.execute(
                "UPDATE records r SET search = u.search::tsvector FROM unnest("
                "%s::bigint[], %s::text[]) AS u (record_id, search) "
                "WHERE r.record_id = u.record_id",
                (ids, entries),
            )

    def sync_search(self, definitions: Iterable[StreamDefinition]) -> None:
        """Index every stream with its definition's searchable fields (after an upgrade, or
        when a definition changed them); a no-op when they already match."""
        for definition in definitions:
            with self._tx() as db:
                self._search_fields(db, definition.name, definition.searchable_fields)
