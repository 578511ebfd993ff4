"""The catalog: shared stream definitions, manifests and identity rules, validated on load."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ownstream.errors import (
    IncompatibleDefinition,
    InvalidDefinition,
    InvalidManifest,
    InvalidRule,
    OwnstreamError,
    UnknownConnector,
    UnknownStream,
)
from ownstream.model import IdentityRule
from ownstream.registry import Catalog
from ownstream.registry.manifests import parse_manifest, resolve_command

CONNECTORS = Path(__file__).parents[1] / "runtime" / "connectors"


class MemoryRegistrations:
    """The store's registration table, in memory."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {}

    def registrations(self, kind: str) -> list[tuple[dict[str, Any], str | None]]:
        return [v for (k, _), v in self.saved.items() if k == kind]

    def save_registration(
        self, kind: str, key: str, document: dict[str, Any], base_dir: str | None
    ) -> None:
        self.saved[(kind, key)] = (document, base_dir)


def load(name: str) -> dict[str, Any]:
    path = CONNECTORS / name
    document: dict[str, Any] = json.loads(
        (path / "manifest.json" if path.is_dir() else path).read_text()
    )
    return document


def write(folder: Path, document: dict[str, Any], name: str = "manifest.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def store() -> MemoryRegistrations:
    return MemoryRegistrations()


@pytest.fixture
def catalog(store: MemoryRegistrations) -> Catalog:
    catalog = Catalog.load(store)
    catalog.add_definition(load("journal_entries.json"), store)
    return catalog


def inline_journal(**changes: Any) -> dict[str, Any]:
    """The journal-api manifest, but declaring `journal_entries` inline (with `changes`)."""
    document = load("journal_api")
    stream = copy.deepcopy(load("journal_entries.json"))
    for key, value in changes.items():
        if key.startswith("prop_"):
            stream["schema"]["properties"][key[5:]] = value
        else:
            stream[key] = value
    document["streams"] = [stream]
    return document


# ------------------------------------------------------------------------------------------
# shared definitions
# ------------------------------------------------------------------------------------------


def test_built_in_definitions_and_connectors_load() -> None:
    catalog = Catalog.load()
    assert {"listening_history", "saved_tracks", "playlists", "profile"} <= set(
        catalog.definitions
    )
    assert catalog.emitters("profile") == ["spotify", "spotify-export"]
    assert catalog.manifest("spotify").stream("profile") is catalog.definition("profile")
    assert "spotify-account" in catalog.rules
    with pytest.raises(UnknownConnector):
        catalog.manifest("nope")
    with pytest.raises(UnknownStream):
        catalog.definition("nope")


def test_two_connectors_share_one_definition(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path
) -> None:
    api = catalog.add_manifest(write(tmp_path / "api", load("journal_api")), store)
    export = catalog.add_manifest(write(tmp_path / "export", load("journal_export")), store)
    shared = catalog.definition("journal_entries")
    assert api.stream("journal_entries") is shared and export.stream("journal_entries") is shared
    assert catalog.emitters("journal_entries") == ["journal-api", "journal-export"]
    assert api.source == export.source == "journal"
    assert (api.acquisition_method, export.acquisition_method) == (
        "provider_api", "owner_artifact",
    )


@pytest.mark.parametrize(
    ("changes", "difference", "shown"),
    [
        ({"semantics": "append_only"}, "semantics", "'append_only'"),
        ({"primary_key": ["written_at"]}, "primary_key", "['written_at']"),
        ({"prop_words": {"type": "string"}}, "type of field 'words'", "['string']"),
        ({"prop_extra": {"type": "string"}}, "field 'extra'", "declared"),
        ({"cursor_field": "text"}, "cursor_field", "'text'"),
    ],
)
def test_claiming_a_shared_definition_differently_fails_naming_stream_and_difference(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path,
    changes: dict[str, Any], difference: str, shown: str,
) -> None:
    path = write(tmp_path / "api", inline_journal(**changes))
    with pytest.raises(IncompatibleDefinition) as caught:
        catalog.add_manifest(path, store)
    error = caught.value
    assert error.code == "incompatible_stream_definition"
    assert error.extra == {"stream": "journal_entries", "difference": difference}
    assert "'journal_entries'" in error.message and "'journal-api'" in error.message
    assert difference in error.message and shown in error.message
    assert "journal-api" not in catalog.manifests and not store.registrations("connector")


def test_a_compatible_inline_claim_uses_the_shared_definition(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path
) -> None:
    document = inline_journal()
    del document["streams"][0]["schema"]["properties"]["mood"]
    manifest = catalog.add_manifest(write(tmp_path / "api", document), store)
    assert manifest.stream("journal_entries") is catalog.definition("journal_entries")
    stream = manifest.stream("journal_entries")
    assert stream is not None and "mood" in stream.fields


def test_a_reference_to_an_unknown_or_other_version_definition_fails(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path
) -> None:
    document = load("journal_api")
    document["streams"] = [{"definition": "diary"}]
    with pytest.raises(UnknownStream, match="unknown shared definition 'diary'"):
        catalog.add_manifest(write(tmp_path / "a", document), store)
    document["streams"] = [{"definition": "journal_entries", "version": 2}]
    with pytest.raises(InvalidManifest, match="wants 'journal_entries' version 2") as caught:
        catalog.add_manifest(write(tmp_path / "b", document), store)
    assert caught.value.param == "streams[0]"


def test_a_changed_definition_needs_a_higher_compatible_version(
    catalog: Catalog, store: MemoryRegistrations
) -> None:
    document = load("journal_entries.json")
    catalog.add_definition(copy.deepcopy(document), store)  # the same again: fine
    changed = copy.deepcopy(document)
    changed["description"] = "changed"
    with pytest.raises(InvalidDefinition, match="needs a higher version") as caught:
        catalog.add_definition(changed, store)
    assert caught.value.param == "version"
    changed["version"] = 2
    changed["schema"]["properties"]["tags"] = {"type": "array"}
    assert catalog.add_definition(changed, store).version == 2
    incompatible = copy.deepcopy(changed)
    incompatible["version"] = 3
    incompatible["semantics"] = "append_only"
    with pytest.raises(IncompatibleDefinition) as caught_incompatible:
        catalog.add_definition(incompatible, store)
    assert caught_incompatible.value.extra["difference"] == "semantics"
    assert catalog.definition("journal_entries").version == 2


def test_a_standalone_definition_must_agree_with_an_inline_one(
    store: MemoryRegistrations, tmp_path: Path
) -> None:
    catalog = Catalog.load(store)
    catalog.add_manifest(write(tmp_path / "s", load("scripted")), store)
    assert catalog.definition("items").shared is False
    clash = {"name": "items", "version": 2, "semantics": "append_only", "primary_key": ["id"],
             "schema": {"type": "object", "properties": {"id": {"type": "string"}},
                        "required": ["id"]}}
    with pytest.raises(IncompatibleDefinition, match="semantics"):
        catalog.add_definition(clash, store)


BASE_DEFINITION: dict[str, Any] = {
    "name": "things", "semantics": "mutable_state", "primary_key": ["id"],
    "schema": {"type": "object", "properties": {"id": {"type": "string"}, "n": {}},
               "required": ["id"]},
}


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": None}, "name"),
        ({"semantics": "append"}, "semantics"),
        ({"version": 0}, "version"),
        ({"version": True}, "version"),
        ({"schema": {"type": "array"}}, "schema"),
        ({"schema": {"type": "object", "properties": {}}}, "schema.properties"),
        ({"schema": {"type": "object", "properties": {"id": {"type": "nope"}}}}, "schema"),
        ({"primary_key": []}, "primary_key"),
        ({"primary_key": ["missing"]}, "primary_key"),
        ({"primary_key": ["n"]}, "primary_key"),  # not required
        ({"cursor_field": "missing"}, "cursor_field"),
        ({"consent_time_field": "missing"}, "consent_time_field"),
        ({"searchable_fields": ["missing"]}, "searchable_fields"),
    ],
)
def test_invalid_definitions_are_typed_errors_naming_the_field(
    catalog: Catalog, store: MemoryRegistrations, changes: dict[str, Any], param: str
) -> None:
    document = {**copy.deepcopy(BASE_DEFINITION), **changes}
    with pytest.raises(InvalidDefinition) as caught:
        catalog.add_definition(document, store)
    assert caught.value.param == param and caught.value.code == "invalid_stream_definition"
    assert not store.registrations("definition")[1:]  # only journal_entries was saved


