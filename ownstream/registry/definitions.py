"""Stream definitions: parsing, validation, and the compatibility rule for shared definitions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jsonschema_rs

from ownstream.errors import IncompatibleDefinition, InvalidDefinition
from ownstream.model import (
    AGGREGATION_KINDS,
    RANGE_OPS,
    Aggregations,
    RangeOp,
    Relationship,
    StreamDefinition,
    View,
)

STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_SEARCHABLE_FIELDS = 8  # the search index has this many field slots
AGGREGABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # safe in a JSON path as is
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})
NUMERIC_TYPES = frozenset({"integer", "number"})
TYPE_KEYWORD = "x_pdpp_type"  # a field's PDPP type where JSON Schema has none: `blob_ref`
BLOB_REF = "blob_ref"
RELATION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_EXPAND_LIMIT = 100

Fail = Callable[[str, str], InvalidDefinition]


def parse_definition(raw: Any, *, shared: bool = True) -> StreamDefinition:
    """Validate a definition document and build the model; errors name the stream."""
    if not isinstance(raw, dict):
        raise InvalidDefinition("a stream definition must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not STREAM_NAME.match(name):
        raise InvalidDefinition(
            f"stream name {name!r} must match {STREAM_NAME.pattern}", param="name"
        )

    def fail(message: str, param: str) -> InvalidDefinition:
        return InvalidDefinition(f"stream {name!r}: {message}", param=param, stream=name)

    semantics = raw.get("semantics")
    if semantics not in ("append_only", "mutable_state"):
        raise fail("semantics must be 'append_only' or 'mutable_state'", "semantics")
    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail("version must be a positive integer", "version")
    schema = raw.get("schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise fail("schema must be a JSON Schema object with type 'object'", "schema")
    if schema.get("$schema", DRAFT_2020_12) != DRAFT_2020_12:
        raise fail(f"schema must be JSON Schema 2020-12 ($schema {DRAFT_2020_12})", "schema")
    try:
        jsonschema_rs.meta.validate({**schema, "$schema": DRAFT_2020_12})
        _compile(schema)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise fail(f"schema is not valid JSON Schema 2020-12: {first}", "schema") from exc
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise fail("schema must declare its top-level properties", "schema.properties")

    primary_key = raw.get("primary_key")
    if isinstance(primary_key, str):
        primary_key = [primary_key]
    if not isinstance(primary_key, list) or not primary_key:
        raise fail("primary_key must be a non-empty list of field names", "primary_key")
    for key_field in primary_key:
        if key_field not in properties:
            raise fail(f"primary_key field {key_field!r} is not in the schema", "primary_key")
        if key_field not in schema.get("required", []):
            raise fail(f"primary_key field {key_field!r} must be required", "primary_key")
    for attr in ("cursor_field", "consent_time_field"):
        value = raw.get(attr)
        if value is not None and value not in properties:
            raise fail(f"{attr} {value!r} is not in the schema", attr)
    searchable = raw.get("searchable_fields", [])
    if not isinstance(searchable, list) or any(f not in properties for f in searchable):
        raise fail("searchable_fields must name fields of the schema", "searchable_fields")
    if len(searchable) > MAX_SEARCHABLE_FIELDS:
        raise fail(f"at most {MAX_SEARCHABLE_FIELDS} searchable fields", "searchable_fields")
    union = raw.get("union_fields", [])
    if not isinstance(union, list) or any(
        f not in properties or properties[f].get("type") != "array" for f in union
    ):
        raise fail("union_fields must name array fields of the schema", "union_fields")
    aggregations = raw.get("aggregations")
    if aggregations is not None:
        aggregations = _parse_aggregations(aggregations, properties, fail)
    relationships = _parse_relationships(raw.get("relationships", []), raw.get("expand", []), fail)
    return StreamDefinition(
        name=name,
        version=version,
        semantics=semantics,
        primary_key=tuple(primary_key),
        schema=schema,
        description=str(raw.get("description", "")),
        cursor_field=raw.get("cursor_field"),
        consent_time_field=raw.get("consent_time_field"),
        searchable_fields=tuple(searchable),
        union_fields=tuple(union),
        aggregations=aggregations,
        blob_fields=_blob_fields(schema, fail),
        range_filters=_parse_range_filters(raw.get("range_filters", {}), properties, fail),
        relationships=relationships,
        views=_parse_views(raw.get("views", []), properties, fail),
        shared=shared,
    )


def value_types(prop: Any) -> frozenset[str]:
    """The JSON types a field's schema allows, `null` aside (the nullable variant counts)."""
    return _types(prop) - {"null"}


