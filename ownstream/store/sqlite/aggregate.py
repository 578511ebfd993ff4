"""Aggregations computed in SQL over exactly the records a scope can see.

Every query applies the scope the way `reads.py` does (granted connections, the published-version
condition, the time window and resources), so a record a bearer cannot list never counts.

Time buckets: SQLite knows only UTC and fixed offsets, so an IANA zone becomes a list of UTC
offset ranges over the queried window (the earliest to the latest value), found in Python from
`zoneinfo`, and each value is shifted by its range's offset (a `CASE` over the ranges yields
the `+N seconds` modifier) before it is truncated to its calendar bucket. Offsets are sampled
once a day and each change is located to the second, so every transition of the zone within
the window is honoured (two within one day would not be).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ownstream.clock import iso, parse_iso
from ownstream.model import ReadScope
from ownstream.registry.definitions import value_types
from ownstream.store.base import (
    AggregateGroup,
    AggregateResult,
    AggregateSpec,
    GroupKey,
    TimeGrouping,
)
from ownstream.store.sqlite.database import SQLiteBase, marks
from ownstream.store.sqlite.reads import MOMENT, scope_filters, visible

DAY = 86_400
# datetime.fromtimestamp works between years 1 and 9999; keep a day clear of both ends
EARLIEST, LATEST = -62_135_596_800 + DAY, 253_402_300_799 - DAY
DATA = "record_json(r.data)"


def _bucket(granularity: str, moment: str, modifiers: str) -> str:
    """SQL truncating a time value to the start of its calendar bucket (weeks from Monday)."""
    if granularity == "minute":
        return f"strftime('%Y-%m-%dT%H:%M', {moment}{modifiers})"
    if granularity == "hour":
        return f"strftime('%Y-%m-%dT%H:00', {moment}{modifiers})"
    if granularity == "day":
        return f"strftime('%Y-%m-%d', {moment}{modifiers})"
    if granularity == "week":
        return f"date({moment}{modifiers}, '-6 days', 'weekday 1')"
    if granularity == "month":
        return f"strftime('%Y-%m-01', {moment}{modifiers})"
    if granularity == "quarter":
        # `||` keeps a missing value NULL (printf alone would make it '-00-01')
        return (
            f"strftime('%Y-', {moment}{modifiers}) || printf('%02d-01', "
            f"(CAST(strftime('%m', {moment}{modifiers}) AS INTEGER) - 1) / 3 * 3 + 1)"
        )
    return f"strftime('%Y-01-01', {moment}{modifiers})"


def _offset(zone: ZoneInfo, moment: int) -> int:
    found = datetime.fromtimestamp(min(max(moment, EARLIEST), LATEST), zone).utcoffset()
    return int(found.total_seconds()) if found is not None else 0


def offset_ranges(zone: ZoneInfo, low: int, high: int) -> list[tuple[int | None, int]]:
    """`(until, offset)` pairs covering [low, high]: a moment before `until` (epoch seconds;
    None for the last range) is shifted by the first matching range's `offset`."""
    ranges: list[tuple[int | None, int]] = []
    current = _offset(zone, low)
    moment = low
    while moment < high:
        step = min(moment + DAY, high)
        if _offset(zone, step) == current:
            moment = step
            continue
        before, after = moment, step
        while after - before > 1:
            middle = (before + after) // 2
            if _offset(zone, middle) == current:
                before = middle
            else:
                after = middle
        ranges.append((after, current))
        current, moment = _offset(zone, after), after
    ranges.append((None, current))
    return ranges