def test_too_many_searchable_fields(catalog: Catalog, store: MemoryRegistrations) -> None:
    document = copy.deepcopy(BASE_DEFINITION)
    for i in range(9):
        document["schema"]["properties"][f"f{i}"] = {"type": "string"}
    document["searchable_fields"] = [f"f{i}" for i in range(9)]
    with pytest.raises(InvalidDefinition, match="at most 8"):
        catalog.add_definition(document, store)


AGGREGABLE = {
    **copy.deepcopy(BASE_DEFINITION),
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "amount": {"type": ["number", "null"]},
            "at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "label": {"type": "string"},
            "tags": {"type": "array"},
            "odd name": {"type": "string"},
        },
        "required": ["id"],
    },
}


def test_aggregations_are_parsed_and_listed(catalog: Catalog, store: MemoryRegistrations) -> None:
    declared = {
        "count": True,
        "sum": ["amount"],
        "min": ["amount", "at", "day"],
        "max": ["at"],
        "group_by": ["label"],
        "group_by_time": ["at", "day"],
        "count_distinct": ["label", "amount"],
    }
    definition = catalog.add_definition({**AGGREGABLE, "aggregations": declared}, store)
    assert definition.aggregations is not None
    assert definition.aggregations.to_dict() == declared
    assert definition.aggregations.fields_for("group_by_time") == ("at", "day")
    plain = {**copy.deepcopy(AGGREGABLE), "name": "plain_things"}
    assert catalog.add_definition(plain, store).aggregations is None