def time_format(prop: Any) -> str | None:
    """`date` or `date-time` for a string field that holds calendar values, else None."""
    if value_types(prop) != {"string"}:
        return None
    found = prop.get("format")
    return found if found in ("date", "date-time") else None


def exact_filterable(name: str, prop: Any) -> bool:
    """A top-level field of one scalar type, with a name safe in a JSON path: the owner may
    filter it by exact value."""
    types = value_types(prop)
    return len(types) == 1 and types <= SCALAR_TYPES and bool(AGGREGABLE_NAME.match(name))


def rangeable(prop: Any) -> bool:
    """Whether a field's values have an order a range filter can use: numbers, dates and
    date-times."""
    types = value_types(prop)
    return (bool(types) and types <= NUMERIC_TYPES) or time_format(prop) is not None


def aggregable(kind: str, prop: Any) -> bool:
    """Whether a field's schema admits an aggregation kind: sums need numbers, extrema numbers
    or calendar values, time buckets calendar values, grouping and distinct counts one scalar
    type."""
    types = value_types(prop)
    if len(types) != 1:
        return False
    if kind == "sum":
        return types <= NUMERIC_TYPES
    if kind in ("min", "max"):
        return types <= NUMERIC_TYPES or time_format(prop) is not None
    if kind == "group_by_time":
        return time_format(prop) is not None
    return types <= SCALAR_TYPES


def _parse_aggregations(raw: Any, properties: dict[str, Any], fail: Fail) -> Aggregations:
    if not isinstance(raw, dict):
        raise fail("aggregations must be an object", "aggregations")
    unknown = sorted(set(raw) - {"count", *AGGREGATION_KINDS})
    if unknown:
        raise fail(f"aggregations has unknown operation(s) {', '.join(unknown)}", "aggregations")
    count = raw.get("count", False)
    if not isinstance(count, bool):
        raise fail("aggregations.count must be true or false", "aggregations.count")
    declared: dict[str, tuple[str, ...]] = {}
    for kind in AGGREGATION_KINDS:
        names = raw.get(kind, [])
        param = f"aggregations.{kind}"
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise fail(f"{param} must be a list of field names", param)
        for name in names:
            if name not in properties or not AGGREGABLE_NAME.match(name):
                raise fail(f"{param} names {name!r}, which is not a field of the schema", param)
            if not aggregable(kind, properties[name]):
                raise fail(f"{param}: field {name!r} has a type {kind} cannot use", param)
        declared[kind] = tuple(dict.fromkeys(names))
    return Aggregations(count=count, **declared)


def _local(schema: dict[str, Any], prop: Any) -> Any:
    """A property's schema, following one local `$ref` into `$defs`."""
    ref = prop.get("$ref") if isinstance(prop, dict) else None
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), prop)
    return prop


def _is_blob_ref(prop: Any, fail: Fail, path: str) -> bool:
    kind = prop.get(TYPE_KEYWORD) if isinstance(prop, dict) else None
    if kind is None:
        return False
    if kind != BLOB_REF:
        raise fail(f"{path}: {TYPE_KEYWORD} {kind!r} is not a known type ({BLOB_REF})", "schema")
    if _types(prop) - {"object", "null"}:
        raise fail(f"{path}: a {BLOB_REF} field holds an object", "schema")
    return True


def _blob_fields(schema: dict[str, Any], fail: Fail) -> tuple[str, ...]:
    """Paths of the `blob_ref` fields: a top-level field (`photo`), or a field of the object
    (`cover.blob_ref`) or of the array of objects (`attachments[].blob_ref`) a top-level field
    holds. A `blob_ref` marked deeper is refused rather than silently never honoured."""
    found: list[str] = []
    for name, raw_prop in schema["properties"].items():
        prop = _local(schema, raw_prop)
        if _is_blob_ref(prop, fail, name):
            found.append(name)
            continue
        holder, head = prop, name
        if isinstance(prop, dict) and "array" in _types(prop):
            holder, head = _local(schema, prop.get("items")), f"{name}[]"
        inner = holder.get("properties") if isinstance(holder, dict) else None
        for sub, sub_prop in (inner or {}).items():
            if _is_blob_ref(_local(schema, sub_prop), fail, f"{head}.{sub}"):
                found.append(f"{head}.{sub}")
    if _count_marks(schema, schema["properties"]) != len(found):
        raise fail(
            f"a {BLOB_REF} field must be top-level or one level inside a top-level field",
            "schema",
        )
    return tuple(found)


