"""Stream definitions: parsing, validation, and the compatibility rule for shared definitions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jsonschema_rs

from ownstream.errors import IncompatibleDefinition, InvalidDefinition
from ownstream.model import AGGREGATION_KINDS, Aggregations, StreamDefinition

STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_SEARCHABLE_FIELDS = 8  # the search index has this many field slots
AGGREGABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # safe in a JSON path as is
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})
NUMERIC_TYPES = frozenset({"integer", "number"})


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


def _parse_aggregations(
    raw: Any, properties: dict[str, Any], fail: Callable[[str, str], InvalidDefinition]
) -> Aggregations:
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
        "description": definition.description,
        "schema": definition.schema,
    }


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