class AggregateQueries(SQLiteBase):
    def aggregate(self, scope: ReadScope, spec: AggregateSpec) -> AggregateResult:
        """A metric, or a count grouped by one field or one calendar bucket, in one pass over
        the visible records (a zoned time bucket first reads the window's bounds)."""
        if not scope.connection_ids:
            return AggregateResult(record_count=0, value=0 if spec.metric == "count" else None)
        filters, filter_params = scope_filters(scope, "r")
        source = (
            "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
            f"WHERE r.connection_id IN ({marks(len(scope.connection_ids))}) AND r.stream = ? "
            f"AND r.deleted = 0 AND {visible('r', 'k')}" + "".join(f" AND {f}" for f in filters)
        )
        params: list[Any] = [*scope.connection_ids, scope.stream.name, *filter_params]
        if spec.group_by is not None:
            rows = f"SELECT json_extract({DATA}, ?) AS g {source}"
            return self._grouped(scope, rows, [f"$.{spec.group_by}", *params], spec.limit,
                                 by_count=True, field=spec.group_by)
        if spec.group_by_time is not None:
            rows, rows_params = self._time_buckets(scope, spec.group_by_time, source, params)
            return self._grouped(scope, rows, rows_params, spec.limit, by_count=False, field=None)
        return self._metric(spec, source, params)

    def _metric(self, spec: AggregateSpec, source: str, params: list[Any]) -> AggregateResult:
        value_sql = {
            "count": "NULL",
            "sum": f"sum(json_extract({DATA}, ?))",
            "min": f"min(json_extract({DATA}, ?))",
            "max": f"max(json_extract({DATA}, ?))",
            "count_distinct": f"count(DISTINCT json_extract({DATA}, ?))",
        }[spec.metric]
        value_params = [] if spec.field is None else [f"$.{spec.field}"]
        sql = f"SELECT count(*), {value_sql} {source}"
        try:
            count, value = self._db().execute(sql, [*value_params, *params]).fetchone()
        except sqlite3.OperationalError as exc:
            if "overflow" not in str(exc):
                raise
            # integers whose sum leaves 64 bits: the floating-point total is the best answer
            sql = sql.replace("sum(", "total(", 1)
            count, value = self._db().execute(sql, [*value_params, *params]).fetchone()
        return AggregateResult(record_count=count, value=count if spec.metric == "count" else value)

    def _grouped(
        self,
        scope: ReadScope,
        rows_sql: str,
        params: list[Any],
        limit: int,
        *,
        by_count: bool,
        field: str | None,
    ) -> AggregateResult:
        """Count the rows of `rows_sql` by their `g` column; the window sums give the total
        and so `other_count` in the same statement."""
        order = "n DESC, g IS NULL, g" if by_count else "g IS NULL, g"
        rows = self._db().execute(
            f"SELECT g, n, sum(n) OVER () FROM (SELECT g, count(*) AS n FROM ({rows_sql}) "
            f"GROUP BY g) ORDER BY {order} LIMIT ?",
            [*params, limit],
        ).fetchall()
        if not rows:
            return AggregateResult(record_count=0)
        boolean = field is not None and value_types(
            scope.stream.schema["properties"].get(field)
        ) == {"boolean"}
        groups = tuple(
            AggregateGroup(key=_boolean(key) if boolean else key, count=n) for key, n, _ in rows
        )
        total = rows[0][2]
        return AggregateResult(
            record_count=total, groups=groups, other_count=total - sum(g.count for g in groups)
        )

    def _time_buckets(
        self, scope: ReadScope, grouping: TimeGrouping, source: str, params: list[Any]
    ) -> tuple[str, list[Any]]:
        """SQL yielding each visible record's bucket as `g`, and its parameters. A date-time
        field that is the stream's consent time reads the normalized `consent_time` column,
        with no JSON to parse."""
        if grouping.date_only:
            bucket = _bucket(grouping.granularity, "v", "")
            return (
                f"SELECT {bucket} AS g FROM (SELECT json_extract({DATA}, ?) AS v {source})",
                [f"$.{grouping.field}", *params],
            )
        if grouping.field == scope.stream.consent_time_field:
            moment, moment_params = "r.consent_time", []
        else:
            moment = f"strftime('{MOMENT}', json_extract({DATA}, ?))"
            moment_params = [f"$.{grouping.field}"]
        # every moment is UTC text of one shape, so offset ranges compare as text; LIMIT -1
        # keeps SQLite from flattening the subquery, so each value is parsed once
        moments = f"SELECT {moment} AS t {source} LIMIT -1"
        modifier = ""
        if grouping.time_zone != "UTC":
            low, high = self._db().execute(
                f"SELECT min(t), max(t) FROM ({moments})", [*moment_params, *params]
            ).fetchone()
            if low is not None:
                ranges = offset_ranges(
                    ZoneInfo(grouping.time_zone), _epoch(low), _epoch(high)
                )
                shift = " ".join(
                    f"WHEN t < '{_moment(until)}' THEN '{offset:+d} seconds'"
                    for until, offset in ranges
                    if until is not None
                )
                last = f"'{ranges[-1][1]:+d} seconds'"
                modifier = f", CASE {shift} ELSE {last} END" if shift else f", {last}"
        bucket = _bucket(grouping.granularity, "t", modifier)
        return f"SELECT {bucket} AS g FROM ({moments})", [*moment_params, *params]


def _epoch(moment: str) -> int:
    return int(parse_iso(moment).timestamp())


def _moment(epoch: int) -> str:
    """Epoch seconds as the UTC text every moment is compared in."""
    return iso(datetime.fromtimestamp(min(max(epoch, EARLIEST), LATEST), UTC))


def _boolean(key: GroupKey) -> GroupKey:
    """JSON booleans come out of SQLite as 1 and 0."""
    return None if key is None else bool(key)
