"""Records are checked by the same JSON Schema 2020-12 engine as definitions: keywords that
only 2020-12 knows are enforced on every record, not just accepted in a definition."""

from __future__ import annotations

from typing import Any

from ownstream.registry.definitions import parse_definition, record_validator


def _definition(properties: dict[str, Any], **schema: Any) -> dict[str, Any]:
    return {
        "name": "measurements",
        "version": 1,
        "semantics": "append_only",
        "primary_key": ["id"],
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"id": {"type": "string"}, **properties},
            "required": ["id"],
            "additionalProperties": False,
            **schema,
        },
    }


def test_prefix_items_is_enforced_on_records() -> None:
    point = {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}],
             "items": False}
    problem = record_validator(parse_definition(_definition({"point": point})))
    assert problem({"id": "a", "point": [1.5, 2]}) is None
    message = problem({"id": "a", "point": ["north", 2]})
    assert message is not None and message.startswith("point/0:")
    assert problem({"id": "a", "point": [1, 2, 3]}) is not None  # no third item


def test_dependent_required_is_enforced_on_records() -> None:
    document = _definition(
        {"amount": {"type": "number"}, "currency": {"type": "string"}},
        dependentRequired={"amount": ["currency"]},
    )
    problem = record_validator(parse_definition(document))
    assert problem({"id": "a"}) is None
    assert problem({"id": "a", "amount": 3, "currency": "EUR"}) is None
    message = problem({"id": "a", "amount": 3})
    assert message is not None and "currency" in message


def test_unevaluated_properties_is_enforced_on_records() -> None:
    document = _definition({})
    del document["schema"]["additionalProperties"]
    document["schema"]["allOf"] = [{"properties": {"note": {"type": "string"}}}]
    document["schema"]["unevaluatedProperties"] = False
    problem = record_validator(parse_definition(document))
    assert problem({"id": "a", "note": "kept"}) is None
    assert problem({"id": "a", "other": 1}) is not None