@pytest.mark.parametrize(
    ("aggregations", "param"),
    [
        (["count"], "aggregations"),
        ({"median": ["amount"]}, "aggregations"),
        ({"count": "yes"}, "aggregations.count"),
        ({"sum": "amount"}, "aggregations.sum"),
        ({"sum": ["missing"]}, "aggregations.sum"),
        ({"sum": ["label"]}, "aggregations.sum"),  # not a number
        ({"min": ["label"]}, "aggregations.min"),  # neither a number nor a calendar value
        ({"group_by": ["tags"]}, "aggregations.group_by"),  # not a scalar
        ({"group_by_time": ["label"]}, "aggregations.group_by_time"),  # no date format
        ({"count_distinct": ["odd name"]}, "aggregations.count_distinct"),
    ],
)
def test_invalid_aggregations_name_the_operation(
    catalog: Catalog, store: MemoryRegistrations, aggregations: Any, param: str
) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        catalog.add_definition({**copy.deepcopy(AGGREGABLE), "aggregations": aggregations}, store)
    assert caught.value.param == param


# ------------------------------------------------------------------------------------------
# manifests
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["https://example.com/notes", "http://notes", "Notes", "notes app", "", None, 7]
)
def test_a_non_canonical_connector_key_is_rejected_naming_connector_key(key: Any) -> None:
    document = load("scripted")
    document["connector_key"] = key
    with pytest.raises(InvalidManifest) as caught:
        parse_manifest(document, lambda name: None)
    assert caught.value.param == "connector_key"
    assert "connector_key" in caught.value.message and "manifest_uri" in caught.value.message


def _drop(key: str) -> Any:
    def change(document: dict[str, Any]) -> None:
        del document[key]

    return change


