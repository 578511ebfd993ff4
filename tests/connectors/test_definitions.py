"""The shipped Spotify definitions, manifests and rules parse and agree with each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ownstream.errors import InvalidRule
from ownstream.model import StreamDefinition
from ownstream.registry.catalog import Catalog
from ownstream.registry.definitions import check_compatible, parse_definition, record_validator
from ownstream.registry.manifests import parse_manifest
from ownstream.registry.rules import parse_record_rule, parse_rule

from . import BUILTIN, CONNECTORS, definition_documents

API_STREAMS = (
    "listening_history", "saved_tracks", "saved_shows", "saved_episodes", "playlists", "profile"
)
EXPORT_STREAMS = (
    "listening_history", "podcast_listening", "audiobook_listening", "saved_tracks", "playlists",
    "profile",
)
SPOTIFY_STREAMS = tuple(dict.fromkeys(API_STREAMS + EXPORT_STREAMS))
LISTENS = ("listening_history", "podcast_listening", "audiobook_listening")
FIXTURES = Path(__file__).parent / "fixtures"


def shared(name: str) -> StreamDefinition | None:
    document = definition_documents().get(name)
    return parse_definition(document) if document is not None else None


def manifest_document(folder: str) -> Any:
    return json.loads((CONNECTORS / folder / "manifest.json").read_text("utf-8"))


@pytest.mark.parametrize("name", SPOTIFY_STREAMS)
def test_definition_parses_and_is_strict(name: str) -> None:
    document = definition_documents()[name]
    definition = parse_definition(document)
    assert definition.name == name
    assert definition.version == (2 if name == "listening_history" else 1)
    schema = document["schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(definition.primary_key) <= set(schema["required"])
    assert definition.description


def test_definition_details() -> None:
    for name in LISTENS:
        listens = parse_definition(definition_documents()[name])
        assert listens.semantics == "append_only" and listens.primary_key == ("play_id",)
        assert listens.cursor_field == listens.consent_time_field == "played_at"
        assert "played_at_precision" in listens.schema["required"]
    playlists = parse_definition(definition_documents()["playlists"])
    assert playlists.cursor_field is None and "name:" in playlists.description
    for name in ("saved_tracks", "saved_shows", "saved_episodes", "playlists", "profile"):
        assert parse_definition(definition_documents()[name]).semantics == "mutable_state"


def test_listening_history_version_2_is_compatible_with_version_1() -> None:
    """A client or connector written against version 1 still finds every field it knew, with
    its type; version 2 adds `played_at_precision` and derives `play_id` anew."""
    version_1 = parse_definition(json.loads((FIXTURES / "listening_history_v1.json").read_text()))
    version_2 = parse_definition(definition_documents()["listening_history"])
    check_compatible(version_2, version_1, "spotify")
    assert set(version_2.fields) - set(version_1.fields) == {"played_at_precision"}


def test_schemas_reject_nulls_and_unknown_fields() -> None:
    problem = record_validator(parse_definition(definition_documents()["listening_history"]))
    good = {
        "play_id": "0123456789abcdef0123",
        "played_at": "2025-01-01T10:00:00.000Z",
        "played_at_precision": "minute",
        "track_name": "Song",
        "artist_name": "Band",
    }
    assert problem(good) is None
    for bad in (
        {**good, "ms_played": None},
        {**good, "duration_ms": 1},
        {**good, "played_at": "2025-01-01T10:00:00+02:00"},
        {**good, "played_at_precision": "hour"},
        {k: v for k, v in good.items() if k != "artist_name"},
        {k: v for k, v in good.items() if k != "played_at_precision"},
    ):
        assert problem(bad) is not None, bad


@pytest.mark.parametrize(
    ("folder", "key", "method", "streams"),
    [
        ("spotify", "spotify", "provider_api", API_STREAMS),
        ("spotify_export", "spotify-export", "owner_artifact", EXPORT_STREAMS),
    ],
)
def test_manifest_parses(folder: str, key: str, method: str, streams: tuple[str, ...]) -> None:
    manifest = parse_manifest(manifest_document(folder), shared, builtin=True)
    assert manifest.connector_key == key and manifest.acquisition_method == method
    assert manifest.source == "spotify" and manifest.identity_claim == "spotify_user_id"
    assert tuple(s.name for s in manifest.streams) == streams
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


@pytest.mark.parametrize(
    ("rule_file", "stream", "fields"),
    [
        ("spotify-play.json", "listening_history", ("artist_name", "track_name")),
        ("spotify-episode-play.json", "podcast_listening", ("show_name", "episode_name")),
    ],
)
def test_record_rules_pair_minute_listens_with_precise_ones(
    rule_file: str, stream: str, fields: tuple[str, ...]
) -> None:
    rule = parse_record_rule(json.loads((BUILTIN / "rules" / rule_file).read_text("utf-8")))
    assert (rule.stream, rule.time_field, rule.window_seconds) == (stream, "played_at", 60)
    assert rule.match_fields == fields
    assert (rule.coarse_field, rule.coarse_values) == ("played_at_precision", ("minute",))
    assert rule.precision_order == ("minute", "second", "millisecond")
    assert Catalog.load().record_rule(stream) == rule


@pytest.mark.parametrize(
    "order",
    [["second", "millisecond"], ["minute", "minute"], "minute", [1, 2]],
)
def test_a_precision_order_lists_distinct_values_including_the_coarse_ones(order: Any) -> None:
    raw = json.loads((BUILTIN / "rules" / "spotify-play.json").read_text("utf-8"))
    with pytest.raises(InvalidRule) as caught:
        parse_record_rule({**raw, "precision_order": order})
    assert caught.value.param == "precision_order"


def test_catalog_loads_the_builtins() -> None:
    catalog = Catalog.load()
    assert {"spotify", "spotify-export"} <= set(catalog.manifests)
    assert set(SPOTIFY_STREAMS) <= set(catalog.definitions)
    rule = catalog.rules["spotify-account"]
    assert set(rule.connector_keys) == {"spotify", "spotify-export"}
    assert catalog.linked_connectors("spotify", "spotify_user_id") == ["spotify", "spotify-export"]
