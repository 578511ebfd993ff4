"""Rules as data: source-identity rules (two acquisition paths are one account) and record rules
(two records at different precisions are one real-world event)."""

from __future__ import annotations

import re
from typing import Any

from ownstream.errors import InvalidRule
from ownstream.model import IdentityRule, RecordRule

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _id_and_version(raw: Any) -> tuple[str, int]:
    if not isinstance(raw, dict):
        raise InvalidRule("a rule must be a JSON object")
    rule_id = raw.get("rule_id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise InvalidRule(f"rule_id {rule_id!r} must be a canonical key", param="rule_id")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidRule(f"rule {rule_id!r}: version must be a positive integer", param="version")
    return rule_id, version


def parse_any_rule(raw: Any) -> IdentityRule | RecordRule:
    """A rule document of either kind (`"kind": "record"`, or a source-identity rule)."""
    if isinstance(raw, dict) and raw.get("kind") == "record":
        return parse_record_rule(raw)
    return parse_rule(raw)


def parse_record_rule(raw: Any) -> RecordRule:
    rule_id, version = _id_and_version(raw)

    def text(name: str) -> str:
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidRule(f"rule {rule_id!r}: {name} must be a non-empty string", param=name)
        return value

    window = raw.get("window_seconds")
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 86_400:
        raise InvalidRule(
            f"rule {rule_id!r}: window_seconds must be between 1 and 86400",
            param="window_seconds",
        )
    fields = raw.get("match_fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise InvalidRule(
            f"rule {rule_id!r}: match_fields must list field names", param="match_fields"
        )
    coarse = raw.get("coarse_when")
    values = coarse.get("in") if isinstance(coarse, dict) else None
    if (
        not isinstance(coarse, dict)
        or not isinstance(coarse.get("field"), str)
        or not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) for v in values)
    ):
        raise InvalidRule(
            f'rule {rule_id!r}: coarse_when must be {{"field": …, "in": [values]}}',
            param="coarse_when",
        )
    order = raw.get("precision_order", [])
    if (
        not isinstance(order, list)
        or not all(isinstance(v, str) for v in order)
        or len(set(order)) != len(order)
        or (order and not set(values) <= set(order))
    ):
        raise InvalidRule(
            f"rule {rule_id!r}: precision_order must list distinct precision values, coarsest "
            "first, including every coarse_when value",
            param="precision_order",
        )
    return RecordRule(
        rule_id=rule_id,
        version=version,
        stream=text("stream"),
        time_field=text("time_field"),
        window_seconds=window,
        match_fields=tuple(fields),
        coarse_field=coarse["field"],
        coarse_values=tuple(values),
        description=str(raw.get("description", "")),
        precision_order=tuple(order),
    )


def record_rule_document(rule: RecordRule) -> dict[str, Any]:
    return {
        "rule_id": rule.rule_id,
        "version": rule.version,
        "kind": "record",
        "stream": rule.stream,
        "time_field": rule.time_field,
        "window_seconds": rule.window_seconds,
        "match_fields": list(rule.match_fields),
        "coarse_when": {"field": rule.coarse_field, "in": list(rule.coarse_values)},
        "precision_order": list(rule.precision_order),
        "description": rule.description,
    }


def parse_rule(raw: Any) -> IdentityRule:
    rule_id, version = _id_and_version(raw)
    for attr in ("source", "claim"):
        if not isinstance(raw.get(attr), str) or not raw[attr]:
            raise InvalidRule(f"rule {rule_id!r}: {attr} must be a non-empty string", param=attr)
    paths = raw.get("paths")
    keys = (
        [p.get("connector_key") for p in paths if isinstance(p, dict)]
        if isinstance(paths, list)
        else []
    )
    if len(keys) < 2 or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise InvalidRule(
            f"rule {rule_id!r}: paths must list at least two distinct connector_key entries",
            param="paths",
        )
    return IdentityRule(
        rule_id=rule_id,
        version=version,
        source=raw["source"],
        claim=raw["claim"],
        connector_keys=tuple(str(k) for k in keys),
        description=str(raw.get("description", "")),
    )


def rule_document(rule: IdentityRule) -> dict[str, Any]:
    return {
        "rule_id": rule.rule_id,
        "version": rule.version,
        "source": rule.source,
        "claim": rule.claim,
        "paths": [{"connector_key": k} for k in rule.connector_keys],
        "description": rule.description,
    }
