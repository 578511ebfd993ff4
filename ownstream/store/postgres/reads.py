"""Grant-scoped reads on PostgreSQL: pages, single records, counts, change feeds, search.

The queries are the SQLite store's (read its module for the reasoning), with PostgreSQL's
spelling: arrays instead of IN lists, `&&` for "an update of a granted field", and the
grant-scoped search as one tsquery (search_index.py). Each read is one statement, or (the
change feed's walk over stages) statements in one repeatable-read snapshot, so a publication
is either wholly in it or wholly out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ownstream.model import FieldFilter, ReadScope
from ownstream.records import project
from ownstream.search import MAX_SEARCHABLE_FIELDS, Term
from ownstream.store.base import (
    ChangedRecord,
    RecordPosition,
    SearchHit,
    StoredRecord,
    StreamCount,
)
from ownstream.store.postgres.database import Connection
from ownstream.store.postgres.search_index import SearchIndex, query, scope_lexeme

# Rows the newest-first walk of a search reads at most (shared by the searched connections)
# before the GIN index answers instead.
PROBE_ROWS = 600
LAST_ID = 2**63 - 1  # "below" when a search starts from the newest record
# The walk of one (connection, stream): its newest live rows below a record id, at most a
# number of them. Written so that only `records_recent` serves it, and stops where the
# connection ends: with `connection_id = …` the planner would walk the primary key down instead
# (through every newer row of every other connection), and a row comparison alone does not
# bound a backward index scan below.
_WALK = (
    "(SELECT * FROM records WHERE connection_id >= %s AND stream = %s AND "
    "(connection_id, stream, record_id) < (%s, %s, %s) AND NOT deleted "
    "ORDER BY connection_id DESC, stream DESC, record_id DESC LIMIT %s)"
)


def visible(row: str, connection: str) -> str:
    """The published-version condition for a `records` alias joined to its `connections`."""
    return (
        f"{row}.stage <= {connection}.published_stage AND "
        f"({row}.parked = 0 OR {row}.parked > {connection}.published_stage)"
    )


# Visible live records of `{rows}` (records, or a walk) whose entry matches a tsquery.
_MATCHES = (
    "FROM {rows} r JOIN connections k ON k.connection_id = r.connection_id "
    f"WHERE r.search @@ %s::tsquery AND NOT r.deleted AND {visible('r', 'k')}"
)
_COLUMNS = "SELECT r.record_id, r.connection_id, r.stream, r.record_key, r.data, r.emitted_at"


_COMPARE = {"eq": "=", "gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
# The shape of an RFC 3339 date-time (what a `date-time` field holds once validated): anything
# else is no moment, never a failed cast.
DATE_TIME_SHAPE = (
    "'^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?"
    "([Zz]|[+-][0-9]{2}:[0-9]{2})$'"
)
# A moment as `consent_time` (and `clock.iso`) spell it: UTC, to the nearest millisecond
MOMENT = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'


def scope_filters(scope: ReadScope, alias: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions for a scope's time window, resources and request filters on `records`.

    A filter compares the field's JSON value, when it has the filter value's JSON type, with
    the value (strings byte-ordered, numbers as numbers); a date-time compares as a UTC
    instant to the millisecond, as SQLite's `strftime` does (the consent-time field reads the
    normalized `consent_time` column)."""
    col = f"{alias}." if alias else ""
    filters: list[str] = []
    params: list[Any] = []
    if scope.since is not None or scope.until is not None:
        filters.append(f"{col}consent_time IS NOT NULL")
    if scope.since is not None:
        filters.append(f"{col}consent_time >= %s")
        params.append(scope.since)
    if scope.until is not None:
        filters.append(f"{col}consent_time < %s")
        params.append(scope.until)
    if scope.resources is not None:
        filters.append(f"{col}record_key = ANY(%s)")
        params.append(list(scope.resources))
    for found in scope.filters:
        compare = _COMPARE[found.op]
        if found.moment and found.field == scope.stream.consent_time_field:
            filters.append(f"{col}consent_time {compare} %s")
            params.append(found.value)
            continue
        value, uses = _typed_value(found, f"(convert_from({col}data, 'UTF8')::jsonb -> %s)")
        filters.append(f"{value} {compare} %s")
        params += [found.field] * uses + [found.value]
    return filters, params