def _count_marks(schema: dict[str, Any], value: Any, seen: frozenset[str] = frozenset()) -> int:
    """How many schemas in `value` are marked as `blob_ref`, following local `$ref`s into
    `$defs` (each definition counted where it is used; a recursive one once per path)."""
    if isinstance(value, list):
        return sum(_count_marks(schema, v, seen) for v in value)
    if not isinstance(value, dict):
        return 0
    ref = value.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref not in seen:
        return _count_marks(schema, _local(schema, value), seen | {ref})
    own = 1 if value.get(TYPE_KEYWORD) == BLOB_REF else 0
    return own + sum(_count_marks(schema, v, seen) for k, v in value.items() if k != "$defs")


def _parse_range_filters(
    raw: Any, properties: dict[str, Any], fail: Fail
) -> tuple[tuple[str, tuple[RangeOp, ...]], ...]:
    """`{field: [operators]}`: numbers, dates and date-times, compared as values and instants."""
    if not isinstance(raw, dict):
        raise fail("range_filters must be an object of field: [operators]", "range_filters")
    found: list[tuple[str, tuple[RangeOp, ...]]] = []
    for name, ops in raw.items():
        param = f"range_filters.{name}"
        if name not in properties:
            raise fail(f"{param}: {name!r} is not a field of the schema", param)
        prop = properties[name]
        if not rangeable(prop):
            raise fail(f"{param}: only numbers, dates and date-times have ranges", param)
        if not isinstance(ops, list) or not ops or any(op not in RANGE_OPS for op in ops):
            raise fail(f"{param} must list operators among {', '.join(RANGE_OPS)}", param)
        found.append((name, tuple(op for op in RANGE_OPS if op in ops)))
    return tuple(found)


def _limit(entry: dict[str, Any], key: str, default: int, fail: Fail, param: str) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_EXPAND_LIMIT:
        raise fail(f"{param}.{key} must be an integer from 1 to {MAX_EXPAND_LIMIT}", param)
    return value


def _parse_relationships(raw: Any, expand: Any, fail: Fail) -> tuple[Relationship, ...]:
    """`relationships` (name, related stream, its foreign key to this record's key,
    `has_one`/`has_many`) and `expand`, which of them the owner may expand, with limits."""
    if not isinstance(raw, list) or not isinstance(expand, list):
        raise fail("relationships and expand must be lists", "relationships")
    expandable: dict[str, dict[str, Any]] = {}
    for entry in expand:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise fail("each expand entry needs the name of a relationship", "expand")
        expandable[name] = entry
    found: list[Relationship] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise fail("each relationship must be an object", "relationships")
        name, stream, key = entry.get("name"), entry.get("stream"), entry.get("foreign_key")
        cardinality = entry.get("cardinality")
        param = f"relationships.{name}"
        if not isinstance(name, str) or not RELATION_NAME.match(name):
            raise fail(f"relationship name {name!r} must match {RELATION_NAME.pattern}", param)
        if not isinstance(stream, str) or not STREAM_NAME.match(stream):
            raise fail(f"{param}.stream must name a stream", param)
        if not isinstance(key, str) or not key:
            raise fail(f"{param}.foreign_key must name a field of {stream}", param)
        if cardinality not in ("has_one", "has_many"):
            raise fail(f"{param}.cardinality must be has_one or has_many", param)
        limits = expandable.pop(name, None)
        if limits is not None and cardinality == "has_one" and (
            "default_limit" in limits or "max_limit" in limits
        ):
            raise fail(f"expand.{name}: a has_one relation takes no limits", "expand")
        default = _limit(limits or {}, "default_limit", 10, fail, f"expand.{name}")
        maximum = _limit(limits or {}, "max_limit", 50, fail, f"expand.{name}")
        if default > maximum:
            raise fail(f"expand.{name}: default_limit is above max_limit", "expand")
        found.append(
            Relationship(name, stream, key, cardinality, limits is not None, default, maximum)
        )
    if expandable:
        raise fail(f"expand names undeclared relationship(s) {sorted(expandable)}", "expand")
    return tuple(found)


def _parse_views(raw: Any, properties: dict[str, Any], fail: Fail) -> tuple[View, ...]:
    """`views`: named field lists the owner may read a stream through (`view=`)."""
    if not isinstance(raw, list):
        raise fail("views must be a list", "views")
    found: list[View] = []
    for entry in raw:
        view_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(view_id, str) or not RELATION_NAME.match(view_id):
            raise fail(f"view id {view_id!r} must match {RELATION_NAME.pattern}", "views")
        fields = entry.get("fields")
        if not isinstance(fields, list) or not fields or any(f not in properties for f in fields):
            raise fail(f"views.{view_id}.fields must name fields of the schema", "views")
        found.append(View(view_id, tuple(fields), str(entry.get("label", ""))))
    return tuple(found)


