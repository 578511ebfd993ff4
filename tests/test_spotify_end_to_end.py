"""The flagship scenario through the whole stack: Spotify API + archives, the identity rule,
and a client reading `listening_history` across three connections."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.connectors.spotify import connector, play_id
from ownstream.dev import demo
from ownstream.dev.spotify_data import (
    SpotifyUser,
    add_plays,
    generate_catalog,
    generate_user,
    write_archive,
)
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.errors import ArtifactAlreadyImported, IdentityMismatch, IdentityUnproven
from ownstream.grants.issue import issue_grant
from ownstream.home import Home
from ownstream.model import ReadScope
from ownstream.owner import ConnectionOperations

RECENT = "/v1/me/player/recently-played"
YEAR = timedelta(days=365)


@pytest.fixture
def users() -> dict[str, SpotifyUser]:
    catalog = generate_catalog(seed=3, artists=40)
    return {
        name: generate_user(name, seed=seed, plays=400, years=2.0, catalog=catalog)
        for name, seed in (("alice.k", 1), ("bob-listens", 2), ("carol.old", 3))
    }


@pytest.fixture
def double(users: dict[str, SpotifyUser]) -> Iterator[SpotifyDouble]:
    with SpotifyDouble([users["alice.k"], users["bob-listens"]]) as running:
        yield running


@pytest.fixture
def ops(tmp_path: Path) -> ConnectionOperations:
    return ConnectionOperations(Home(tmp_path / "home"))


def connect(
    ops: ConnectionOperations, double: SpotifyDouble, user_id: str, connection_id: str | None = None
) -> str:
    result = ops.connect(
        "spotify",
        secrets={"access_token": double.issue_token(user_id)},
        settings={"api_base_url": double.base_url, "token_url": f"{double.base_url}/api/token"},
        connection_id=connection_id,
    )
    return result.connection.connection_id


def test_api_and_archive_of_one_account_join_by_rule_and_keep_their_methods(
    ops: ConnectionOperations, double: SpotifyDouble, users: dict[str, SpotifyUser], tmp_path: Path
) -> None:
    alice = connect(ops, double, "alice.k")
    [api_run] = ops.run(alice)
    assert api_run.status == "succeeded" and api_run.tally.new > 0
    archive = write_archive(users["alice.k"], tmp_path / "a", kind="extended")
    receipt = ops.import_artifact("spotify-export", archive).receipt
    assert receipt.connection_id == alice
    connection = ops.home.store.connection(alice)
    assert {(p.connector_key, p.acquisition_method, p.rule_id) for p in connection.paths} == {
        ("spotify", "provider_api", None),
        ("spotify-export", "owner_artifact", "spotify-account"),
    }
    methods = {r.run_id: r.acquisition_method for r in ops.home.store.runs(alice)}
    assert api_run.run_id is not None and methods[api_run.run_id] == "provider_api"
    assert methods[receipt.run_id] == "owner_artifact"
    coverage = {
        c.connector_key: c
        for c in ops.home.store.coverage(alice)
        if c.stream == "listening_history"
    }
    assert coverage["spotify"].window_start > coverage["spotify-export"].window_start  # type: ignore[operator]
    # plays both paths report are one record (both key it by its second), enriched by both,
    # with both in its provenance; every play is a record of its own
    counts = {c.stream: c.record_count for c in ops.home.store.stream_counts([alice])}
    assert counts["listening_history"] == len(set(_play_ids(users["alice.k"])))
    assert counts["listening_history"] == len(users["alice.k"].plays)
    assert counts["podcast_listening"] == len(users["alice.k"].episode_plays)
    assert receipt.counts["merged_with_existing"] == 50  # the API's recently-played window
    newest = ops.home.store.records_page(_scope(ops, alice), limit=1)[0][0]
    assert {"ms_played", "track_uri", "album_name"} <= set(newest.data)
    evidence = ops.home.store.record_provenance(alice, "listening_history", newest.record_key)
    assert {e.acquisition_method for e in evidence} == {"provider_api", "owner_artifact"}


def test_the_basic_history_meets_the_api_on_the_minute_in_either_order(
    ops: ConnectionOperations, double: SpotifyDouble, users: dict[str, SpotifyUser], tmp_path: Path
) -> None:
    """A basic-history play (to the minute) and the API's play (to the millisecond) of the same
    track in the same minute are one record, whichever path came first (spotify-play rule)."""
    alice, bob = users["alice.k"], users["bob-listens"]
    for user in (alice, bob):
        window = {(p.played_at.strftime("%H:%M %j"), p.track.name) for p in user.plays[-50:]}
        assert len(window) == 50  # no same-minute repeat: every pairing is unambiguous
    year = len([p for p in alice.plays if p.played_at > alice.plays[-1].played_at - YEAR])

    # API first: each basic entry of those 50 plays fills the precise record
    api_first = connect(ops, double, "alice.k")
    ops.run(api_first)
    receipt = ops.import_artifact("spotify-export", write_archive(alice, tmp_path / "a")).receipt
    liked = [s for s in alice.saved_tracks if s.added_at <= alice.plays[-1].played_at]
    # merged: those 50 plays, the profile and the Liked Songs the API had collected already
    assert receipt.counts["merged_with_existing"] == 50 + 1 + len(liked)
    plays = _records(ops, api_first)
    assert len(plays) == year
    filled = [p for p in plays if p["played_at_precision"] == "millisecond"]
    assert len(filled) == 50 and all("ms_played" in p for p in filled)

    # archive first: the API's precise play absorbs the minute record it matches
    archive_first = ops.import_artifact(
        "spotify-export", write_archive(bob, tmp_path / "b")
    ).receipt.connection_id
    before = {p["play_id"] for p in _records(ops, archive_first)}
    connect(ops, double, "bob-listens", connection_id=archive_first)
    [run] = ops.run(archive_first)
    assert run.status == "succeeded"
    plays = _records(ops, archive_first)
    assert len(plays) == len(before)  # one record a play: the minute records were re-keyed
    precise = [p for p in plays if p["played_at_precision"] == "millisecond"]
    assert len(precise) == 50 and all("ms_played" in p for p in precise)
    assert len(before - {p["play_id"] for p in plays}) == 50


def test_other_accounts_and_unidentified_archives_stay_apart(
    ops: ConnectionOperations, double: SpotifyDouble, users: dict[str, SpotifyUser], tmp_path: Path
) -> None:
    alice, bob = connect(ops, double, "alice.k"), connect(ops, double, "bob-listens")
    assert alice != bob
    carol = ops.import_artifact(
        "spotify-export", write_archive(users["carol.old"], tmp_path / "c")
    ).receipt.connection_id
    anonymous_archive = write_archive(users["alice.k"], tmp_path / "x", include_identity=False)
    anonymous = ops.import_artifact("spotify-export", anonymous_archive).receipt.connection_id
    assert len({alice, bob, carol, anonymous}) == 4
    assert ops.home.store.connection(anonymous).identity is None
    # the owner's word cannot join another account, nor an unproven one
    other = write_archive(users["carol.old"], tmp_path / "c2", kind="extended")
    with pytest.raises(IdentityMismatch):
        ops.import_artifact("spotify-export", other, connection_id=alice)
    unproven = write_archive(users["bob-listens"], tmp_path / "b", include_identity=False)
    with pytest.raises(IdentityUnproven):
        ops.import_artifact("spotify-export", unproven, connection_id=alice)
    assert len(ops.home.store.connections()) == 4
    # the same bytes again are a duplicate of the first batch
    again = ops.import_artifact("spotify-export", anonymous_archive)
    assert again.status == "duplicate" and again.receipt.connection_id == anonymous
    with pytest.raises(ArtifactAlreadyImported):  # not silently "a duplicate" of another one
        ops.import_artifact("spotify-export", anonymous_archive, connection_id=carol)


def test_incremental_runs_fetch_only_new_plays(
    ops: ConnectionOperations, double: SpotifyDouble, users: dict[str, SpotifyUser]
) -> None:
    alice = connect(ops, double, "alice.k")
    [first] = ops.run(alice)
    assert first.collection_mode == "full_refresh"
    add_plays(users["alice.k"], 7, seed=9)
    double.requests.clear()
    [second] = ops.run(alice)
    assert second.collection_mode == "incremental"
    history = [t for m, t in double.requests if t.startswith(RECENT)]
    assert history and all("after=" in t or "before=" in t for t in history)
    assert second.tally.new == 7, second.tally


def test_rate_limits_are_honoured_and_rejected_tokens_fail_with_a_gap(
    ops: ConnectionOperations, double: SpotifyDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connector, "_sleep", lambda seconds: None)
    alice = connect(ops, double, "alice.k")
    double.inject_fault(RECENT, 429, times=2, retry_after=1)
    [limited] = ops.run(alice)
    assert limited.status == "succeeded"
    token = double.issue_token("alice.k")
    ops.connect(
        "spotify",
        secrets={"access_token": token},
        settings={"api_base_url": double.base_url},
        connection_id=alice,
    )
    double.expire_token(token)
    state_before = ops.home.store.connection_state(alice, "spotify")
    [rejected] = ops.run(alice)
    assert rejected.status == "failed"
    assert any(g.recovery_action == "refresh_credentials" for g in rejected.known_gaps)
    assert ops.home.store.connection_state(alice, "spotify") == state_before
    assert ops.health(ops.home.store.connection(alice)).state == "blocked"


def test_a_client_reads_listening_history_across_three_connections(
    ops: ConnectionOperations, double: SpotifyDouble, users: dict[str, SpotifyUser], tmp_path: Path
) -> None:
    alice, bob = connect(ops, double, "alice.k"), connect(ops, double, "bob-listens")
    ops.run(alice)
    ops.run(bob)
    ops.import_artifact("spotify-export", write_archive(users["alice.k"], tmp_path / "a"))
    carol = ops.import_artifact(
        "spotify-export", write_archive(users["carol.old"], tmp_path / "c")
    ).receipt.connection_id
    home = ops.home
    grant, token = issue_grant(
        home.store, home.catalog, "app", {"streams": [{"name": "listening_history"}]}
    )
    assert set(grant.streams[0].instance_ids) == {alice, bob, carol}
    client = TestClient(create_app(home))
    headers = {"Authorization": f"Bearer {token}"}
    seen: dict[str, set[str]] = {alice: set(), bob: set(), carol: set()}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/streams/listening_history/records", params=params, headers=headers)
        assert page.status_code == 200
        body = page.json()
        for record in body["data"]:
            assert record["id"] not in seen[record["connection_id"]]
            seen[record["connection_id"]].add(record["id"])
        cursor = body.get("next_cursor")
        if not body["has_more"]:
            break
    for connection_id, ids in seen.items():
        expected = {r["record_key"] for r in _keys(home, connection_id)}
        assert ids == expected and ids
    assert b"spotify-export" not in page.content and b"owner_artifact" not in page.content


def test_the_demo_builds_what_it_prints(tmp_path: Path) -> None:
    result = demo.build(tmp_path / "demo")
    home = result["home"]
    assert isinstance(home, Home)
    connections = home.store.connections()
    assert len(connections) == 3
    text = demo.banner(result, 8765)
    for connection in connections:
        assert connection.connection_id in text
    client = TestClient(create_app(home))
    response = client.get(
        "/v1/streams", headers={"Authorization": f"Bearer {result['client_token']}"}
    )
    assert {e["connection_id"] for e in response.json()["data"]} == {
        c.connection_id for c in connections
    }
    link = demo.console_link(home, "http://testserver")
    signed_in = client.get(link.removeprefix("http://testserver"))
    assert signed_in.status_code == 200 and "Your connections" in signed_in.text


def _records(ops: ConnectionOperations, connection_id: str) -> list[dict[str, Any]]:
    page, _ = ops.home.store.records_page(_scope(ops, connection_id), limit=100_000)
    return [r.data for r in page]


def _scope(ops: ConnectionOperations, connection_id: str) -> ReadScope:
    definition = ops.home.catalog.definition("listening_history")
    return ReadScope(definition, (connection_id,), definition.fields)


def _play_ids(user: SpotifyUser) -> list[str]:
    return [
        play_id(p.played_at, "second", p.track.artists[0].name, p.track.name) for p in user.plays
    ]


def _keys(home: Home, connection_id: str) -> list[dict[str, str]]:
    definition = home.catalog.definition("listening_history")
    scope = ReadScope(definition, (connection_id,), definition.fields)
    page, _ = home.store.records_page(scope, limit=100_000)
    return [{"record_key": r.record_key} for r in page]