def _set(key: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        document[key] = value

    return change


def _stream(key: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        document["streams"][0][key] = value

    return change


INVALID_MANIFESTS = {
    "no_version": (_drop("version"), "version"),
    "empty_display_name": (_set("display_name", ""), "display_name"),
    "no_source": (_drop("source"), "source"),
    "bad_method": (_set("acquisition_method", "scraping"), "acquisition_method"),
    "manifest_uri_not_a_string": (_set("manifest_uri", 5), "manifest_uri"),
    "setup_not_object": (_set("setup", []), "setup"),
    "secret_without_env": (_set("setup", {"secrets": [{"name": "t"}]}), "setup.secrets"),
    "lowercase_env": (
        _set("setup", {"settings": [{"name": "t", "env": "lower"}]}), "setup.settings",
    ),
    "bad_refresh_mode": (_set("refresh_policy", {"recommended_mode": "often"}), "refresh_policy"),
    "bad_identity_claim": (_set("identity", {"claim": "Account ID"}), "identity.claim"),
    "identity_not_object": (_set("identity", "account_id"), "identity.claim"),
    "no_run": (_set("run", {}), "run"),
    "empty_command": (_set("run", {"command": []}), "run.command"),
    "command_not_strings": (_set("run", {"command": ["python3", 1]}), "run.command"),
    "bad_python_entry": (_set("run", {"python": "module"}), "run.python"),
    "no_streams": (_set("streams", []), "streams"),
    "stream_not_object": (_set("streams", ["items"]), "streams[0]"),
    "inline_pk_not_in_schema": (_stream("primary_key", ["nope"]), "streams[0]"),
    "inline_bad_semantics": (_stream("semantics", "log"), "streams[0]"),
}


@pytest.mark.parametrize("case", sorted(INVALID_MANIFESTS))
def test_invalid_manifests_are_typed_errors_naming_the_field(case: str) -> None:
    change, param = INVALID_MANIFESTS[case]
    document = load("scripted")
    change(document)
    with pytest.raises(InvalidManifest) as caught:
        parse_manifest(document, lambda name: None)
    assert caught.value.param == param, caught.value.message
    assert caught.value.code == "invalid_manifest" and caught.value.status == 400
    assert caught.value.message.startswith("connector 'scripted': ")


def test_a_stream_listed_twice_is_invalid() -> None:
    document = load("scripted")
    document["streams"].append(copy.deepcopy(document["streams"][0]))
    with pytest.raises(InvalidManifest, match="listed twice"):
        parse_manifest(document, lambda name: None)


def test_the_manifest_is_read_from_a_folder_or_a_file(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path
) -> None:
    with pytest.raises(InvalidManifest, match="no manifest at"):
        catalog.add_manifest(tmp_path / "empty", store)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InvalidManifest, match="not valid JSON"):
        catalog.add_manifest(tmp_path / "broken.json", store)
    file = write(tmp_path / "as_file", load("scripted"), name="scripted.json")
    manifest = catalog.add_manifest(file, store)
    assert manifest.base_dir == str(file.parent.resolve())
    assert store.saved[("connector", "scripted")][1] == str(file.parent.resolve())


def test_a_built_in_connector_key_cannot_be_taken(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path
) -> None:
    document = load("scripted")
    document["connector_key"] = "spotify"
    with pytest.raises(InvalidManifest, match="built-in") as caught:
        catalog.add_manifest(write(tmp_path / "x", document), store)
    assert caught.value.param == "connector_key"


def test_run_commands_resolve_against_the_manifest_folder(tmp_path: Path) -> None:
    document = load("journal_api")
    document["streams"] = load("scripted")["streams"]
    document["run"]["command"] = ["python3", "../scripted/connector.py", "--flag", "plain"]
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "plain").write_text("")
    manifest = parse_manifest(document, lambda name: None, base_dir=str(tmp_path / "here"))
    assert resolve_command(manifest) == [
        "python3",
        str((tmp_path / "scripted" / "connector.py").resolve()),
        "--flag",
        str((tmp_path / "here" / "plain").resolve()),
    ]


def test_setup_and_refresh_policy_are_parsed() -> None:
    manifest = parse_manifest(load("scripted"), lambda name: None)
    assert [(s.name, s.env, s.required) for s in manifest.secrets] == [
        ("token", "SCRIPTED_TOKEN", True)
    ]
    assert [(s.name, s.required) for s in manifest.settings] == [("script", True), ("log", False)]
    assert manifest.refresh_policy.recommended_mode == "automatic"
    assert manifest.refresh_policy.recommended_interval_seconds == 3600
    assert manifest.identity_claim == "account_id" and manifest.manifest_uri
    shell = parse_manifest(load("shell_notes"), lambda name: None)
    assert [(s.name, s.default) for s in shell.settings] == [
        ("account", None), ("prefix", "note"), ("count", "3"),
    ]
    assert shell.refresh_policy.background_safe is True


