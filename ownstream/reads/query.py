"""The owner's query parameters on record reads: `filter[...]`, `view`, `expand[]`,
`expand_limit[...]` and `sort` (PDPP core §8, "owner-token current-capability reads").

Clients never get here: the HTTP layer refuses these parameters to a client token with
`invalid_request` before anything is looked up, as the spec requires. For the owner:
- `filter[field]=value` is an exact match on a top-level scalar field; `filter[field][op]`
  (`gte`, `gt`, `lte`, `lt`) a range on a field the definition declares in `range_filters`.
  Values take the field's JSON type; date-times compare as instants. The store applies them
  in SQL, inside the read's scope, so they only ever narrow it.
- `view` reads through one of the definition's named field lists (not with `fields`).
- `expand[]` adds, to each record, the records of a declared, expandable relation in the same
  connection (`expand_limit[relation]` bounds a `has_many`, within the declaration).
- `sort` is the sign-prefixed form of `order` on the stream's cursor field (`-played_at`):
  pages are keyset-ordered by that field, so it is the one sortable field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from ownstream.clock import iso, parse_iso
from ownstream.errors import InvalidExpand, InvalidRequest, UnknownField
from ownstream.model import (
    RANGE_OPS,
    FieldFilter,
    FilterOp,
    ReadScope,
    Relationship,
    StreamDefinition,
    View,
)
from ownstream.reads.common import Warnings, clamped
from ownstream.registry import Catalog
from ownstream.registry.definitions import exact_filterable, time_format, value_types

FILTER = re.compile(r"filter\[([^\[\]]+)\](?:\[([^\[\]]+)\])?")
EXPAND_LIMIT = re.compile(r"expand_limit\[([^\[\]]+)\]")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_FILTERS = 10
OWNER_PARAMS = ("filter", "view", "expand", "expand_limit", "sort")


@dataclass(frozen=True)
class Expansion:
    relation: Relationship
    target: StreamDefinition
    limit: int


@dataclass(frozen=True)
class OwnerQuery:
    filters: tuple[FieldFilter, ...] = ()
    view: View | None = None
    expand: tuple[Expansion, ...] = ()
    order: str | None = None  # from `sort`

    def narrow(self, scope: ReadScope) -> ReadScope:
        """The scope with the filters applied (and the view's fields, when one is named)."""
        fields = scope.fields if self.view is None else tuple(
            f for f in scope.fields if f in self.view.fields
        )
        return replace(scope, fields=fields, filters=self.filters)

    def fingerprint(self) -> str:
        """What binds a page cursor to its filters: a cursor of another query is refused."""
        text = repr([(f.field, f.op, f.value) for f in self.filters])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


NO_QUERY = OwnerQuery()  # a client's reads, and the owner's without query parameters


def parse_owner_query(
    params: Sequence[tuple[str, str]],
    definition: StreamDefinition,
    catalog: Catalog,
    *,
    fields_requested: bool,
    warnings: Warnings,
) -> OwnerQuery:
    """Validate the owner's query parameters against the current definition."""
    filters: dict[tuple[str, str], FieldFilter] = {}
    names: list[str] = []
    limits: dict[str, str] = {}
    view = sort = None
    for name, value in params:
        if name.startswith("filter"):
            found = _filter(name, value, definition)
            if (found.field, found.op) in filters:
                raise InvalidRequest(f"{name} is given twice", param=name)
            filters[(found.field, found.op)] = found
        elif name in ("expand", "expand[]"):
            names += [part for part in value.split(",") if part]
        elif name.startswith("expand_limit"):
            match = EXPAND_LIMIT.fullmatch(name)
            if match is None:
                raise InvalidExpand("expand_limit names a relation: expand_limit[name]", param=name)
            limits[match[1]] = value
        elif name == "view":
            view = _view(value, definition, fields_requested)
        elif name == "sort":
            sort = _sort(value, definition)
    if len(filters) > MAX_FILTERS:
        raise InvalidRequest(f"at most {MAX_FILTERS} filters", param="filter")
    return OwnerQuery(
        tuple(filters.values()),
        view,
        _expansions(names, limits, definition, catalog, warnings),
        sort,
    )


def _filter(name: str, raw: str, definition: StreamDefinition) -> FieldFilter:
    match = FILTER.fullmatch(name)
    if match is None:
        raise InvalidRequest("a filter is filter[field] or filter[field][op]", param=name)
    field, op = match[1], match[2] or "eq"
    if field not in definition.fields:
        raise UnknownField(f"{definition.name} has no field {field!r}", param=name)
    prop = definition.schema["properties"][field]
    if not exact_filterable(field, prop):
        raise InvalidRequest(f"{field!r} is not a top-level scalar field", param=name)
    if op != "eq":
        if op not in RANGE_OPS:
            raise InvalidRequest(f"{op!r} is not a filter operator ({RANGE_OPS})", param=name)
        if op not in definition.range_ops(field):
            raise InvalidRequest(
                f"{definition.name} declares no {op} range filter on {field!r}", param=name
            )
    value, moment = _typed(raw, next(iter(value_types(prop))), time_format(prop), name)
    return FieldFilter(field, cast(FilterOp, op), value, moment)


def _typed(
    raw: str, kind: str, calendar: str | None, param: str
) -> tuple[str | int | float | bool, bool]:
    """A filter value as the field's JSON type; a date-time as normalized UTC."""
    wrong = InvalidRequest(f"{param} must be a {calendar or kind}", param=param)
    if calendar == "date-time":
        try:
            return iso(parse_iso(raw)), True
        except ValueError:
            raise wrong from None
    if calendar == "date" and not DAY.fullmatch(raw):
        raise wrong
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise wrong
        return raw == "true", False
    if kind in ("integer", "number"):
        try:
            number: int | float = int(raw) if kind == "integer" else float(raw)
        except ValueError:
            raise wrong from None
        if not -(2**63) <= number < 2**63:  # past SQLite's integers, infinite, or NaN
            raise wrong
        return number, False
    return raw, False


def _view(view_id: str, definition: StreamDefinition, fields_requested: bool) -> View:
    if fields_requested:
        raise InvalidRequest("view and fields exclude each other", param="view")
    found = definition.view(view_id)
    if found is None:
        declared = ", ".join(v.id for v in definition.views) or "none"
        raise InvalidRequest(
            f"{definition.name} has no view {view_id!r} (it declares: {declared})", param="view"
        )
    return found


def _sort(value: str, definition: StreamDefinition) -> str:
    field = value.removeprefix("-")
    if definition.cursor_field is None or field != definition.cursor_field:
        sortable = definition.cursor_field or "none"
        raise InvalidRequest(
            f"{definition.name} sorts only by its cursor field ({sortable})", param="sort"
        )
    return "desc" if value.startswith("-") else "asc"


def _expansions(
    names: list[str],
    limits: dict[str, str],
    definition: StreamDefinition,
    catalog: Catalog,
    warnings: Warnings,
) -> tuple[Expansion, ...]:
    found: dict[str, Expansion] = {}
    for name in names:
        relation = definition.relationship(name)
        target = catalog.definition_or_none(relation.stream) if relation is not None else None
        if relation is None or not relation.expandable or target is None:
            declared = [r.name for r in definition.relationships if r.expandable]
            raise InvalidExpand(
                f"{definition.name} declares no expandable relation {name!r} "
                f"(it declares: {', '.join(declared) or 'none'})",
                param="expand",
            )
        if relation.foreign_key not in target.fields:
            raise InvalidExpand(
                f"relation {name!r}: {target.name} has no field {relation.foreign_key!r}",
                param="expand",
            )
        found[name] = Expansion(relation, target, relation.default_limit)
    for name, raw in limits.items():
        expansion = found.get(name)
        param = f"expand_limit[{name}]"
        if expansion is None or expansion.relation.cardinality != "has_many":
            raise InvalidExpand(f"{param} needs expand={name}, a has_many relation", param=param)
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise InvalidExpand(f"{param} must be a positive integer", param=param)
        limit = clamped(int(raw), expansion.relation.max_limit, param, warnings)
        found[name] = replace(expansion, limit=limit)
    return tuple(found.values())


def foreign_value(target: StreamDefinition, field: str, key: str) -> Any:
    """A parent's record key as the value of the child's foreign-key field (its JSON type),
    or None when it cannot be one."""
    types = value_types(target.schema["properties"].get(field, {}))
    if types == {"integer"}:
        return int(key) if key.lstrip("-").isdigit() else None
    return key if types <= {"string"} else None