def _typed_value(found: FieldFilter, json_value: str) -> tuple[str, int]:
    """SQL for the field's value typed as the filter's value (NULL when it is missing or of
    another JSON type), and how many times it names the field (`json_value` takes it)."""
    text = f"({json_value} #>> '{{}}')"
    if found.moment:
        instant = f"date_trunc('milliseconds', {text}::timestamptz + interval '500 microseconds')"
        return (
            f"CASE WHEN jsonb_typeof({json_value}) = 'string' AND {text} ~ {DATE_TIME_SHAPE} "
            f"THEN to_char({instant} AT TIME ZONE 'UTC', '{MOMENT}') END COLLATE \"C\"",
            3,
        )
    if isinstance(found.value, bool):
        return f"CASE WHEN jsonb_typeof({json_value}) = 'boolean' THEN {text}::boolean END", 2
    if isinstance(found.value, int | float):
        return f"CASE WHEN jsonb_typeof({json_value}) = 'number' THEN {text}::numeric END", 2
    return f"CASE WHEN jsonb_typeof({json_value}) = 'string' THEN {text} END COLLATE \"C\"", 2


def _qualifies(alias: str) -> str:
    """A change a bearer can see: an insert, a delete, or an update of a granted field (the
    granted fields are the next parameter)."""
    return f"({alias}.op <> 'update' OR {alias}.fields && %s::text[])"