def _no_remote_refs(uri: str) -> Any:
    """Definitions are self-contained: a `$ref` never reaches the network."""
    raise ValueError(f"remote $ref {uri!r} is not allowed; definitions are self-contained")


def _compile(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(
        schema, validate_formats=True, retriever=_no_remote_refs
    )


def record_validator(definition: StreamDefinition) -> Callable[[Any], str | None]:
    """A compiled JSON Schema 2020-12 check of a record's data: None, or what is wrong.

    The same engine checks definitions when they are registered, so a keyword a definition
    may use (`prefixItems`, `dependentRequired`, …) is enforced on every record too.
    """
    validator = _compile(definition.schema)

    def check(data: Any) -> str | None:
        if validator.is_valid(data):
            return None
        error = next(iter(validator.iter_errors(data)))
        where = "/".join(str(part) for part in error.instance_path)
        return f"{where or 'data'}: {error.message}"

    return check


def definition_document(definition: StreamDefinition) -> dict[str, Any]:
    """The JSON form of a definition, as shipped and as listed."""
    return {
        "name": definition.name,
        "version": definition.version,
        "semantics": definition.semantics,
        "primary_key": list(definition.primary_key),
        "cursor_field": definition.cursor_field,
        "consent_time_field": definition.consent_time_field,
        "searchable_fields": list(definition.searchable_fields),
        "union_fields": list(definition.union_fields),
        **(
            {"aggregations": definition.aggregations.to_dict()}
            if definition.aggregations is not None
            else {}
        ),
        **(
            {"range_filters": {name: list(ops) for name, ops in definition.range_filters}}
            if definition.range_filters
            else {}
        ),
        **(
            {
                "relationships": [r.to_dict() for r in definition.relationships],
                "expand": expand_declarations(definition),
            }
            if definition.relationships
            else {}
        ),
        **(
            {"views": [{"id": v.id, "label": v.label, "fields": list(v.fields)}
                       for v in definition.views]}
            if definition.views
            else {}
        ),
        "description": definition.description,
        "schema": definition.schema,
    }


def expand_declarations(definition: StreamDefinition) -> list[dict[str, Any]]:
    """The definition's `expand` entries: its expandable relations, with their limits."""
    return [
        {"name": r.name}
        if r.cardinality == "has_one"
        else {"name": r.name, "default_limit": r.default_limit, "max_limit": r.max_limit}
        for r in definition.relationships
        if r.expandable
    ]


def _types(prop: Any) -> frozenset[str]:
    kind = prop.get("type") if isinstance(prop, dict) else None
    if kind is None:
        return frozenset()
    return frozenset([kind] if isinstance(kind, str) else kind)


def check_compatible(
    shared: StreamDefinition, claimed: StreamDefinition, connector_key: str
) -> None:
    """Refuse a connector whose inline stream claims a shared name but differs from it.

    Compatible means: same semantics, same primary key, same cursor and consent-time fields,
    and every field the connector declares exists in the shared schema with the same type.
    """
    where = f"connector {connector_key!r} stream {shared.name!r}"

    def differ(what: str, ours: Any, theirs: Any) -> IncompatibleDefinition:
        return IncompatibleDefinition(
            f"{where}: {what} is {theirs!r} but the shared definition has {ours!r}",
            stream=shared.name,
            difference=what,
        )

    if claimed.semantics != shared.semantics:
        raise differ("semantics", shared.semantics, claimed.semantics)
    if claimed.primary_key != shared.primary_key:
        raise differ("primary_key", list(shared.primary_key), list(claimed.primary_key))
    for attr in ("cursor_field", "consent_time_field"):
        theirs = getattr(claimed, attr)
        if theirs is not None and theirs != getattr(shared, attr):
            raise differ(attr, getattr(shared, attr), theirs)
    shared_props = shared.schema["properties"]
    for name, prop in claimed.schema["properties"].items():
        if name not in shared_props:
            raise differ(f"field {name!r}", None, "declared")
        ours, theirs = _types(shared_props[name]), _types(prop)
        if ours and theirs and ours != theirs:
            raise differ(f"type of field {name!r}", sorted(ours), sorted(theirs))
