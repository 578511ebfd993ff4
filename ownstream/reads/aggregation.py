"""The PDPP aggregation profile: strict request validation, then one store aggregation.

Only what the shared definition declares under `aggregations` is computed, only over fields the
grant includes, and only over the records the bearer could page through (the store applies
the same scope as a record list). Grouping counts by one dimension; the other metrics are
ungrouped (as in the reference implementation).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, cast
from zoneinfo import available_timezones

from ownstream.errors import FieldNotGranted, InvalidRequest, NotFound, UnknownField
from ownstream.model import ReadScope, StreamDefinition
from ownstream.registry.definitions import time_format
from ownstream.store.base import AggregateMetric, AggregateSpec, Granularity, Store, TimeGrouping

METRICS = ("count", "sum", "min", "max", "count_distinct")
GRANULARITIES = ("minute", "hour", "day", "week", "month", "quarter", "year")
DEFAULT_GROUPS = 10
MAX_GROUPS = 100
PARAMS = ("metric", "field", "group_by", "group_by_time", "granularity", "time_zone", "limit")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones() | {"UTC"})


def _field(scope: ReadScope, kind: str, name: str, param: str) -> str:
    """A field an aggregation may use: in the schema, in the grant, declared for `kind`."""
    definition = scope.stream
    if name not in definition.fields:
        raise UnknownField(f"{definition.name} has no field {name!r}", param=param)
    if name not in scope.fields:
        raise FieldNotGranted(f"the grant does not include field {name!r}", param=param)
    declared = definition.aggregations
    if declared is None or name not in declared.fields_for(kind):
        raise InvalidRequest(
            f"{kind} is not declared for field {name!r} of {definition.name}", param=param
        )
    return name


def _limit(raw: str | None) -> int:
    """Strict, unlike record lists: a bad group limit is an error, never clamped."""
    if raw is None:
        return DEFAULT_GROUPS
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_GROUPS:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_GROUPS}", param="limit")
    return int(raw)


def parse_aggregate(scope: ReadScope, params: Mapping[str, str | None]) -> AggregateSpec:
    """Validate an aggregation request against the definition and the grant (PDPP
    aggregation profile §3 to §5); every rejection is `invalid_request` unless a field is
    unknown (`unknown_field`) or withheld (`field_not_granted`)."""
    definition: StreamDefinition = scope.stream
    if definition.aggregations is None:
        raise NotFound(f"stream {definition.name!r} declares no aggregations", param="stream")
    metric, field = params.get("metric"), params.get("field")
    group_by, group_by_time = params.get("group_by"), params.get("group_by_time")
    granularity, time_zone = params.get("granularity"), params.get("time_zone")
    if metric is None:
        raise InvalidRequest("metric is required", param="metric")
    if metric not in METRICS:
        raise InvalidRequest(f"metric must be one of {', '.join(METRICS)}", param="metric")
    if group_by is not None and group_by_time is not None:
        raise InvalidRequest("group_by and group_by_time cannot be combined", param="group_by")
    grouped = group_by is not None or group_by_time is not None
    if granularity is not None and group_by_time is None:
        raise InvalidRequest("granularity needs group_by_time", param="granularity")
    if time_zone is not None and group_by_time is None:
        raise InvalidRequest("time_zone needs group_by_time", param="time_zone")
    if params.get("limit") is not None and not grouped:
        raise InvalidRequest("limit applies only to grouped aggregations", param="limit")
    if grouped and metric != "count":
        raise InvalidRequest("grouping is only valid with metric=count", param="metric")
    if metric == "count":
        if field is not None:
            raise InvalidRequest("count takes no field", param="field")
        if not definition.aggregations.count:
            raise InvalidRequest(f"count is not declared for {definition.name}", param="metric")
    elif field is None:
        raise InvalidRequest(f"field is required for {metric}", param="field")
    else:
        field = _field(scope, metric, field, "field")
    timing = None
    if group_by_time is not None:
        _field(scope, "group_by_time", group_by_time, "group_by_time")
        if granularity is None:
            raise InvalidRequest("group_by_time needs granularity", param="granularity")
        if granularity not in GRANULARITIES:
            raise InvalidRequest(
                f"granularity must be one of {', '.join(GRANULARITIES)}", param="granularity"
            )
        zone = time_zone or "UTC"
        if zone not in _zones():
            raise InvalidRequest(f"Unknown time_zone: {zone!r}", param="time_zone")
        prop = definition.schema["properties"][group_by_time]
        timing = TimeGrouping(
            field=group_by_time,
            granularity=cast(Granularity, granularity),
            time_zone=zone,
            date_only=time_format(prop) == "date",
        )
    if group_by is not None:
        _field(scope, "group_by", group_by, "group_by")
    return AggregateSpec(
        metric=cast(AggregateMetric, metric),
        field=field,
        group_by=group_by,
        group_by_time=timing,
        limit=_limit(params.get("limit")),
    )


def aggregate(store: Store, scope: ReadScope, params: Mapping[str, str | None]) -> dict[str, Any]:
    """`GET /v1/streams/{stream}/aggregate` as a PDPP `aggregation` object."""
    spec = parse_aggregate(scope, params)
    result = store.aggregate(scope, spec)
    timing = spec.group_by_time
    body: dict[str, Any] = {
        "object": "aggregation",
        "stream": scope.stream.name,
        "metric": spec.metric,
        "field": spec.field,
        "group_by": spec.group_by,
        "group_by_time": timing.field if timing else None,
        "granularity": timing.granularity if timing else None,
        "time_zone": timing.time_zone if timing else None,
        "approximate": False,
        "filtered_record_count": result.record_count,
    }
    if spec.group_by is None and timing is None:
        body["value"] = result.value
    else:
        body["limit"] = spec.limit
        body["groups"] = [{"key": g.key, "count": g.count} for g in result.groups]
        body["other_count"] = result.other_count
    return body
