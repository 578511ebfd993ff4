"""The PDPP read contract's wire shapes, as JSON Schemas the tests validate responses against.

Written from the published contract (the reference contract's public read manifests); where
ownstream deliberately differs, the schema here says so next to the difference:
- `query.search.lexical_fields` is allowed, as the lexical retrieval profile requires, though
  the contract's `query` object does not list it;
- `available_connections[].display_name` is optional: ownstream never shows a placeholder label;
- an `expand_capabilities` entry says whether this bearer may use it (`usable`, with `reason`
  `owner_only` for a client: expansion is the owner's).
Some shapes are tighter than the contract, where ownstream always sends what it leaves optional:
an `aggregation` has every one of its echo keys, and `limit`, `groups` and `other_count`
exactly when it is grouped (`value` exactly when it is not).
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

STRING: dict[str, Any] = {"type": "string"}
NON_EMPTY: dict[str, Any] = {"type": "string", "minLength": 1}
INTEGER: dict[str, Any] = {"type": "integer"}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}


def closed(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": properties}


def open_(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


FLAG = closed(["declared", "usable"], declared={"type": "boolean"}, usable={"type": "boolean"},
              reason=STRING)
RANGE_FLAG = closed(["declared", "usable"], declared={"type": "boolean"},
                    usable={"type": "boolean"}, reason=STRING,
                    operators={"type": "array", "items": NON_EMPTY})
AGGREGATION_KINDS = ["sum", "min", "max", "group_by", "group_by_time", "count_distinct"]
FIELD_CAPABILITY = closed(
    ["schema", "granted", "lexical_search", "semantic_search", "aggregation"],
    schema={"type": "object"},
    granted={"type": "boolean"},
    exact_filter=FLAG,
    range_filter=RANGE_FLAG,
    lexical_search=FLAG,
    semantic_search=FLAG,
    aggregation=closed(AGGREGATION_KINDS, **dict.fromkeys(AGGREGATION_KINDS, FLAG)),
    role=NON_EMPTY,
    type=NON_EMPTY,
)
FRESHNESS = closed(
    ["status"],
    status={"enum": ["current", "stale", "unknown"]},
    captured_at={"type": "string", "format": "date-time"},
    last_attempted_at={"type": "string", "format": "date-time"},
)
EXPAND_CAPABILITY = closed(
    ["name", "stream", "cardinality", "foreign_key", "usable"],
    name=NON_EMPTY,
    stream=NON_EMPTY,
    cardinality={"enum": ["has_one", "has_many"]},
    foreign_key=NON_EMPTY,
    default_limit=COUNT,
    max_limit=COUNT,
    usable={"type": "boolean"},
    reason=STRING,
)
GRANTED_CONNECTION = closed(["connection_id"], connection_id=NON_EMPTY, display_name=NON_EMPTY)
NAMES = {"type": "array", "items": STRING}
STREAM_METADATA = open_(
    ["object", "name", "field_capabilities", "expand_capabilities"],
    object={"const": "stream_metadata"},
    name=STRING,
    schema={"type": "object"},
    primary_key=NAMES,
    cursor_field=NULLABLE_STRING,
    consent_time_field=NULLABLE_STRING,
    field_capabilities={
        "type": "object",
        "additionalProperties": {"oneOf": [NON_EMPTY, FIELD_CAPABILITY]},
    },
    expand_capabilities={"type": "array", "items": EXPAND_CAPABILITY},
    freshness=FRESHNESS,
    granted_connections={"type": "array", "items": GRANTED_CONNECTION},
    query=closed(
        [],
        aggregations=closed(
            [],
            count={"const": True},
            **dict.fromkeys(AGGREGATION_KINDS, NAMES),
        ),
        expand={"type": "array"},
        range_filters={"type": "object"},
        search=closed(["lexical_fields"], lexical_fields=NAMES),
    ),
    relationships={"type": "array"},
    selection={"type": "object"},
    views={"type": "array"},
)
SCHEMA = closed(
    ["object", "bearer", "connectors"],
    object={"const": "schema"},
    bearer=closed(
        ["token_kind", "scope"],
        token_kind={"enum": ["owner", "client"]},
        scope={"enum": ["owner", "grant"]},
        client_id=STRING,
        grant_id=STRING,
    ),
    connectors={
        "type": "array",
        "items": closed(
            ["object", "source", "stream_count", "streams"],
            object={"const": "connector"},
            connector_id=STRING,
            source={"type": "object"},
            stream_count=COUNT,
            streams={"type": "array", "items": STREAM_METADATA},
        ),
    },
    detail={"const": "compact"},
)
WARNING = closed(
    ["code", "message"],
    code={"enum": ["count_downgraded", "source_skipped_not_applicable", "deprecated_alias_used",
                   "limit_clamped", "partial_results", "compatibility_fallback"]},
    message=STRING,
    param=STRING,
    field=STRING,
    connection_id=NON_EMPTY,
    detail={"type": "object"},
)
META = closed(
    [],
    count=closed(["kind"], kind={"enum": ["none", "estimated", "exact"]}, value=COUNT),
    warnings={"type": "array", "items": WARNING},
    window={"type": "object"},
)
ATTRIBUTION = {
    "connection_id": NON_EMPTY,
    "connector_instance_id": NON_EMPTY,
    "display_name": NON_EMPTY,
}
RECORD = open_(
    ["object", "id", "stream"],
    object={"const": "record"},
    id=STRING,
    stream=STRING,
    data={"type": "object"},
    deleted={"type": "boolean"},
    deleted_at=STRING,
    emitted_at=STRING,
    **ATTRIBUTION,
)
RECORDS = open_(
    ["object", "data", "has_more"],
    object={"const": "list"},
    data={"type": "array", "items": RECORD},
    has_more={"type": "boolean"},
    next_cursor=STRING,
    next_changes_since=STRING,
    url=STRING,
    meta=META,
    freshness=FRESHNESS,
)
STREAMS = open_(
    ["object", "data"],
    object={"const": "list"},
    data={
        "type": "array",
        "items": open_(
            ["object", "name"],
            object={"const": "stream"},
            name=STRING,
            record_count=INTEGER,
            last_updated=NULLABLE_STRING,
            freshness=FRESHNESS,
            **ATTRIBUTION,
        ),
    },
)
SEARCH = open_(
    ["object", "data", "has_more", "meta"],
    object={"const": "list"},
    data={
        "type": "array",
        "items": open_(
            ["object", "stream", "record_key", "connector_id", "emitted_at", "matched_fields"],
            object={"const": "search_result"},
            stream=NON_EMPTY,
            record_key=NON_EMPTY,
            connector_id=NON_EMPTY,
            emitted_at=NON_EMPTY,
            matched_fields={"type": "array", "items": NON_EMPTY, "minItems": 1},
            snippet=closed(["field", "text"], field=NON_EMPTY, text=STRING),
            record_url=STRING,
            **ATTRIBUTION,
        ),
    },
    has_more={"type": "boolean"},
    next_cursor=STRING,
    url=STRING,
    # the lexical profile: count, its accuracy and recall facts on every page
    meta=open_(
        ["count", "count_accuracy", "recall"],
        count={"type": ["integer", "null"], "minimum": 0},
        count_accuracy={"enum": ["exact", "lower_bound", "estimated", "not_counted"]},
        recall=open_(
            ["complete", "ranking_scope", "truncated"],
            complete={"type": "boolean"},
            ranking_scope={"enum": ["all_matches", "candidate_window", "unknown"]},
            truncated={"type": "boolean"},
        ),
        warnings={"type": "array", "items": WARNING},
    ),
)
GRANULARITIES = ["minute", "hour", "day", "week", "month", "quarter", "year"]
AGGREGATION_BASE = [
    "object", "stream", "metric", "field", "group_by", "group_by_time", "granularity",
    "time_zone", "approximate", "filtered_record_count",
]
GROUPED_KEYS = ["limit", "groups", "other_count"]
AGGREGATION = {
    **closed(
        AGGREGATION_BASE,
        object={"const": "aggregation"},
        stream=STRING,
        metric={"enum": ["count", "sum", "min", "max", "count_distinct"]},
        field=NULLABLE_STRING,
        group_by=NULLABLE_STRING,
        group_by_time=NULLABLE_STRING,
        granularity={"enum": [*GRANULARITIES, None]},
        time_zone=NULLABLE_STRING,
        approximate={"type": "boolean"},
        filtered_record_count=COUNT,
        limit={"type": "integer", "minimum": 1, "maximum": 100},
        groups={
            "type": "array",
            "items": closed(
                ["key", "count"],
                key={"type": ["string", "number", "integer", "boolean", "null"]},
                count=COUNT,
            ),
        },
        other_count=COUNT,
        value={"type": ["number", "integer", "string", "null"]},
    ),
    # grouped (by a field or by time): limit, groups and other_count, and no value;
    # otherwise a value and none of the three
    "if": {"properties": {"group_by": {"type": "null"}, "group_by_time": {"type": "null"}}},
    "then": {
        "required": ["value"],
        "not": {"anyOf": [{"required": [key]} for key in GROUPED_KEYS]},
    },
    "else": {"required": GROUPED_KEYS, "not": {"required": ["value"]}},
}
WINDOW = closed(
    ["text", "total_chars", "start_chars", "end_chars", "limit_chars", "complete", "has_more",
     "match_start_chars", "match_end_chars", "next_offset_chars", "previous_offset_chars"],
    text=STRING,
    total_chars=COUNT,
    start_chars=COUNT,
    end_chars=COUNT,
    limit_chars={"type": "integer", "minimum": 1},
    complete={"type": "boolean"},
    has_more={"type": "boolean"},
    match_start_chars={"type": ["integer", "null"]},
    match_end_chars={"type": ["integer", "null"]},
    next_offset_chars={"type": ["integer", "null"]},
    previous_offset_chars={"type": ["integer", "null"]},
)
FIELD_WINDOW = open_(
    ["object", "stream", "record_id", "field", "window"],
    object={"const": "field_window"},
    stream=STRING,
    record_id=STRING,
    field=closed(["path", "type"], path=NON_EMPTY, type=NON_EMPTY),
    url=STRING,
    window=WINDOW,
    meta=META,
    **ATTRIBUTION,
)
ERROR = closed(
    ["error"],
    error=closed(
        ["type", "code", "message", "request_id"],
        type=STRING,
        code=STRING,
        message=STRING,
        param=STRING,
        request_id=STRING,
        next_step=STRING,
        resource_metadata=STRING,
        retry_with=STRING,
        available_connections={"type": "array"},
    ),
)
AMBIGUOUS = closed(
    ["error"],
    error=closed(
        ["type", "code", "message", "request_id", "available_connections", "retry_with"],
        type=STRING,
        code={"const": "ambiguous_connection"},
        message=STRING,
        param=STRING,
        request_id=STRING,
        available_connections={
            "type": "array",
            "minItems": 2,
            "items": closed(["connection_id"], connection_id=NON_EMPTY, display_name=NON_EMPTY),
        },
        retry_with=closed(["field", "guidance"], field={"const": "connection_id"},
                          guidance=STRING),
    ),
)

SHAPES = {
    "schema": SCHEMA,
    "stream_metadata": STREAM_METADATA,
    "streams": STREAMS,
    "records": RECORDS,
    "record": RECORD,
    "search": SEARCH,
    "aggregation": AGGREGATION,
    "field_window": FIELD_WINDOW,
    "error": ERROR,
    "ambiguous": AMBIGUOUS,
}
VALIDATORS = {
    name: jsonschema_rs.Draft202012Validator(shape, validate_formats=True)
    for name, shape in SHAPES.items()
}


def assert_shape(kind: str, body: Any) -> None:
    """The body has the contract's shape for `kind`; the message names every violation."""
    problems = [
        f"{'/'.join(map(str, e.instance_path)) or 'body'}: {e.message}"
        for e in VALIDATORS[kind].iter_errors(body)
    ]
    assert not problems, f"{kind} breaks the contract: {problems[:5]}"
