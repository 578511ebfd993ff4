"""Grant-scoped reads beyond plain pages: change feeds, search, scoped counts.

Every query here takes `ReadScope`s and applies connections, fields, time windows and
resources inside SQL, so what a bearer may not see never reaches Python.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from ownstream.model import ReadScope
from ownstream.records import project
from ownstream.search import Term
from ownstream.store.base import ChangedRecord, SearchHit

SLOTS = 8


def scope_token(kind: str, value: str) -> str:
    """An opaque, tokenizer-safe search-scope token for a stream or a connection."""
    return kind + hashlib.sha1(value.encode()).hexdigest()[:16]


def scope_filters(scope: ReadScope, alias: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions for a scope's time window and resources on `records`."""
    col = f"{alias}." if alias else ""
    filters: list[str] = []
    params: list[Any] = []
    if scope.since is not None or scope.until is not None:
        filters.append(f"{col}consent_time IS NOT NULL")
    if scope.since is not None:
        filters.append(f"{col}consent_time >= ?")
        params.append(scope.since)
    if scope.until is not None:
        filters.append(f"{col}consent_time < ?")
        params.append(scope.until)
    if scope.resources is not None:
        filters.append(f"{col}record_key IN ({','.join('?' * len(scope.resources))})")
        params.extend(scope.resources)
    return filters, params


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class ReadQueries:
    """Mixed into SQLiteStore; relies on its per-thread `_db()`."""

    _db: Callable[[], sqlite3.Connection]

    # counts -----------------------------------------------------------------------------------
    def scoped_count(self, scope: ReadScope) -> dict[str, tuple[int, str | None]]:
        """Live records and last change per connection, within the scope's window/resources."""
        if not scope.connection_ids:
            return {}
        filters, params = scope_filters(scope)
        marks = ",".join("?" * len(scope.connection_ids))
        rows = self._db().execute(
            "SELECT connection_id, count(*), max(updated_at) FROM records "
            f"WHERE connection_id IN ({marks}) AND stream = ? AND deleted = 0"
            + "".join(f" AND {f}" for f in filters)
            + " GROUP BY connection_id",
            [*scope.connection_ids, scope.stream.name, *params],
        )
        return {c: (n, last) for c, n, last in rows}

    def visible_last_change(self, scope: ReadScope) -> dict[str, str]:
        """Per connection, when data the scope can see last changed: an insert, a delete or an
        update of a visible field, within the window and resources. An update of hidden fields
        only never moves it (the stored `last_updated` does), so it cannot reveal one."""
        found: dict[str, str] = {}
        filters, params = scope_filters(scope, "r")
        fields = list(scope.fields)
        sql = (
            "SELECT c.changed_at FROM record_changes c JOIN records r ON r.record_id = c.record_id "
            "WHERE c.stream = ? AND c.connection_id = ? "
            "AND (c.op != 'update' OR EXISTS (SELECT 1 FROM json_each(c.changed_fields) j "
            f"WHERE j.value IN ({','.join('?' * len(fields)) or 'NULL'})))"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY c.seq DESC LIMIT 1"
        )
        for connection_id in scope.connection_ids:
            row = self._db().execute(
                sql, [scope.stream.name, connection_id, *fields, *params]
            ).fetchone()
            if row is not None:
                found[connection_id] = row[0]
        return found

    # change feed ------------------------------------------------------------------------------
    def change_horizon(self) -> int:
        row = self._db().execute("SELECT coalesce(max(seq), 0) FROM record_changes").fetchone()
        return int(row[0])

    def change_floor(self) -> int:
        """Tokens older than this sequence were compacted away (see `prune_changes`)."""
        row = self._db().execute("SELECT value FROM meta WHERE key = 'change_floor'").fetchone()
        return int(row[0]) if row else 0

    def changes_page(
        self, scope: ReadScope, *, since: int, upto: int, after: int, limit: int
    ) -> tuple[list[ChangedRecord], bool]:
        """Records whose grant-visible data changed in (since, upto], each once, at its last
        qualifying change; a change touching only hidden fields never qualifies.

        Walks the change log in sequence order from the page position (the primary key, so
        each page costs its own changes, not the whole window) and keeps a change only if no
        later qualifying change of the same record falls inside the session.
        """
        if not scope.connection_ids:
            return [], False
        filters, params = scope_filters(scope, "r")
        fields = list(scope.fields)
        marks = ",".join("?" * len(scope.connection_ids))
        field_marks = ",".join("?" * len(fields)) or "NULL"

        def qualifies(alias: str) -> str:
            return (
                f"({alias}.op != 'update' OR EXISTS (SELECT 1 FROM json_each("
                f"{alias}.changed_fields) j WHERE j.value IN ({field_marks})))"
            )

        sql = (
            "SELECT r.connection_id, r.record_key, r.data, r.emitted_at, r.deleted, "
            "r.deleted_at, c.seq FROM record_changes c "
            "JOIN records r ON r.record_id = c.record_id "
            # `+` keeps SQLite on the primary key (sequence order) rather than a stream index
            f"WHERE c.seq > ? AND c.seq <= ? AND +c.stream = ? AND +c.connection_id IN ({marks}) "
            f"AND {qualifies('c')} AND NOT EXISTS (SELECT 1 FROM record_changes later "
            "WHERE later.record_id = c.record_id AND later.seq > c.seq AND later.seq <= ? "
            f"AND {qualifies('later')})"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY c.seq LIMIT ?"
        )
        rows = (
            self._db()
            .execute(
                sql,
                [
                    max(since, after),
                    upto,
                    scope.stream.name,
                    *scope.connection_ids,
                    *fields,
                    upto,
                    *fields,
                    *params,
                    limit + 1,
                ],
            )
            .fetchall()
        )
        keep = frozenset(fields)
        page = [
            ChangedRecord(
                connection_id=row[0],
                stream=scope.stream.name,
                record_key=row[1],
                data=None
                if row[4]
                else project(orjson.loads(row[2]), keep),
                emitted_at=row[3],
                deleted=bool(row[4]),
                deleted_at=row[5],
                seq=row[6],
            )
            for row in rows[:limit]
        ]
        return page, len(rows) > limit

    # search -----------------------------------------------------------------------------------
    def search(
        self,
        scopes: Sequence[ReadScope],
        terms: tuple[Term, ...],
        *,
        limit: int,
        before_rowid: int | None,
    ) -> tuple[list[SearchHit], bool]:
        """Newest-first hits over (granted ∩ searchable) fields of each scope's stream.

        The grant is part of the MATCH: each stream's clause names its stream token, its
        granted connections' tokens and only its visible field columns, so hidden text never
        produces a hit. Newest-first (rowid) order keeps any term's cost bounded by the page.
        """
        clauses, filter_sql, filter_params = [], [], []
        words = " AND ".join(_quoted(t.text) + (" *" if t.prefix else "") for t in terms)
        for scope in scopes:
            visible = [
                f"f{i}"
                for i, name in enumerate(scope.stream.searchable_fields[:SLOTS])
                if name in scope.fields
            ]
            if not visible or not scope.connection_ids:
                continue
            connections = " OR ".join(
                _quoted(scope_token("c", c)) for c in sorted(scope.connection_ids)
            )
            clauses.append(
                f"(scope : {_quoted(scope_token('s', scope.stream.name))} AND "
                f"scope : ({connections}) AND {{{' '.join(visible)}}} : ({words}))"
            )
            filters, extra = scope_filters(scope, "r")
            granted = f"r.connection_id IN ({','.join('?' * len(scope.connection_ids))})"
            filter_sql.append(" AND ".join(["r.stream = ?", granted, *filters]))
            filter_params += [scope.stream.name, *sorted(scope.connection_ids), *extra]
        if not clauses:
            return [], False
        sql = (
            "SELECT f.rowid, r.connection_id, r.stream, r.record_key, r.data, r.emitted_at "
            "FROM search_fts f JOIN records r ON r.record_id = f.rowid "
            "WHERE search_fts MATCH ? AND r.deleted = 0 "
            f"AND (({') OR ('.join(filter_sql)}))"
            + (" AND f.rowid < ?" if before_rowid is not None else "")
            + " ORDER BY f.rowid DESC LIMIT ?"
        )
        params: list[Any] = [" OR ".join(clauses), *filter_params]
        if before_rowid is not None:
            params.append(before_rowid)
        params.append(limit + 1)
        rows = self._db().execute(sql, params).fetchall()
        fields_by_stream = {s.stream.name: frozenset(s.fields) for s in scopes}
        hits = [
            SearchHit(
                rowid=row[0],
                connection_id=row[1],
                stream=row[2],
                record_key=row[3],
                data=project(orjson.loads(row[4]), fields_by_stream[row[2]]),
                emitted_at=row[5],
            )
            for row in rows[:limit]
        ]
        return hits, len(rows) > limit