class ReadQueries(SearchIndex):
    def _horizons(self, connection_ids: Sequence[str]) -> dict[str, int]:
        """The published stage of each (existing) connection."""
        rows = self._rows(
            "SELECT connection_id, published_stage FROM connections "
            "WHERE connection_id = ANY(%s)",
            (list(connection_ids),),
        )
        return {connection_id: stage for connection_id, stage in rows}

    # pages ----------------------------------------------------------------------------------
    def records_page(
        self,
        scope: ReadScope,
        *,
        limit: int,
        order: str = "desc",
        after: RecordPosition | None = None,
    ) -> tuple[list[StoredRecord], bool]:
        """One page of live records across the scope's connections, merged in one order:
        (cursor value, connection_id, record key), records without a cursor value last in both
        directions; a keyset range scan per connection and phase (present, then missing)."""
        horizons = self._horizons(scope.connection_ids) if scope.connection_ids else {}
        if not horizons:
            return [], False
        desc = order == "desc"
        cmp = "<" if desc else ">"
        direction = "DESC" if desc else "ASC"
        filters, filter_params = scope_filters(scope)
        # records without a cursor value ('') come after all others in either order
        phases = [("cursor_value = ''", after is not None and after.cursor_value == "")]
        if after is None or after.cursor_value != "":
            phases.insert(0, ("cursor_value <> ''", after is not None))
        parts, params = [], []
        for connection_id in sorted(horizons):
            horizon = horizons[connection_id]
            for phase, keyset in phases:
                where = [
                    "connection_id = %s",
                    "stream = %s",
                    "NOT deleted",
                    "stage <= %s",
                    "(parked = 0 OR parked > %s)",
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
                        where.append(f"(cursor_value, record_key) {cmp} (%s, %s)")
                        part_params += [after.cursor_value, after.record_key]
                    elif (connection_id < after.connection_id) == desc:
                        where.append(f"cursor_value {cmp}= %s")
                        part_params.append(after.cursor_value)
                    else:
                        where.append(f"cursor_value {cmp} %s")
                        part_params.append(after.cursor_value)
                parts.append(
                    "(SELECT connection_id, record_key, data, emitted_at, cursor_value "
                    f"FROM records WHERE {' AND '.join(where)} "
                    f"ORDER BY cursor_value {direction}, record_key {direction} LIMIT %s)"
                )
                params += [*part_params, limit + 1]
        sql = " UNION ALL ".join(parts)
        if len(parts) > 1:
            sql = (
                f"SELECT * FROM ({sql}) AS merged ORDER BY cursor_value = '', "
                f"cursor_value {direction}, connection_id {direction}, record_key {direction} "
                "LIMIT %s"
            )
            params.append(limit + 1)
        rows = self._rows(sql, params)
        fields = frozenset(scope.fields)
        page = [
            StoredRecord(
                connection_id=row[0],
                stream=scope.stream.name,
                record_key=row[1],
                data=project(orjson.loads(row[2]), fields),
                emitted_at=row[3],
                cursor_value=row[4],
            )
            for row in rows[:limit]
        ]
        return page, len(rows) > limit

    def record(self, scope: ReadScope, record_key: str) -> list[StoredRecord]:
        """The live record with this key in each of the scope's connections (0, 1 or more)."""
        if not scope.connection_ids:
            return []
        filters, filter_params = scope_filters(scope, "r")
        rows = self._rows(
            "SELECT r.connection_id, r.record_key, r.data, r.emitted_at, r.cursor_value "
            "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
            "WHERE r.connection_id = ANY(%s) AND r.stream = %s AND r.record_key = %s "
            f"AND NOT r.deleted AND {visible('r', 'k')}"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY r.connection_id",
            [list(scope.connection_ids), scope.stream.name, record_key, *filter_params],
        )
        fields = frozenset(scope.fields)
        return [
            StoredRecord(
                row[0], scope.stream.name, row[1], project(orjson.loads(row[2]), fields), row[3],
                row[4],
            )
            for row in rows
        ]

    # counts ---------------------------------------------------------------------------------
    def stream_counts(self, connection_ids: Sequence[str] | None = None) -> list[StreamCount]:
        """Live record count and last update per (connection, stream)."""
        where, params = self._where(
            [("connection_id = ANY(%s)", None if connection_ids is None else list(connection_ids))]
        )
        rows = self._rows(
            "SELECT connection_id, stream, record_count, last_updated FROM stream_stats"
            f"{where} ORDER BY stream, connection_id",
            params,
        )
        return [StreamCount(*row) for row in rows]

    def scoped_count(self, scope: ReadScope) -> dict[str, tuple[int, str | None]]:
        """Live records and last change per connection, within the scope's window/resources."""
        if not scope.connection_ids:
            return {}
        filters, params = scope_filters(scope, "r")
        rows = self._rows(
            "SELECT r.connection_id, count(*), max(r.updated_at) FROM records r "
            "JOIN connections k ON k.connection_id = r.connection_id "
            "WHERE r.connection_id = ANY(%s) AND r.stream = %s "
            f"AND NOT r.deleted AND {visible('r', 'k')}"
            + "".join(f" AND {f}" for f in filters)
            + " GROUP BY r.connection_id",
            [list(scope.connection_ids), scope.stream.name, *params],
        )
        return {c: (n, last) for c, n, last in rows}

    def visible_last_change(self, scope: ReadScope) -> dict[str, str]:
        """Per connection, when data the scope can see last changed (see the SQLite store):
        an update of hidden fields only never moves it."""
        found: dict[str, str] = {}
        filters, params = scope_filters(scope, "v")
        sql = (
            "SELECT s.published_at FROM runs s "
            "JOIN record_changes c ON c.stage = s.run_seq "
            "JOIN records h ON h.record_id = c.record_id "
            "JOIN connections k ON k.connection_id = h.connection_id "
            "JOIN records v ON v.connection_id = h.connection_id AND v.stream = h.stream "
            f"AND v.record_key = h.record_key AND {visible('v', 'k')} "
            "WHERE s.connection_id = %s AND s.publish_seq IS NOT NULL AND h.stream = %s "
            f"AND {_qualifies('c')}"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY s.run_seq DESC LIMIT 1"
        )
        fields = list(scope.fields)
        with self._db() as db:
            for connection_id in scope.connection_ids:
                row = db.execute(
                    sql, [connection_id, scope.stream.name, fields, *params]
                ).fetchone()
                if row is not None:
                    found[connection_id] = row[0]
        return found

    # change feed ----------------------------------------------------------------------------
    def change_horizon(self) -> int:
        """The publish clock: every stage published at or below it is committed (see
        collection.py for why that holds with concurrent publishers)."""
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
        each once, at its last qualifying change.

        Walks the scope's stages in publication order and each stage's changes in sequence
        order from the page position, one stage at a time (see the SQLite store), so a page
        costs its own changes and an index probe per stage it passes, never the rest of the
        window."""
        if not scope.connection_ids:
            return [], False
        filters, params = scope_filters(scope, "v")
        fields = list(scope.fields)
        after_publish, after_seq = after if after is not None else (since, 0)
        sql = (
            "SELECT v.connection_id, v.record_key, v.data, v.emitted_at, v.deleted, "
            "v.deleted_at, c.seq FROM record_changes c "
            "JOIN records h ON h.record_id = c.record_id "
            "JOIN connections k ON k.connection_id = h.connection_id "
            "JOIN records v ON v.connection_id = h.connection_id AND v.stream = h.stream "
            f"AND v.record_key = h.record_key AND {visible('v', 'k')} "
            "WHERE c.stage = %s AND c.seq > %s AND h.stream = %s "
            f"AND {_qualifies('c')} AND NOT EXISTS ("
            "SELECT 1 FROM record_changes later JOIN runs ls ON ls.run_seq = later.stage "
            "WHERE later.record_id = c.record_id AND later.seq > c.seq "
            f"AND ls.publish_seq <= %s AND {_qualifies('later')})"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY c.seq LIMIT %s"
        )
        keep = frozenset(fields)
        page: list[ChangedRecord] = []
        with self._snapshot() as db:  # the stages and their changes, as of one moment
            stages = db.execute(
                "SELECT run_seq, publish_seq FROM runs WHERE publish_seq >= %s "
                "AND publish_seq > %s AND publish_seq <= %s AND connection_id = ANY(%s) "
                "ORDER BY publish_seq",
                [after_publish, since, upto, list(scope.connection_ids)],
            ).fetchall()
            for stage, publish_seq in stages:
                rows = db.execute(
                    sql,
                    [
                        stage,
                        after_seq if publish_seq == after_publish else 0,
                        scope.stream.name,
                        fields,
                        upto,
                        fields,
                        *params,
                        limit + 1 - len(page),
                    ],
                ).fetchall()
                page.extend(
                    ChangedRecord(
                        connection_id=row[0],
                        stream=scope.stream.name,
                        record_key=row[1],
                        data=None if row[4] else project(orjson.loads(row[2]), keep),
                        emitted_at=row[3],
                        deleted=bool(row[4]),
                        deleted_at=row[5],
                        position=(publish_seq, row[6]),
                    )
                    for row in rows
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

        The grant is part of the tsquery: each stream's clause names its stream token, its
        granted connections' tokens and only its visible field slots, so hidden text never
        produces a hit; the same filters are applied again in SQL, as in SQLite.

        Newest first has two good plans, and which one depends on how common the words are,
        which the planner can only guess (a rare word outside its statistics looks common):
        walking each connection's newest rows down finds a common word at once and a rare one
        never; the GIN index finds a rare word at once and makes a common one sort every hit.
        So the walk goes first, over at most `PROBE_ROWS` rows; only if it cannot prove it
        found the newest hits does the index answer, as a bitmap scan (the plan is pinned for
        each step, whatever the statistics say). Both steps read one snapshot.
        """
        with self._tx() as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            searched = self._searched(db, scopes, terms)
            if searched is None:
                return [], False
            tsquery, parts = searched
            pairs = [(part, c) for part in parts for c in part.connection_ids]
            wanted = limit + 1
            below = LAST_ID if before is None else before
            probe = max(wanted, PROBE_ROWS // len(pairs))

            def walk(part: _Searched, connection_id: str) -> list[Any]:
                return [connection_id, part.stream, connection_id, part.stream, below, probe]

            db.execute("SET LOCAL enable_bitmapscan = off")
            db.execute("SET LOCAL enable_seqscan = off")
            # how far down each walk goes (its lowest record id), and whether that is all
            floors = db.execute(
                " UNION ALL ".join(
                    f"SELECT {i}, min(record_id), count(*) FROM {_WALK} AS walk"
                    for i in range(len(pairs))
                ),
                [v for part, c in pairs for v in walk(part, c)],
            ).fetchall()
            rest = [floor for _, floor, count in floors if count == probe]
            walked = [pairs[i] for i, _, count in floors if count]
            rows: list[tuple[Any, ...]] = []
            if walked:
                rows = db.execute(
                    "SELECT * FROM ("
                    + " UNION ALL ".join(
                        f"({_COLUMNS} {_MATCHES.format(rows=_WALK)}{part.filters} "
                        "ORDER BY r.record_id DESC LIMIT %s)"
                        for part, _ in walked
                    )
                    + ") AS hit ORDER BY record_id DESC LIMIT %s",
                    [
                        *[
                            v
                            for part, c in walked
                            for v in (*walk(part, c), tsquery, *part.params, wanted)
                        ],
                        wanted,
                    ],
                    prepare=False,
                ).fetchall()
            proven = not rest or (len(rows) == wanted and rows[-1][0] >= max(rest))
            if not proven:
                db.execute("SET LOCAL enable_bitmapscan = on")
                db.execute("SET LOCAL enable_indexscan = off")
                # a page of hits: starting parallel workers costs more than they would save
                db.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                granted = " OR ".join(
                    f"(r.stream = %s AND r.connection_id = ANY(%s){part.filters})" for part in parts
                )
                # the newest ids first, and only then their rows: a sort of every hit's id is
                # cheap, a sort of every hit's data is not
                rows = db.execute(
                    f"{_COLUMNS} FROM (SELECT r.record_id {_MATCHES.format(rows='records')} "
                    f"AND ({granted}) AND r.record_id < %s "
                    "ORDER BY r.record_id DESC LIMIT %s) AS top JOIN records r USING (record_id) "
                    "ORDER BY r.record_id DESC",
                    [
                        tsquery,
                        *[
                            v
                            for part in parts
                            for v in (part.stream, list(part.connection_ids), *part.params)
                        ],
                        below,
                        wanted,
                    ],
                    prepare=False,
                ).fetchall()
        fields_by_stream = {s.stream.name: frozenset(s.fields) for s in scopes}
        hits = [
            SearchHit(
                record_id=row[0],
                connection_id=row[1],
                stream=row[2],
                record_key=row[3],
                data=project(orjson.loads(row[4]), fields_by_stream[row[2]]),
                emitted_at=row[5],
            )
            for row in rows[:limit]
        ]
        return hits, len(rows) > limit

    def _searched(
        self, db: Connection, scopes: Sequence[ReadScope], terms: tuple[Term, ...]
    ) -> tuple[str, list[_Searched]] | None:
        """The grant-scoped tsquery and what each scope searches; None when nothing can
        match."""
        clauses: list[str] = []
        parts: list[_Searched] = []
        indexed_fields = {
            stream: tuple(fields)
            for stream, fields in db.execute(
                "SELECT stream, fields FROM search_fields WHERE stream = ANY(%s)",
                ([scope.stream.name for scope in scopes],),
            )
        }
        for scope in scopes:
            indexed = indexed_fields.get(scope.stream.name, ())
            slots = [
                slot
                for slot, name in enumerate(indexed[:MAX_SEARCHABLE_FIELDS])
                if name in scope.fields
            ]
            if not slots or not scope.connection_ids:
                continue
            words = query(slots, terms)
            if words is None:
                continue
            connection_ids = tuple(sorted(scope.connection_ids))
            connections = " | ".join(f"'{scope_lexeme('c', c)}'" for c in connection_ids)
            clauses.append(
                f"'{scope_lexeme('s', scope.stream.name)}' & ({connections}) & ({words})"
            )
            filters, params = scope_filters(scope, "r")
            parts.append(
                _Searched(
                    scope.stream.name,
                    connection_ids,
                    "".join(f" AND {f}" for f in filters),
                    params,
                )
            )
        if not clauses:
            return None
        return " | ".join(f"({c})" for c in clauses), parts


@dataclass(frozen=True)
class _Searched:
    """One scope of a search: its stream, its granted connections, and the SQL (with its
    parameters) of its time window and resources."""

    stream: str
    connection_ids: tuple[str, ...]
    filters: str
    params: list[Any]
