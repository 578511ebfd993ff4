"""Aggregations computed in SQL over exactly the records a scope can see (see the SQLite
store's module for the rules; every query applies the scope as `reads.py` does).

What differs from SQLite: a field's value is read from the document as jsonb and typed by the
one scalar type its schema allows (an aggregable field has exactly one): numbers as `numeric`,
strings as byte-ordered text, booleans as booleans. So groups and extrema order as SQLite's
`json_extract` values do, and a number comes back an integer when it was written as one.
Calendar buckets need no offset ranges here: PostgreSQL knows IANA zones, so a moment is
turned into the zone's wall-clock time with `AT TIME ZONE` and truncated with `date_trunc`
(whose weeks start on Monday).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ownstream.model import ReadScope
from ownstream.registry.definitions import value_types
from ownstream.store.base import (
    AggregateGroup,
    AggregateResult,
    AggregateSpec,
    GroupKey,
    TimeGrouping,
)
from ownstream.store.postgres.database import PostgresBase
from ownstream.store.postgres.reads import DATE_TIME_SHAPE, scope_filters, visible

VALUE = "convert_from(r.data, 'UTF8')::jsonb -> %s"  # the field's JSON value, as `v`
TEXT = "(v #>> '{}')"
# The shape of an RFC 3339 date (what a `date` field holds once validated; date-times: reads.py)
DATE_SHAPE = "'^[0-9]{4}-[0-9]{2}-[0-9]{2}$'"
BUCKET_FORMATS = {"minute": 'YYYY-MM-DD"T"HH24:MI', "hour": 'YYYY-MM-DD"T"HH24:00'}
DAY_FORMAT = "YYYY-MM-DD"
GRANULARITIES = frozenset(("minute", "hour", "day", "week", "month", "quarter", "year"))


def _typed(scope: ReadScope, field: str) -> str:
    """SQL for the value `v` as its schema's scalar type (NULL when missing or of another)."""
    types = value_types(scope.stream.schema["properties"].get(field))
    if types <= {"integer", "number"}:
        return f"CASE WHEN jsonb_typeof(v) = 'number' THEN {TEXT}::numeric END"
    if types == {"boolean"}:
        return f"CASE WHEN jsonb_typeof(v) = 'boolean' THEN {TEXT}::boolean END"
    return f"CASE WHEN jsonb_typeof(v) = 'string' THEN {TEXT} END COLLATE \"C\""


def _plain(value: Any) -> GroupKey:
    """A numeric as the JSON number it was: an integer unless it has a fraction."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    result: GroupKey = value
    return result


class AggregateQueries(PostgresBase):
    def aggregate(self, scope: ReadScope, spec: AggregateSpec) -> AggregateResult:
        """A metric, or a count grouped by one field or one calendar bucket, in one pass over
        the visible records."""
        if not scope.connection_ids:
            return AggregateResult(record_count=0, value=0 if spec.metric == "count" else None)
        filters, filter_params = scope_filters(scope, "r")
        source = (
            "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
            "WHERE r.connection_id = ANY(%s) AND r.stream = %s "
            f"AND NOT r.deleted AND {visible('r', 'k')}" + "".join(f" AND {f}" for f in filters)
        )
        params: list[Any] = [list(scope.connection_ids), scope.stream.name, *filter_params]
        if spec.group_by is not None:
            rows = (
                f"SELECT {_typed(scope, spec.group_by)} AS g "
                f"FROM (SELECT {VALUE} AS v {source}) AS x"
            )
            return self._grouped(rows, [spec.group_by, *params], spec.limit, by_count=True)
        if spec.group_by_time is not None:
            rows, rows_params = _time_buckets(scope, spec.group_by_time, source, params)
            return self._grouped(rows, rows_params, spec.limit, by_count=False)
        return self._metric(scope, spec, source, params)

    def _metric(
        self, scope: ReadScope, spec: AggregateSpec, source: str, params: list[Any]
    ) -> AggregateResult:
        if spec.field is None:
            sql, value_params = f"SELECT count(*), NULL {source}", []
        else:
            value_sql = {
                "count": "NULL",
                "sum": "sum(x)",
                "min": "min(x)",
                "max": "max(x)",
                "count_distinct": "count(DISTINCT x)",
            }[spec.metric]
            sql = (
                f"SELECT count(*), {value_sql} FROM (SELECT {_typed(scope, spec.field)} AS x "
                f"FROM (SELECT {VALUE} AS v {source}) AS y) AS z"
            )
            value_params = [spec.field]
        row = self._row(sql, [*value_params, *params])
        assert row is not None
        count, value = row
        return AggregateResult(
            record_count=count, value=count if spec.metric == "count" else _plain(value)
        )

    def _grouped(
        self, rows_sql: str, params: list[Any], limit: int, *, by_count: bool
    ) -> AggregateResult:
        """Count the rows of `rows_sql` by their `g` column; the window sum gives the total
        and so `other_count` in the same statement."""
        order = "n DESC, g IS NULL, g" if by_count else "g IS NULL, g"
        rows = self._rows(
            f"SELECT g, n, sum(n) OVER () FROM (SELECT g, count(*) AS n FROM ({rows_sql}) AS a "
            f"GROUP BY g) AS b ORDER BY {order} LIMIT %s",
            [*params, limit],
        )
        if not rows:
            return AggregateResult(record_count=0)
        groups = tuple(AggregateGroup(key=_plain(key), count=n) for key, n, _ in rows)
        total = int(rows[0][2])
        return AggregateResult(
            record_count=total, groups=groups, other_count=total - sum(g.count for g in groups)
        )


def _time_buckets(
    scope: ReadScope, grouping: TimeGrouping, source: str, params: list[Any]
) -> tuple[str, list[Any]]:
    """SQL yielding each visible record's bucket as `g`, and its parameters. A date-time field
    that is the stream's consent time reads the normalized `consent_time` column."""
    assert grouping.granularity in GRANULARITIES  # validated; it is spelled into the SQL
    unit = f"'{grouping.granularity}'"
    shape = BUCKET_FORMATS.get(grouping.granularity, DAY_FORMAT)
    if grouping.date_only:
        day = (
            f"CASE WHEN jsonb_typeof(v) = 'string' AND {TEXT} ~ {DATE_SHAPE} "
            f"THEN {TEXT}::date::timestamp END"
        )
        return (
            f"SELECT to_char(date_trunc({unit}, {day}), '{shape}') COLLATE \"C\" AS g "
            f"FROM (SELECT {VALUE} AS v {source}) AS x",
            [grouping.field, *params],
        )
    if grouping.field == scope.stream.consent_time_field:
        moments = f"SELECT r.consent_time::timestamptz AS t {source}"
        moment_params: list[Any] = []
    else:
        moment = (
            f"CASE WHEN jsonb_typeof(v) = 'string' AND {TEXT} ~ {DATE_TIME_SHAPE} "
            f"THEN {TEXT}::timestamptz END"
        )
        moments = f"SELECT {moment} AS t FROM (SELECT {VALUE} AS v {source}) AS x"
        moment_params = [grouping.field]
    return (
        f"SELECT to_char(date_trunc({unit}, t AT TIME ZONE %s), '{shape}') COLLATE \"C\" AS g "
        f"FROM ({moments}) AS m",
        [grouping.time_zone, *moment_params, *params],
    )
