"""The shipped Spotify definitions, manifests and identity rule parse and agree with each other."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ownstream.model import StreamDefinition
from ownstream.registry.catalog import Catalog
from ownstream.registry.definitions import parse_definition, record_validator
from ownstream.registry.manifests import parse_manifest
from ownstream.registry.rules import parse_rule

from . import BUILTIN, CONNECTORS, definition_documents

SPOTIFY_STREAMS = ("listening_history", "saved_tracks", "playlists", "profile")


def shared(name: str) -> StreamDefinition | None:
    document = definition_documents().get(name)
    return parse_definition(document) if document is not None else None


def manifest_document(folder: str) -> Any:
    return json.loads((CONNECTORS / folder / "manifest.json").read_text("utf-8"))


@pytest.mark.parametrize("name", SPOTIFY_STREAMS)
def test_definition_parses_and_is_strict(name: str) -> None:
    document = definition_documents()[name]
    definition = parse_definition(document)
    assert definition.name == name and definition.version == 1
    schema = document["schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(definition.primary_key) <= set(schema["required"])
    assert definition.description


def test_definition_details() -> None:
    history = parse_definition(definition_documents()["listening_history"])
    assert history.semantics == "append_only" and history.primary_key == ("play_id",)
    assert history.cursor_field == history.consent_time_field == "played_at"
    playlists = parse_definition(definition_documents()["playlists"])
    assert playlists.cursor_field is None and "name:" in playlists.description
    for name in ("saved_tracks", "playlists", "profile"):
        assert parse_definition(definition_documents()[name]).semantics == "mutable_state"


def test_schemas_reject_nulls_and_unknown_fields() -> None:
    problem = record_validator(parse_definition(definition_documents()["listening_history"]))
    good = {
        "play_id": "0123456789abcdef0123",
        "played_at": "2025-01-01T10:00:00.000Z",
        "track_name": "Song",
        "artist_name": "Band",
    }
    assert problem(good) is None
    for bad in (
        {**good, "ms_played": None},
        {**good, "duration_ms": 1},
        {**good, "played_at": "2025-01-01T10:00:00+02:00"},
        {k: v for k, v in good.items() if k != "artist_name"},
    ):
        assert problem(bad) is not None, bad


@pytest.mark.parametrize(
    ("folder", "key", "method"),
    [
        ("spotify", "spotify", "provider_api"),
        ("spotify_export", "spotify-export", "owner_artifact"),
    ],
)
def test_manifest_parses(folder: str, key: str, method: str) -> None:
    manifest = parse_manifest(manifest_document(folder), shared, builtin=True)
    assert manifest.connector_key == key and manifest.acquisition_method == method
    assert manifest.source == "spotify" and manifest.identity_claim == "spotify_user_id"
    assert tuple(s.name for s in manifest.streams) == SPOTIFY_STREAMS
    assert manifest.python_entry == f"ownstream.connectors.{folder}.connector:collect"


def test_api_manifest_setup() -> None:
    manifest = parse_manifest(manifest_document("spotify"), shared)
    assert [s.env for s in manifest.secrets] == [
        "SPOTIFY_ACCESS_TOKEN",
        "SPOTIFY_REFRESH_TOKEN",
        "SPOTIFY_CLIENT_ID",
        "SPOTIFY_CLIENT_SECRET",
    ]
    defaults = {s.env: s.default for s in manifest.settings}
    assert defaults["SPOTIFY_API_BASE_URL"] == "https://api.spotify.com"
    assert manifest.refresh_policy.background_safe is True
    export = parse_manifest(manifest_document("spotify_export"), shared)
    assert export.secrets == () and export.refresh_policy.recommended_mode == "manual"


def test_rule_links_both_paths() -> None:
    rule = parse_rule(json.loads((BUILTIN / "rules" / "spotify-account.json").read_text("utf-8")))
    assert rule.claim == "spotify_user_id" and rule.source == "spotify"
    assert set(rule.connector_keys) == {"spotify", "spotify-export"}


def test_catalog_loads_the_builtins() -> None:
    catalog = Catalog.load()
    assert {"spotify", "spotify-export"} <= set(catalog.manifests)
    assert set(SPOTIFY_STREAMS) <= set(catalog.definitions)
    rule = catalog.rules["spotify-account"]
    assert set(rule.connector_keys) == {"spotify", "spotify-export"}
    assert catalog.linked_connectors("spotify", "spotify_user_id") == ["spotify", "spotify-export"]
