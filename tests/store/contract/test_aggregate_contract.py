"""Aggregation through the Store protocol, on every backend: metrics keep their JSON types,
groups order by count then key (a missing value last), time buckets follow a zone's
daylight-saving change, a `date` field is never shifted, and staged records never count."""

from __future__ import annotations

from ownstream.model import ReadScope, RecordWrite, StreamDefinition
from ownstream.store.base import (
    AggregateGroup,
    AggregateResult,
    AggregateSpec,
    TimeGrouping,
)

from .conftest import Harness

EVENTS = StreamDefinition(
    name="events",
    version=1,
    semantics="mutable_state",
    primary_key=("id",),
    schema={
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "tag": {"type": "string"},
            "score": {"type": "integer"},
            "ratio": {"type": "number"},
            "flag": {"type": "boolean"},
            "when": {"type": "string", "format": "date-time"},
            "seen": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
        },
    },
    cursor_field="when",
    consent_time_field="when",
)


def event(key: str, **data: object) -> RecordWrite:
    return RecordWrite("events", key, {"id": key, **data}, "2024-05-01T00:00:00.000Z")


def collected(harness: Harness) -> ReadScope:
    a, b = harness.connection("a"), harness.connection("b")
    first = harness.stage(a)
    harness.write(
        first,
        [
            # 01:30 EST, the night New York moves its clocks forward
            event("n1", tag="x", score=3, ratio=1.5, flag=True, when="2024-03-10T06:30:00Z",
                  seen="2024-03-10T06:30:00Z", day="2024-03-13"),
            # 04:30 EDT, written with its own offset
            event("n2", tag="x", score=4, ratio=2, flag=False, when="2024-03-10T03:30:00-05:00",
                  day="2024-03-18"),
            # 23:59 EDT on the 10th, already the 11th in UTC
            event("n3", tag="Y", flag=True, when="2024-03-11T03:59:00Z", day="2024-03-17"),
        ],
        EVENTS,
    )
    harness.publish(first)
    second = harness.stage(b)
    harness.write(second, [event("n4", score=10, ratio=0.25)], EVENTS)
    harness.publish(second)
    staged = harness.stage(a)  # never published: counts nowhere
    harness.write(staged, [event("n5", tag="x", score=100, flag=True)], EVENTS)
    return ReadScope(EVENTS, (a, b), EVENTS.fields)


def test_metrics_keep_their_json_types(harness: Harness) -> None:
    scope = collected(harness)
    aggregate = harness.store.aggregate
    assert aggregate(scope, AggregateSpec("count")) == AggregateResult(4, 4)
    total = aggregate(scope, AggregateSpec("sum", "score")).value
    assert total == 17 and isinstance(total, int)
    fractional = aggregate(scope, AggregateSpec("sum", "ratio")).value
    assert fractional == 3.75 and isinstance(fractional, float)
    assert aggregate(scope, AggregateSpec("min", "score")).value == 3
    assert aggregate(scope, AggregateSpec("max", "score")).value == 10
    # strings compare byte by byte, as the pages order them
    assert aggregate(scope, AggregateSpec("min", "tag")).value == "Y"
    assert aggregate(scope, AggregateSpec("max", "tag")).value == "x"
    assert aggregate(scope, AggregateSpec("min", "when")).value == "2024-03-10T03:30:00-05:00"
    assert aggregate(scope, AggregateSpec("count_distinct", "tag")) == AggregateResult(4, 2)
    nobody = ReadScope(EVENTS, (harness.connection("c"),), EVENTS.fields)
    assert aggregate(nobody, AggregateSpec("sum", "score")) == AggregateResult(0, None)
    assert aggregate(nobody, AggregateSpec("count")) == AggregateResult(0, 0)


def test_groups_order_by_count_then_key_with_a_missing_value_last(harness: Harness) -> None:
    scope = collected(harness)
    by_tag = harness.store.aggregate(scope, AggregateSpec("count", group_by="tag", limit=2))
    assert by_tag == AggregateResult(
        4, groups=(AggregateGroup("x", 2), AggregateGroup("Y", 1)), other_count=1
    )
    everything = harness.store.aggregate(scope, AggregateSpec("count", group_by="tag"))
    assert everything.groups[-1] == AggregateGroup(None, 1) and everything.other_count == 0
    by_flag = harness.store.aggregate(scope, AggregateSpec("count", group_by="flag"))
    assert [(g.key, g.count) for g in by_flag.groups] == [(True, 2), (False, 1), (None, 1)]
    assert all(isinstance(g.key, bool) for g in by_flag.groups[:2])
    by_score = harness.store.aggregate(scope, AggregateSpec("count", group_by="score"))
    assert [g.key for g in by_score.groups] == [3, 4, 10, None]


def test_time_buckets_follow_the_zone_and_leave_dates_alone(harness: Harness) -> None:
    scope = collected(harness)

    def buckets(grouping: TimeGrouping) -> list[tuple[object, int]]:
        found = harness.store.aggregate(scope, AggregateSpec("count", group_by_time=grouping))
        assert found.record_count == 4
        return [(g.key, g.count) for g in found.groups]

    assert buckets(TimeGrouping("when", "day", "America/New_York")) == [
        ("2024-03-10", 3), (None, 1)
    ]
    assert buckets(TimeGrouping("when", "hour")) == [
        ("2024-03-10T06:00", 1), ("2024-03-10T08:00", 1), ("2024-03-11T03:00", 1), (None, 1)
    ]
    assert buckets(TimeGrouping("seen", "minute", "Asia/Kathmandu")) == [
        ("2024-03-10T12:15", 1), (None, 3)
    ]
    assert buckets(TimeGrouping("day", "week", "Asia/Tokyo", date_only=True)) == [
        ("2024-03-11", 2), ("2024-03-18", 1), (None, 1)
    ]
    assert buckets(TimeGrouping("when", "quarter")) == [("2024-01-01", 3), (None, 1)]
