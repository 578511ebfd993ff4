"""Source-identity rules: declarative proof that two acquisition paths are one account."""

from __future__ import annotations

import re
from typing import Any

from ownstream.errors import InvalidRule
from ownstream.model import IdentityRule

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def parse_rule(raw: Any) -> IdentityRule:
    if not isinstance(raw, dict):
        raise InvalidRule("an identity rule must be a JSON object")
    rule_id = raw.get("rule_id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise InvalidRule(f"rule_id {rule_id!r} must be a canonical key", param="rule_id")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidRule(f"rule {rule_id!r}: version must be a positive integer", param="version")
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
