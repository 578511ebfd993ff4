"""Grant-scoped reads: pages, single records, counts, change feeds, search.

Every query takes `ReadScope`s and applies connections, fields, time windows and resources in
SQL, so what a bearer may not see never reaches Python. Every query also sees only published
versions: a row is visible when its stage is at or below its connection's published stage and
it was not superseded by a published stage (`visible`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ownstream.model import ReadScope
from ownstream.records import project
from ownstream.search import Term
from ownstream.store.base import (
    ChangedRecord,
    RecordPosition,
    SearchHit,
    StoredRecord,
    StreamCount,
)
from ownstream.store.sqlite.database import marks
from ownstream.store.sqlite.search_index import SLOTS, SearchIndex, scope_token

SEARCH_PROBE = 256  # term-only candidates below which a search joins them to records instead
_HIT_COLUMNS = "s.connection_id, s.stream, r.record_key, r.data, r.emitted_at"
# search reads `record_rows` (r) and its `record_scopes` (s) itself, not the `records` view:
# the candidates' join must say NOT INDEXED, which a view cannot take
_HIT_SOURCE = (
    "JOIN record_scopes s ON s.scope = r.scope "
    "JOIN connections k ON k.connection_id = s.connection_id"
)


def visible(row: str, connection: str) -> str:
    """The published-version condition for a `records` alias joined to its `connections`."""
    return (
        f"{row}.stage <= {connection}.published_stage AND "
        f"({row}.parked = 0 OR {row}.parked > {connection}.published_stage)"
    )


_COMPARE = {"eq": "=", "gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
MOMENT = "%Y-%m-%dT%H:%M:%fZ"  # the shape of `consent_time` (and of `clock.iso`)


def scope_filters(scope: ReadScope, alias: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions for a scope's time window, resources and request filters on `records`.

    A filter compares the field's JSON value with the typed value; a date-time compares as a
    UTC instant (the consent-time field reads the normalized `consent_time` column)."""
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
        filters.append(f"{col}record_key IN ({marks(len(scope.resources))})")
        params.extend(scope.resources)
    for found in scope.filters:
        compare = _COMPARE[found.op]
        value = json_extract = f"json_extract(record_json({col}data), ?)"
        if found.moment and found.field == scope.stream.consent_time_field:
            filters.append(f"{col}consent_time {compare} ?")
        else:
            if found.moment:
                value = f"strftime('{MOMENT}', {json_extract})"
            filters.append(f"{value} {compare} ?")
            params.append(f"$.{found.field}")
        params.append(found.value)
    return filters, params


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _qualifies(alias: str, field_marks: str) -> str:
    """A change a bearer can see: an insert, a delete, or an update of a granted field."""
    return (
        f"({alias}.op != 'update' OR EXISTS (SELECT 1 FROM json_each({alias}.fields) j "
        f"WHERE j.value IN ({field_marks})))"
    )


