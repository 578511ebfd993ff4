"""The catalog: built-in and operator-registered definitions, connectors and rules, in one view.

Built-ins ship as JSON in the package; operator additions are persisted by the store, so a
registration survives restarts and needs no change to the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import orjson

from ownstream.errors import (
    InvalidDefinition,
    InvalidManifest,
    InvalidRule,
    UnknownConnector,
    UnknownStream,
)
from ownstream.model import ConnectorManifest, IdentityRule, RecordRule, StreamDefinition
from ownstream.registry.definitions import check_compatible, parse_definition
from ownstream.registry.manifests import parse_manifest
from ownstream.registry.rules import parse_any_rule


class RegistrationStore(Protocol):
    """The part of the store the catalog needs: a durable list of operator registrations."""

    def registrations(self, kind: str) -> list[tuple[dict[str, Any], str | None]]: ...

    def save_registration(
        self, kind: str, key: str, document: dict[str, Any], base_dir: str | None
    ) -> None: ...


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InvalidManifest(f"{path.name} is not valid JSON: {exc}") from exc


class Catalog:
    def __init__(self) -> None:
        self.definitions: dict[str, StreamDefinition] = {}
        self.manifests: dict[str, ConnectorManifest] = {}
        self.rules: dict[str, IdentityRule] = {}
        self.record_rules: dict[str, RecordRule] = {}  # by stream: one record rule a stream

    @classmethod
    def load(cls, store: RegistrationStore | None = None) -> Catalog:
        catalog = cls()
        builtin = resources.files("ownstream")
        for item in sorted(builtin.joinpath("registry/builtin/definitions").iterdir(), key=str):
            if item.name.endswith(".json"):
                catalog._put_definition(parse_definition(orjson.loads(item.read_bytes())))
        connectors = Path(str(builtin.joinpath("connectors")))
        for manifest_path in sorted(connectors.glob("*/manifest.json")):
            catalog._put_manifest(
                parse_manifest(
                    _read_json(manifest_path),
                    catalog.definition_or_none,
                    base_dir=str(manifest_path.parent),
                    builtin=True,
                )
            )
        for item in sorted(builtin.joinpath("registry/builtin/rules").iterdir(), key=str):
            if item.name.endswith(".json"):
                catalog._put_any_rule(parse_any_rule(orjson.loads(item.read_bytes())))
        if store is not None:
            for document, _ in store.registrations("definition"):
                catalog._put_definition(parse_definition(document))
            for document, base_dir in store.registrations("connector"):
                catalog._put_manifest(
                    parse_manifest(document, catalog.definition_or_none, base_dir=base_dir)
                )
            for document, _ in store.registrations("rule"):
                catalog._put_any_rule(parse_any_rule(document))
        return catalog

    # lookups -------------------------------------------------------------------------------
    def definition_or_none(self, name: str) -> StreamDefinition | None:
        found = self.definitions.get(name)
        if found is not None:
            return found
        for manifest in self.manifests.values():
            inline = manifest.stream(name)
            if inline is not None:
                return inline
        return None

    def definition(self, name: str) -> StreamDefinition:
        found = self.definition_or_none(name)
        if found is None:
            raise UnknownStream(f"unknown stream {name!r}", param="stream")
        return found

    def manifest(self, connector_key: str) -> ConnectorManifest:
        found = self.manifests.get(connector_key)
        if found is None:
            raise UnknownConnector(f"unknown connector {connector_key!r}", param="connector_key")
        return found

    def stream_names(self) -> list[str]:
        names = set(self.definitions)
        for manifest in self.manifests.values():
            names.update(s.name for s in manifest.streams)
        return sorted(names)

    def emitters(self, stream: str) -> list[str]:
        return sorted(k for k, m in self.manifests.items() if m.stream(stream) is not None)

    def linked_connectors(self, connector_key: str, claim: str) -> list[str]:
        """This connector and every connector a rule links to it by `claim`."""
        linked = {connector_key}
        for rule in self.rules.values():
            if rule.claim == claim and connector_key in rule.connector_keys:
                linked.update(rule.connector_keys)
        return sorted(linked)

    def all_definitions(self) -> Iterable[StreamDefinition]:
        for name in self.stream_names():
            yield self.definition(name)

    # operator registrations -----------------------------------------------------------------
    def add_definition(self, document: Any, store: RegistrationStore) -> StreamDefinition:
        definition = parse_definition(document)
        self._put_definition(definition)
        store.save_registration("definition", definition.name, document, None)
        return definition

    def add_manifest(self, path: Path, store: RegistrationStore) -> ConnectorManifest:
        manifest_file = path / "manifest.json" if path.is_dir() else path
        if not manifest_file.is_file():
            raise InvalidManifest(f"no manifest at {manifest_file}", param="path")
        document = _read_json(manifest_file)
        base_dir = str(manifest_file.parent.resolve())
        manifest = parse_manifest(document, self.definition_or_none, base_dir=base_dir)
        existing = self.manifests.get(manifest.connector_key)
        if existing is not None and existing.builtin:
            raise InvalidManifest(
                f"connector_key {manifest.connector_key!r} is a built-in connector",
                param="connector_key",
            )
        self._check_rules_against(manifest, self.rules.values())
        self._put_manifest(manifest)
        store.save_registration("connector", manifest.connector_key, document, base_dir)
        return manifest

    def add_rule(self, document: Any, store: RegistrationStore) -> IdentityRule | RecordRule:
        rule = parse_any_rule(document)
        if isinstance(rule, IdentityRule):
            for key in rule.connector_keys:
                manifest = self.manifests.get(key)
                if manifest is not None:
                    self._check_rules_against(manifest, [rule])
        self._put_any_rule(rule)
        store.save_registration("rule", rule.rule_id, document, None)
        return rule

    def record_rule(self, stream: str) -> RecordRule | None:
        return self.record_rules.get(stream)

    # internals ------------------------------------------------------------------------------
    def _put_definition(self, definition: StreamDefinition) -> None:
        existing = self.definition_or_none(definition.name)
        if existing is not None and existing != definition:
            if definition.version <= existing.version and existing.shared:
                raise InvalidDefinition(
                    f"stream {definition.name!r} version {existing.version} is registered; "
                    "a changed definition needs a higher version",
                    param="version",
                )
            check_compatible(definition, existing, "(registered definition)")
        self.definitions[definition.name] = definition

    def _put_manifest(self, manifest: ConnectorManifest) -> None:
        self.manifests[manifest.connector_key] = manifest

    def _put_any_rule(self, rule: IdentityRule | RecordRule) -> None:
        existing: IdentityRule | RecordRule | None = self.rules.get(rule.rule_id) or next(
            (r for r in self.record_rules.values() if r.rule_id == rule.rule_id), None
        )
        if existing is not None and existing != rule and rule.version <= existing.version:
            raise InvalidRule(
                f"rule {rule.rule_id!r} version {existing.version} is registered; "
                "a changed rule needs a higher version",
                param="version",
            )
        if isinstance(rule, IdentityRule):
            self.rules[rule.rule_id] = rule
            return
        self._check_record_rule(rule)
        other = self.record_rules.get(rule.stream)
        if other is not None and other.rule_id != rule.rule_id:
            raise InvalidRule(
                f"stream {rule.stream!r} already has record rule {other.rule_id!r}",
                param="stream",
            )
        self.record_rules[rule.stream] = rule

    def _check_record_rule(self, rule: RecordRule) -> None:
        definition = self.definition_or_none(rule.stream)
        if definition is None:
            raise InvalidRule(
                f"rule {rule.rule_id!r}: no stream {rule.stream!r} is defined", param="stream"
            )
        missing = [
            name
            for name in (rule.time_field, rule.coarse_field, *rule.match_fields)
            if name not in definition.fields
        ]
        if missing:
            raise InvalidRule(
                f"rule {rule.rule_id!r}: stream {rule.stream!r} has no field(s) "
                f"{', '.join(missing)}",
                param="match_fields",
            )

    @staticmethod
    def _check_rules_against(manifest: ConnectorManifest, rules: Iterable[IdentityRule]) -> None:
        for rule in rules:
            if manifest.connector_key not in rule.connector_keys:
                continue
            if manifest.source != rule.source or manifest.identity_claim != rule.claim:
                raise InvalidRule(
                    f"rule {rule.rule_id!r} links {manifest.connector_key!r} by claim "
                    f"{rule.claim!r} of source {rule.source!r}, but the connector has source "
                    f"{manifest.source!r} and identity claim {manifest.identity_claim!r}",
                    param="paths",
                )
