"""Aggregation and field-window latency, each against the plain SQL that computes the same
answer over the same records (without grant scoping or the published-version condition).

Aggregations run over every connection of the workload (the full size: 1M records in a full
run): a count by day of `sent_at` in UTC and in an IANA zone, a count grouped by a field, a
sum. Field windows read a slice of one record's `body`, by offset and around a match. Where the
API and the SQL answer the same question their answers are compared first, so a fast wrong
answer fails the run instead of being timed.

The floors read every live row of the connections (`deleted = 0`): that is the visible set only
while each row is its record's published head (no unpublished stage, no superseded version
still parked), which `bench_reads` checks first. Each aggregation floor is also timed with the
published-version condition (schema 2's `stage <= published_stage AND (parked = 0 OR parked >
published_stage)`, through the connections join the store uses): what that condition costs a
scan of every record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

from bench.workload import STREAM, UNSELECTIVE

AGGREGATE_REPEATS = 5  # a full-size aggregation scans every record: a few samples suffice
WINDOW_CHARS = 200
ZONE = "Europe/Paris"
ZONE_BASELINE_OFFSET = "+1 hours"  # the SQL floor shifts by one fixed offset, not by the zone
DATA = "record_json(data)"


class Client(Protocol):
    """`bench.run.Api`: a decoded GET, and a timed GET whose body is not decoded."""

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def fetch(self, path: str, params: dict[str, Any] | None = None, status: int = 200) -> None: ...


class Summary(Protocol):
    def summary(self) -> dict[str, float]: ...


class Measure(Protocol):
    """`bench.run.measure`."""

    def __call__(
        self, action: Callable[[int], Any], repeats: int = ..., warmup: int = ...
    ) -> Summary: ...


# schema 2: a reader sees a row when its stage is published and no published stage parked it
VISIBLE = "stage <= k.published_stage AND (parked = 0 OR parked > k.published_stage)"


def _scoped(connection_ids: list[str], *, visible: bool = False) -> tuple[str, list[Any]]:
    """The rows a floor reads: every live row of the connections' stream; with `visible`, only
    those the published-version condition lets a reader see (the store's connections join)."""
    marks = ",".join("?" * len(connection_ids))
    where = f"connection_id IN ({marks}) AND stream = ? AND deleted = 0"
    if visible:
        return (
            f"FROM records JOIN connections k USING (connection_id) WHERE {where} AND {VISIBLE}",
            [*connection_ids, STREAM],
        )
    return f"FROM records WHERE {where}", [*connection_ids, STREAM]


def unpublished_rows(db: sqlite3.Connection, connection_ids: list[str]) -> int:
    """Live rows of the connections a reader would not see: while there are any, the floors
    (which skip the published-version condition) would count records the API does not."""
    source, args = _scoped(connection_ids)
    visible, _ = _scoped(connection_ids, visible=True)
    found: int = db.execute(
        f"SELECT (SELECT count(*) {source}) - (SELECT count(*) {visible})", [*args, *args]
    ).fetchone()[0]
    return found


def aggregate_cases(
    connection_ids: list[str], *, visible: bool = False
) -> list[tuple[str, dict[str, Any], str, bool]]:
    """(name, API parameters, baseline SQL, whether both give the same answer)."""
    source, _ = _scoped(connection_ids, visible=visible)
    by_day = "count(*) AS n {source} GROUP BY g ORDER BY g IS NULL, g LIMIT 100"
    return [
        (
            "count by day (UTC)",
            {"metric": "count", "group_by_time": "sent_at", "granularity": "day", "limit": 100},
            f"SELECT strftime('%Y-%m-%d', consent_time) AS g, {by_day.format(source=source)}",
            True,
        ),
        (
            f"count by day ({ZONE})",
            {
                "metric": "count",
                "group_by_time": "sent_at",
                "granularity": "day",
                "limit": 100,
                "time_zone": ZONE,
            },
            f"SELECT strftime('%Y-%m-%d', consent_time, '{ZONE_BASELINE_OFFSET}') AS g, "
            f"{by_day.format(source=source)}",
            False,
        ),
        (
            "count group_by from",
            {"metric": "count", "group_by": "from"},
            f"SELECT json_extract({DATA}, '$.from') AS g, count(*) AS n {source} "
            "GROUP BY g ORDER BY n DESC, g IS NULL, g LIMIT 10",
            True,
        ),
        (
            "sum size_bytes",
            {"metric": "sum", "field": "size_bytes"},
            f"SELECT sum(json_extract({DATA}, '$.size_bytes')) {source}",
            True,
        ),
    ]


def _groups(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    if "groups" in body:
        return [(g["key"], g["count"]) for g in body["groups"]]
    return [(body["value"],)]


def _requesting(api: Client, path: str, params: dict[str, Any]) -> Callable[[int], None]:
    return lambda _i: api.fetch(path, params)


def _querying(db: sqlite3.Connection, sql: str, args: list[Any]) -> Callable[[int], Any]:
    return lambda _i: db.execute(sql, args).fetchall()


def _windowing(
    api: Client, base: str, keys: list[str], params: dict[str, Any]
) -> Callable[[int], None]:
    return lambda i: api.fetch(f"{base}{keys[i % len(keys)]}/field-window", params)


def _slicing(
    db: sqlite3.Connection, sql: str, args: Callable[[int], tuple[Any, ...]]
) -> Callable[[int], Any]:
    return lambda i: db.execute(sql, args(i)).fetchone()


def bench_aggregates(
    api: Client,
    db: sqlite3.Connection,
    connection_ids: list[str],
    measure: Measure,
    repeats: int,
) -> dict[str, Any]:
    path = f"/v1/streams/{STREAM}/aggregate"
    _, args = _scoped(connection_ids)
    runs = min(repeats, AGGREGATE_REPEATS)
    found: dict[str, Any] = {}
    cases = zip(
        aggregate_cases(connection_ids),
        aggregate_cases(connection_ids, visible=True),
        strict=True,
    )
    for (name, params, sql, comparable), (_, _, visible_sql, _) in cases:
        body = api.get(path, params)
        rows = [tuple(row) for row in db.execute(sql, args).fetchall()]
        if comparable and _groups(body) != rows:
            raise RuntimeError(f"{name}: the API answer differs from the SQL answer")
        found[name] = {
            "api": measure(_requesting(api, path, params), runs, 1).summary(),
            "sql": measure(_querying(db, sql, args), runs, 1).summary(),
            "visible": measure(_querying(db, visible_sql, args), runs, 1).summary(),
            "records": body["filtered_record_count"],
            "compared": comparable,
        }
    return found


def bench_field_windows(
    api: Client, db: sqlite3.Connection, connection_id: str, measure: Measure, repeats: int
) -> dict[str, Any]:
    live = "WHERE connection_id = ? AND stream = ? AND deleted = 0"
    (count,) = db.execute(
        f"SELECT count(*) FROM records {live}", (connection_id, STREAM)
    ).fetchone()
    spread = max(1, count // (repeats + 10))  # keys from the whole connection, whatever its size
    keys = [
        row[0]
        for row in db.execute(
            f"SELECT record_key FROM records {live} AND instr({DATA}, ?) > 0 "
            "AND record_id % ? = 0 LIMIT ?",
            (connection_id, STREAM, UNSELECTIVE, spread, repeats + 10),
        )
    ]
    if not keys:
        raise RuntimeError("no record to read a field window of")
    base = f"/v1/streams/{STREAM}/records/"
    where = "WHERE connection_id = ? AND stream = ? AND record_key = ? AND deleted = 0"
    cases = {
        "offset window": (
            {"field": "body", "offset_chars": 100, "limit_chars": WINDOW_CHARS},
            f"SELECT substr(json_extract({DATA}, '$.body'), 101, {WINDOW_CHARS}) FROM records "
            + where,
        ),
        "match window": (
            {"field": "body", "q": UNSELECTIVE, "before_chars": 40, "after_chars": 40},
            "SELECT substr(b, max(1, instr(lower(b), ?) - 40), ?) FROM "
            f"(SELECT json_extract({DATA}, '$.body') AS b FROM records {where})",
        ),
    }
    found: dict[str, Any] = {}
    for name, (params, sql) in cases.items():
        narrowed = {**params, "connection_id": connection_id}
        extra: tuple[Any, ...] = (UNSELECTIVE, 80 + len(UNSELECTIVE)) if "q" in params else ()

        def args(i: int, extra: tuple[Any, ...] = extra) -> tuple[Any, ...]:
            return (*extra, connection_id, STREAM, keys[i % len(keys)])

        window = api.get(f"{base}{keys[0]}/field-window", narrowed)["window"]["text"]
        if window != db.execute(sql, args(0)).fetchone()[0]:
            raise RuntimeError(f"{name}: the API window differs from the SQL substring")
        found[name] = {
            "api": measure(_windowing(api, base, keys, narrowed), repeats).summary(),
            "sql": measure(_slicing(db, sql, args), repeats).summary(),
        }
    return found


def bench_reads(
    api: Client,
    db: sqlite3.Connection,
    connection_ids: list[str],
    measure: Measure,
    repeats: int,
) -> dict[str, Any]:
    """Section 5 of `make bench`: aggregations over every connection, field windows of the
    first. The floors skip the published-version condition, so every live row must be a
    published head when this runs (as it is between the ingests and the update pass)."""
    hidden = unpublished_rows(db, connection_ids)
    if hidden:
        raise RuntimeError(
            f"{hidden:,} live rows are not visible (unpublished or superseded versions): the "
            "read floors, which skip the published-version condition, would not match the API"
        )
    return {
        "aggregate": bench_aggregates(api, db, connection_ids, measure, repeats),
        "field_window": bench_field_windows(api, db, connection_ids[0], measure, repeats),
    }