class ReadQueries(SearchIndex):
    def _horizons(self, connection_ids: Sequence[str]) -> dict[str, int]:
        """The published stage of each (existing) connection."""
        rows = self._db().execute(
            "SELECT connection_id, published_stage FROM connections "
            f"WHERE connection_id IN ({marks(len(connection_ids))})",
            list(connection_ids),
        )
        return dict(rows.fetchall())

    # pages ----------------------------------------------------------------------------------
    def records_page(
        self,
        scope: ReadScope,
        *,
        limit: int,
        order: str = "desc",
        after: RecordPosition | None = None,
    ) -> tuple[list[StoredRecord], bool]:
        """One page of live records across the scope's connections, merged in one order.

        Order is (cursor value, connection_id, record key), records without a cursor value
        last in both directions (PDPP's stable sort); each connection contributes index range
        scans, so a merged page costs a few single-connection pages, not a sort.
        """
        horizons = self._horizons(scope.connection_ids) if scope.connection_ids else {}
        if not horizons:
            return [], False
        desc = order == "desc"
        cmp = "<" if desc else ">"
        direction = "DESC" if desc else "ASC"
        filters, filter_params = scope_filters(scope)
        # records without a cursor value ('') come after all others in either order: a
        # present phase and a missing phase, each an index range scan per connection
        phases = [("cursor_value = ''", after is not None and after.cursor_value == "")]
        if after is None or after.cursor_value != "":
            phases.insert(0, ("cursor_value != ''", after is not None))
        parts, params = [], []
        for connection_id in sorted(horizons):
            horizon = horizons[connection_id]
            for phase, keyset in phases:
                where = [
                    "connection_id = ?",
                    "stream = ?",
                    "deleted = 0",
                    "stage <= ?",
                    "(parked = 0 OR parked > ?)",
                    phase,
                    *filters,
                ]
                part_params: list[Any] = [
                    connection_id,
                    scope.stream.name,
                    horizon,
                    horizon,
                    *filter_params,
                ]
                if keyset and after is not None:
                    if connection_id == after.connection_id:
                        where.append(f"(cursor_value, record_key) {cmp} (?, ?)")
                        part_params += [after.cursor_value, after.record_key]
                    elif (connection_id < after.connection_id) == desc:
                        where.append(f"cursor_value {cmp}= ?")
                        part_params.append(after.cursor_value)
                    else:
                        where.append(f"cursor_value {cmp} ?")
                        part_params.append(after.cursor_value)
                parts.append(
                    "SELECT * FROM (SELECT connection_id, record_key, data, emitted_at, "
                    f"cursor_value FROM records WHERE {' AND '.join(where)} "
                    f"ORDER BY cursor_value {direction}, record_key {direction} LIMIT ?)"
                )
                params += [*part_params, limit + 1]
        sql = " UNION ALL ".join(parts)
        if len(parts) > 1:
            sql = (
                f"SELECT * FROM ({sql}) ORDER BY cursor_value = '', cursor_value {direction}, "
                f"connection_id {direction}, record_key {direction} LIMIT ?"
            )
            params.append(limit + 1)
        rows = self._db().execute(sql, params).fetchall()
        fields = frozenset(scope.fields)
        page = [
            StoredRecord(
                connection_id=row[0],
                stream=scope.stream.name,
                record_key=row[1],
                data=project(data, fields),
                emitted_at=row[3],
                cursor_value=row[4],
            )
            for row, data in zip(
                rows[:limit], self._records_data([row[2] for row in rows[:limit]]), strict=True
            )
        ]
        return page, len(rows) > limit

    def record(self, scope: ReadScope, record_key: str) -> list[StoredRecord]:
        """The live record with this key in each of the scope's connections (0, 1 or more)."""
        if not scope.connection_ids:
            return []
        filters, filter_params = scope_filters(scope, "r")
        rows = self._db().execute(
            "SELECT r.connection_id, r.record_key, r.data, r.emitted_at, r.cursor_value "
            "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
            f"WHERE r.connection_id IN ({marks(len(scope.connection_ids))}) "
            f"AND r.stream = ? AND r.record_key = ? AND r.deleted = 0 AND {visible('r', 'k')}"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY r.connection_id",
            [*scope.connection_ids, scope.stream.name, record_key, *filter_params],
        ).fetchall()
        fields = frozenset(scope.fields)
        return [
            StoredRecord(row[0], scope.stream.name, row[1], project(data, fields), row[3], row[4])
            for row, data in zip(rows, self._records_data([row[2] for row in rows]), strict=True)
        ]

    # counts ---------------------------------------------------------------------------------
    def stream_counts(self, connection_ids: Sequence[str] | None = None) -> list[StreamCount]:
        """Live record count and last update per (connection, stream)."""
        sql = "SELECT connection_id, stream, record_count, last_updated FROM stream_stats"
        params: list[Any] = []
        if connection_ids is not None:
            sql += f" WHERE connection_id IN ({marks(len(connection_ids))})"
            params.extend(connection_ids)
        rows = self._db().execute(sql + " ORDER BY stream, connection_id", params)
        return [StreamCount(*row) for row in rows]

    def scoped_count(self, scope: ReadScope) -> dict[str, tuple[int, str | None]]:
        """Live records and last change per connection, within the scope's window/resources."""
        if not scope.connection_ids:
            return {}
        filters, params = scope_filters(scope, "r")
        rows = self._db().execute(
            "SELECT r.connection_id, count(*), max(r.updated_at) FROM records r "
            "JOIN connections k ON k.connection_id = r.connection_id "
            f"WHERE r.connection_id IN ({marks(len(scope.connection_ids))}) AND r.stream = ? "
            f"AND r.deleted = 0 AND {visible('r', 'k')}"
            + "".join(f" AND {f}" for f in filters)
            + " GROUP BY r.connection_id",
            [*scope.connection_ids, scope.stream.name, *params],
        )
        return {c: (n, last) for c, n, last in rows}

    def visible_last_change(self, scope: ReadScope) -> dict[str, str]:
        """Per connection, when data the scope can see last changed: the publication of the
        latest stage with an insert, a delete or an update of a visible field, within the
        window and resources. An update of hidden fields only never moves it (the stored
        `last_updated` does), so it cannot reveal one."""
        found: dict[str, str] = {}
        filters, params = scope_filters(scope, "v")
        fields = list(scope.fields)
        sql = (
            "SELECT s.published_at FROM runs s "
            "JOIN record_changes c ON c.stage = s.run_seq "
            "JOIN records h ON h.record_id = c.record_id "
            "JOIN connections k ON k.connection_id = h.connection_id "
            "JOIN records v ON v.connection_id = h.connection_id AND v.stream = h.stream "
            f"AND v.record_key = h.record_key AND {visible('v', 'k')} "
            "WHERE s.connection_id = ? AND s.publish_seq IS NOT NULL AND h.stream = ? "
            f"AND {_qualifies('c', marks(len(fields)) or 'NULL')}"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY s.run_seq DESC LIMIT 1"
        )
        for connection_id in scope.connection_ids:
            row = self._db().execute(
                sql, [connection_id, scope.stream.name, *fields, *params]
            ).fetchone()
            if row is not None:
                found[connection_id] = row[0]
        return found

    # change feed ----------------------------------------------------------------------------
    def change_horizon(self) -> int:
        """The publish clock: every stage published at or below it is committed."""
        found = self._meta("publish_clock")
        return int(found) if found else 0

    def change_floor(self) -> int:
        """Tokens older than this publish sequence can no longer be honoured."""
        found = self._meta("change_floor")
        return int(found) if found else 0

    def changes_page(
        self,
        scope: ReadScope,
        *,
        since: int,
        upto: int,
        after: tuple[int, int] | None,
        limit: int,
    ) -> tuple[list[ChangedRecord], bool]:
        """Records whose grant-visible data changed in stages published in (since, upto],
        each once, at its last qualifying change; a change touching only hidden fields never
        qualifies.

        Walks the scope's stages in publication order and each stage's changes in sequence
        order from the page position, one stage at a time, so a page costs its own changes
        (and an index probe per stage it passes), never the rest of the window. A change is
        kept only if no later qualifying change of the same record falls inside the session;
        a record's changes all come from its connection's stages, which publish in the order
        they were written, so "later" is simply a higher change sequence.
        """
        if not scope.connection_ids:
            return [], False
        filters, params = scope_filters(scope, "v")
        fields = list(scope.fields)
        field_marks = marks(len(fields)) or "NULL"
        after_publish, after_seq = after if after is not None else (since, 0)
        stages = self._db().execute(
            "SELECT run_seq, publish_seq FROM runs WHERE publish_seq >= ? AND publish_seq > ? "
            f"AND publish_seq <= ? AND connection_id IN ({marks(len(scope.connection_ids))}) "
            "ORDER BY publish_seq",
            [after_publish, since, upto, *scope.connection_ids],
        )
        # record_changes drives (its (stage, seq) index gives the order); CROSS JOIN keeps
        # the planner from starting anywhere else
        sql = (
            "SELECT v.connection_id, v.record_key, v.data, v.emitted_at, v.deleted, "
            "v.deleted_at, c.seq FROM record_changes c "
            "CROSS JOIN records h ON h.record_id = c.record_id "
            "JOIN connections k ON k.connection_id = h.connection_id "
            "JOIN records v ON v.connection_id = h.connection_id AND v.stream = h.stream "
            f"AND v.record_key = h.record_key AND {visible('v', 'k')} "
            "WHERE c.stage = ? AND c.seq > ? AND h.stream = ? "
            f"AND {_qualifies('c', field_marks)} AND NOT EXISTS ("
            "SELECT 1 FROM record_changes later JOIN runs ls ON ls.run_seq = later.stage "
            "WHERE later.record_id = c.record_id AND later.seq > c.seq "
            f"AND ls.publish_seq <= ? AND {_qualifies('later', field_marks)})"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY c.seq LIMIT ?"
        )
        keep = frozenset(fields)
        page: list[ChangedRecord] = []
        for stage, publish_seq in stages:
            rows = self._db().execute(
                sql,
                [
                    stage,
                    after_seq if publish_seq == after_publish else 0,
                    scope.stream.name,
                    *fields,
                    upto,
                    *fields,
                    *params,
                    limit + 1 - len(page),
                ],
            ).fetchall()
            page.extend(
                ChangedRecord(
                    connection_id=row[0],
                    stream=scope.stream.name,
                    record_key=row[1],
                    data=None if row[4] else project(data, keep),
                    emitted_at=row[3],
                    deleted=bool(row[4]),
                    deleted_at=row[5],
                    position=(publish_seq, row[6]),
                )
                for row, data in zip(
                    rows, self._records_data([row[2] for row in rows]), strict=True
                )
            )
            if len(page) > limit:
                return page[:limit], True
        return page, False

    # search ---------------------------------------------------------------------------------
    def search(
        self,
        scopes: Sequence[ReadScope],
        terms: tuple[Term, ...],
        *,
        limit: int,
        before: int | None,
    ) -> tuple[list[SearchHit], bool]:
        """Newest-first hits over (granted ∩ searchable) fields of each scope's stream.

        The grant is part of every query: each stream's clause names its stream token, its
        granted connections' tokens and only its visible field columns, so hidden text never
        produces a hit. Newest-first (record id) order keeps any term's cost bounded by the page.

        Two plans give the same hits. When the terms alone (in the visible columns) match fewer
        than `SEARCH_PROBE` rows below the position, those rows are every candidate: joining
        them to `records` applies the grant exactly, and a rare term never walks the scope
        tokens' posting lists (every row of a stream or connection). Otherwise the scope goes
        into the MATCH, so a common term outside the grant never starves a page.
        """
        db = self._db()
        words = " AND ".join(_quoted(t.text) + (" *" if t.prefix else "") for t in terms)
        groups: dict[str, list[tuple[str, list[Any]]]] = {}  # column filter -> scope filters
        clauses, filter_sql, filter_params = [], [], []
        for scope in scopes:
            indexed = self._search_fields(db, scope.stream.name)
            visible_slots = [
                f"f{i}" for i, name in enumerate(indexed[:SLOTS]) if name in scope.fields
            ]
            if not visible_slots or not scope.connection_ids:
                continue
            columns = f"{{{' '.join(visible_slots)}}}"
            connections = " OR ".join(
                _quoted(scope_token("c", c)) for c in sorted(scope.connection_ids)
            )
            clauses.append(
                f"(scope : {_quoted(scope_token('s', scope.stream.name))} AND "
                f"scope : ({connections}) AND {columns} : ({words}))"
            )
            filters, extra = scope_filters(scope, "r")
            granted = f"s.connection_id IN ({marks(len(scope.connection_ids))})"
            condition = " AND ".join(["s.stream = ?", granted, *filters])
            params = [scope.stream.name, *sorted(scope.connection_ids), *extra]
            filter_sql.append(condition)
            filter_params += params
            groups.setdefault(columns, []).append((condition, params))
        if not clauses:
            return [], False
        rows = self._search_candidates(db, groups, words, limit=limit, before=before)
        if rows is None:
            sql = (
                f"SELECT f.rowid, {_HIT_COLUMNS} FROM search_index f "
                f"JOIN record_rows r ON r.record_id = f.rowid {_HIT_SOURCE} "
                f"WHERE search_index MATCH ? AND r.deleted = 0 AND {visible('r', 'k')} "
                f"AND (({') OR ('.join(filter_sql)}))"
                + (" AND f.rowid < ?" if before is not None else "")
                + " ORDER BY f.rowid DESC LIMIT ?"
            )
            args: list[Any] = [" OR ".join(clauses), *filter_params]
            if before is not None:
                args.append(before)
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
        fields_by_stream = {s.stream.name: frozenset(s.fields) for s in scopes}
        hits = [
            SearchHit(
                record_id=row[0],
                connection_id=row[1],
                stream=row[2],
                record_key=row[3],
                data=project(data, fields_by_stream[row[2]]),
                emitted_at=row[5],
            )
            for row, data in zip(
                rows[:limit], self._records_data([row[4] for row in rows[:limit]]), strict=True
            )
        ]
        return hits, len(rows) > limit

    def _search_candidates(
        self,
        db: sqlite3.Connection,
        groups: dict[str, list[tuple[str, list[Any]]]],
        words: str,
        *,
        limit: int,
        before: int | None,
    ) -> list[Any] | None:
        """The page from the term-only candidates, or None when the terms match too many rows
        (in some column group) for their candidates to be enumerated cheaply."""
        selects, params = [], []
        below = " AND rowid < ?" if before is not None else ""
        for columns, scoped in groups.items():
            probe = [f"{columns} : ({words})", *([before] if before is not None else [])]
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT rowid FROM search_index WHERE search_index MATCH ?"
                    f"{below} ORDER BY rowid DESC LIMIT ?",
                    [*probe, SEARCH_PROBE],
                )
            ]
            if len(ids) >= SEARCH_PROBE:
                return None
            if ids:
                # NOT INDEXED: by rowid, never a walk of the scope's connections on records_page
                selects.append(
                    f"SELECT r.record_id, {_HIT_COLUMNS} FROM record_rows r NOT INDEXED "
                    f"{_HIT_SOURCE} "
                    f"WHERE r.record_id IN ({marks(len(ids))}) AND r.deleted = 0 "
                    f"AND {visible('r', 'k')} "
                    f"AND (({') OR ('.join(condition for condition, _ in scoped)}))"
                )
                params += [*ids, *(p for _, extra in scoped for p in extra)]
        if not selects:
            return []
        # UNION: a row two groups both found (one stream in two scopes) is one hit
        sql = " UNION ".join(selects) + " ORDER BY 1 DESC LIMIT ?"
        return db.execute(sql, [*params, limit + 1]).fetchall()