# ------------------------------------------------------------------------------------------
# identity rules
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"rule_id": "Bad Id"}, "rule_id"),
        ({"version": 0}, "version"),
        ({"source": ""}, "source"),
        ({"claim": None}, "claim"),
        ({"paths": [{"connector_key": "journal-api"}]}, "paths"),
        ({"paths": [{"connector_key": "a"}, {"connector_key": "a"}]}, "paths"),
        ({"paths": "journal-api,journal-export"}, "paths"),
    ],
)
def test_invalid_rules_are_typed_errors(
    catalog: Catalog, store: MemoryRegistrations, changes: dict[str, Any], param: str
) -> None:
    document = {**load("journal_rule.json"), **changes}
    with pytest.raises(InvalidRule) as caught:
        catalog.add_rule(document, store)
    assert caught.value.param == param and caught.value.code == "invalid_identity_rule"


def test_a_rule_must_match_its_connectors_source_and_claim(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path
) -> None:
    catalog.add_manifest(write(tmp_path / "api", load("journal_api")), store)
    wrong_claim = {**load("journal_rule.json"), "claim": "email"}
    with pytest.raises(InvalidRule, match="identity claim 'journal_user'") as caught:
        catalog.add_rule(wrong_claim, store)
    assert caught.value.param == "paths"
    rule = catalog.add_rule(load("journal_rule.json"), store)
    assert isinstance(rule, IdentityRule)
    assert rule.connector_keys == ("journal-api", "journal-export")

    # and the other way round: a connector registered after a rule that names it
    export = load("journal_export")
    export["source"] = "diary"
    with pytest.raises(InvalidRule, match="source 'diary'"):
        catalog.add_manifest(write(tmp_path / "export", export), store)


def test_a_changed_rule_needs_a_higher_version(
    catalog: Catalog, store: MemoryRegistrations
) -> None:
    document = load("journal_rule.json")
    catalog.add_rule(document, store)
    catalog.add_rule(copy.deepcopy(document), store)
    changed = {**document, "description": "other"}
    with pytest.raises(InvalidRule, match="higher version"):
        catalog.add_rule(changed, store)
    assert catalog.add_rule({**changed, "version": 2}, store).version == 2


def test_registrations_survive_a_reload(
    catalog: Catalog, store: MemoryRegistrations, tmp_path: Path
) -> None:
    catalog.add_manifest(write(tmp_path / "api", load("journal_api")), store)
    catalog.add_manifest(write(tmp_path / "export", load("journal_export")), store)
    catalog.add_rule(load("journal_rule.json"), store)
    reloaded = Catalog.load(store)
    assert reloaded.definition("journal_entries") == catalog.definition("journal_entries")
    assert reloaded.manifest("journal-api").base_dir == str((tmp_path / "api").resolve())
    assert reloaded.linked_connectors("journal-export", "journal_user") == [
        "journal-api",
        "journal-export",
    ]
    assert reloaded.linked_connectors("journal-export", "email") == ["journal-export"]
    assert reloaded.emitters("journal_entries") == ["journal-api", "journal-export"]


def test_every_catalog_error_is_an_ownstream_error(catalog: Catalog) -> None:
    for error in (InvalidManifest, InvalidDefinition, IncompatibleDefinition, InvalidRule,
                  UnknownStream, UnknownConnector):
        assert issubclass(error, OwnstreamError) and error.status in (400, 404)


def test_union_fields_are_array_fields_merged_as_sets() -> None:
    from ownstream.records import merge
    from ownstream.registry.definitions import parse_definition

    document = {
        "name": "tagged",
        "semantics": "mutable_state",
        "primary_key": ["id"],
        "union_fields": ["labels"],
        "schema": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "labels": {"type": "array"}},
            "required": ["id"],
        },
    }
    definition = parse_definition(document)
    assert definition.union_fields == ("labels",)
    old = {"id": "a", "labels": ["inbox", "work"]}
    new = {"id": "a", "labels": ["work", "archive"]}
    # another path evidences the record: its labels are kept, the new ones added
    assert merge(old, new, semantics="mutable_state", other_paths=True, union_fields=("labels",))[
        "labels"
    ] == ["inbox", "work", "archive"]
    # only the writing path: it reports the whole set, so it may remove a label
    assert merge(old, new, semantics="mutable_state", other_paths=False, union_fields=("labels",))[
        "labels"
    ] == ["work", "archive"]
    with pytest.raises(InvalidDefinition):
        parse_definition({**document, "union_fields": ["id"]})
