"""The Web API connector against the Spotify double: paging, cursors, failures, credentials."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ownstream.connectors.spotify import connector
from ownstream.connectors.spotify import play_id as make_play_id
from ownstream.connectors.spotify.connector import collect
from ownstream.dev.spotify_data import (
    SpotifyUser,
    add_plays,
    epoch_ms,
    generate_catalog,
    generate_user,
)
from ownstream.dev.spotify_double import SpotifyDouble

from . import done, of_type, records, run, start_message

USER = "alice.k"
CLIENT_ID, CLIENT_SECRET = "client-abc", "secret-xyz"
RECENT = "/v1/me/player/recently-played"


@pytest.fixture
def user() -> SpotifyUser:
    return generate_user(USER, seed=7, plays=300, catalog=generate_catalog(seed=5, artists=30))


@pytest.fixture
def double(user: SpotifyUser) -> Iterator[SpotifyDouble]:
    with SpotifyDouble([user]) as running:
        yield running


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record back-off instead of waiting, so failure tests stay fast."""
    waited: list[float] = []
    monkeypatch.setattr(connector, "_sleep", waited.append)
    return waited


def env_for(double: SpotifyDouble, token: str, **extra: str) -> dict[str, str]:
    return {
        "SPOTIFY_ACCESS_TOKEN": token,
        "SPOTIFY_API_BASE_URL": double.base_url,
        "SPOTIFY_TOKEN_URL": f"{double.base_url}/api/token",
        **extra,
    }


def refresh_env(double: SpotifyDouble, token: str, secret: str = CLIENT_SECRET) -> dict[str, str]:
    refresh = double.issue_refresh_token(USER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    return env_for(
        double,
        token,
        SPOTIFY_REFRESH_TOKEN=refresh,
        SPOTIFY_CLIENT_ID=CLIENT_ID,
        SPOTIFY_CLIENT_SECRET=secret,
    )


def paths(double: SpotifyDouble) -> list[str]:
    return [target.split("?")[0] for _, target in double.requests]


def states(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {m["stream"]: m["cursor"] for m in of_type(messages, "STATE")}


def skips(messages: list[dict[str, Any]], stream: str) -> list[dict[str, Any]]:
    return [m for m in of_type(messages, "SKIP_RESULT") if m["stream"] == stream]


def test_full_refresh_collects_every_stream_once(
    double: SpotifyDouble, user: SpotifyUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages make every collection span several pages and follow `next`.
    monkeypatch.setattr(connector, "PAGE_SIZE", 7)
    monkeypatch.setattr(connector, "PLAYLIST_ITEMS_PAGE_SIZE", 9)
    messages = run(collect, start_message(), env_for(double, double.issue_token(USER)))

    assert messages[0] == {"type": "IDENTITY", "claim": "spotify_user_id", "value": USER}
    assert done(messages)["status"] == "succeeded"

    (profile,) = records(messages, "profile")
    assert profile["user_id"] == USER and profile["email"] == user.email
    assert profile["country"] == user.country and isinstance(profile["followers"], int)
    assert "account_created" not in profile  # the API does not say

    saved = records(messages, "saved_tracks")
    assert sorted(s["track_uri"] for s in saved) == sorted(s.track.uri for s in user.saved_tracks)
    by_uri = {s.track.uri: s for s in user.saved_tracks}
    for item in saved:
        saved_track = by_uri[item["track_uri"]]
        assert item["duration_ms"] == saved_track.track.duration_ms
        assert item["added_at"].endswith("Z")
        assert item["album_name"] == saved_track.track.album.name

    playlists = {p["playlist_id"]: p for p in records(messages, "playlists")}
    assert set(playlists) == {p.id for p in user.playlists}
    for expected in user.playlists:
        got = playlists[expected.id]
        assert [i["track_uri"] for i in got["items"]] == [i.track.uri for i in expected.items]
        assert got["item_count"] == len(expected.items)
        assert got["owner_id"] == USER and got["snapshot_id"] == expected.snapshot_id
        assert all(i["added_at"].endswith("Z") for i in got["items"])

    # Each page was asked for exactly once.
    targets = [target for _, target in double.requests]
    assert len(targets) == len(set(targets))

    history = records(messages, "listening_history")
    window = user.plays[-50:]
    assert [h["played_at"] for h in history] == [
        p.played_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{p.played_at.microsecond // 1000:03d}Z"
        for p in reversed(window)
    ]
    assert all("ms_played" not in h for h in history)  # the API does not report it
    assert states(messages) == {"listening_history": {"after": epoch_ms(window[-1].played_at)}}
    last_history = max(
        i
        for i, m in enumerate(messages)
        if m["type"] == "RECORD" and m["stream"] == "listening_history"
    )
    assert messages.index(of_type(messages, "STATE")[0]) > last_history


def test_identify_mode_only_identifies(double: SpotifyDouble) -> None:
    env = env_for(double, double.issue_token(USER))
    messages = run(collect, start_message(mode="identify"), env)
    assert [m["type"] for m in messages] == ["IDENTITY", "DONE"]
    assert done(messages)["status"] == "succeeded"
    assert paths(double) == ["/v1/me"]


def test_scope_limits_requests_and_records(double: SpotifyDouble) -> None:
    start = start_message(streams=["listening_history"])
    messages = run(collect, start, env_for(double, double.issue_token(USER)))
    assert {m["stream"] for m in of_type(messages, "RECORD")} == {"listening_history"}
    assert set(paths(double)) == {"/v1/me", RECENT}


def test_time_range_filters_plays(double: SpotifyDouble, user: SpotifyUser) -> None:
    since = user.plays[-10].played_at
    start = start_message(streams=["listening_history"])
    start["scope"]["streams"][0]["time_range"] = {"since": since.isoformat()}
    messages = run(collect, start, env_for(double, double.issue_token(USER)))
    assert len(records(messages, "listening_history")) == 10


def test_incremental_run_fetches_only_new_plays(
    double: SpotifyDouble, user: SpotifyUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connector, "PAGE_SIZE", 4)
    token = double.issue_token(USER)
    first = run(collect, start_message(streams=["listening_history"]), env_for(double, token))
    cursor = states(first)["listening_history"]

    added = add_plays(user, 9, seed=3)
    double.requests.clear()
    second = run(
        collect,
        start_message(mode="incremental", streams=["listening_history"], state=states(first)),
        env_for(double, token),
    )
    history = records(second, "listening_history")
    expected = {
        make_play_id(p.played_at, "millisecond", p.track.artists[0].name, p.track.name)
        for p in added
    }
    assert {h["play_id"] for h in history} == expected and len(history) == 9
    assert states(second) == {"listening_history": {"after": epoch_ms(added[-1].played_at)}}
    assert f"after={cursor['after']}" in double.requests[1][1]
    assert not skips(second, "listening_history")

    # Nothing new: no records, and the cursor stays where it was.
    third = run(
        collect,
        start_message(mode="incremental", streams=["listening_history"], state=states(second)),
        env_for(double, token),
    )
    assert records(third, "listening_history") == []
    assert states(third) == states(second)


def test_incremental_run_past_the_window_reports_a_gap(
    double: SpotifyDouble, user: SpotifyUser
) -> None:
    token = double.issue_token(USER)
    state = {"listening_history": {"after": epoch_ms(user.plays[-1].played_at)}}
    add_plays(user, 60, seed=4)
    messages = run(
        collect,
        start_message(mode="incremental", streams=["listening_history"], state=state),
        env_for(double, token),
    )
    assert len(records(messages, "listening_history")) == 50
    (gap,) = skips(messages, "listening_history")
    assert gap["reason"] == "history_window_exceeded"
    assert states(messages)["listening_history"] == {"after": epoch_ms(user.plays[-1].played_at)}


def test_rate_limit_honours_retry_after(
    double: SpotifyDouble, user: SpotifyUser, sleeps: list[float]
) -> None:
    double.inject_fault("/v1/me/tracks", 429, times=2, retry_after=1)
    messages = run(collect, start_message(), env_for(double, double.issue_token(USER)))
    assert sleeps == [1.0, 1.0]
    assert done(messages)["status"] == "succeeded"
    assert len(records(messages, "saved_tracks")) == len(user.saved_tracks)
    assert not of_type(messages, "SKIP_RESULT")


def test_rate_limit_wait_is_capped(double: SpotifyDouble, sleeps: list[float]) -> None:
    double.inject_fault("/v1/me/playlists", 429, times=1, retry_after=3600)
    env = env_for(double, double.issue_token(USER), SPOTIFY_MAX_RETRY_AFTER="2")
    messages = run(collect, start_message(), env)
    assert sleeps == [2.0] and done(messages)["status"] == "succeeded"


def test_real_wait_with_retry_after_zero(double: SpotifyDouble, user: SpotifyUser) -> None:
    double.inject_fault("/v1/me/tracks", 429, times=1, retry_after=0)
    messages = run(collect, start_message(), env_for(double, double.issue_token(USER)))
    assert len(records(messages, "saved_tracks")) == len(user.saved_tracks)


def test_persistent_rate_limit_is_a_gap_for_that_stream(
    double: SpotifyDouble, user: SpotifyUser, sleeps: list[float]
) -> None:
    double.inject_fault("/v1/me/tracks", 429, times=5, retry_after=0)
    messages = run(collect, start_message(), env_for(double, double.issue_token(USER)))
    assert done(messages)["status"] == "succeeded"
    (gap,) = skips(messages, "saved_tracks")
    assert gap["reason"] == "rate_limited"
    assert gap["recovery_hint"] == {"action": "retry_by_runtime", "retryable": True}
    assert len(sleeps) == 4
    assert len(records(messages, "playlists")) == len(user.playlists)
    assert "saved_tracks" not in states(messages)


def test_outage_is_a_gap_and_other_streams_continue(
    double: SpotifyDouble, user: SpotifyUser, sleeps: list[float]
) -> None:
    double.inject_fault(RECENT, 503, times=3)
    messages = run(collect, start_message(), env_for(double, double.issue_token(USER)))
    assert done(messages)["status"] == "succeeded"
    (gap,) = skips(messages, "listening_history")
    assert gap["reason"] == "upstream_unavailable"
    assert gap["recovery_hint"]["action"] == "retry_by_runtime"
    assert records(messages, "listening_history") == []
    assert "listening_history" not in states(messages)  # no checkpoint for a failed stream
    assert sleeps == [0.2, 0.4]
    assert len(records(messages, "saved_tracks")) == len(user.saved_tracks)
    assert len(records(messages, "playlists")) == len(user.playlists)


def test_transient_outage_is_retried(double: SpotifyDouble, sleeps: list[float]) -> None:
    double.inject_fault("/v1/playlists/", 502, times=2)
    messages = run(collect, start_message(), env_for(double, double.issue_token(USER)))
    assert not of_type(messages, "SKIP_RESULT") and sleeps == [0.2, 0.4]


def test_unreachable_api_fails_the_run(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"SPOTIFY_ACCESS_TOKEN": "tok", "SPOTIFY_API_BASE_URL": f"http://127.0.0.1:{port}"}
    messages = run(collect, start_message(), env)
    assert [m["type"] for m in messages] == ["DONE"]
    error = done(messages)["error"]
    assert error["code"] == "upstream_unavailable" and error["retryable"] is True


def test_rejected_token_fails_before_the_stream_checkpoints(double: SpotifyDouble) -> None:
    token = double.issue_token(USER)
    double.inject_fault("/v1/me/tracks", 401)
    messages = run(collect, start_message(), env_for(double, token))
    final = done(messages)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "credentials_invalid"
    assert final["error"]["recovery_hint"]["action"] == "refresh_credentials"
    assert "saved_tracks" not in states(messages)
    assert records(messages, "saved_tracks") == [] and records(messages, "playlists") == []
    assert token not in json.dumps(messages)


def test_expired_token_without_refresh_fails_with_no_identity(double: SpotifyDouble) -> None:
    token = double.issue_token(USER)
    double.expire_token(token)
    messages = run(collect, start_message(), env_for(double, token))
    assert [m["type"] for m in messages] == ["DONE"]
    assert done(messages)["error"]["recovery_hint"]["action"] == "refresh_credentials"


def test_missing_token_is_a_credentials_error() -> None:
    messages = run(collect, start_message(), {})
    assert done(messages)["error"]["code"] == "credentials_missing"


def test_refresh_token_recovers_an_expired_access_token(
    double: SpotifyDouble, user: SpotifyUser
) -> None:
    token = double.issue_token(USER)
    double.expire_token(token)
    env = refresh_env(double, token)
    messages = run(collect, start_message(), env)
    assert done(messages)["status"] == "succeeded"
    assert double.requests.count(("POST", "/api/token")) == 1
    assert len(records(messages, "saved_tracks")) == len(user.saved_tracks)
    emitted = json.dumps(messages)
    for secret in (token, env["SPOTIFY_REFRESH_TOKEN"], CLIENT_SECRET):
        assert secret not in emitted


def test_refresh_with_a_wrong_client_secret_fails(double: SpotifyDouble) -> None:
    token = double.issue_token(USER)
    double.expire_token(token)
    messages = run(collect, start_message(), refresh_env(double, token, secret="wrong"))
    error = done(messages)["error"]
    assert error["code"] == "credentials_invalid"
    assert error["recovery_hint"]["action"] == "refresh_credentials"
    assert "wrong" not in json.dumps(messages)


def test_refresh_is_tried_once(double: SpotifyDouble) -> None:
    double.inject_fault("/v1/me", 401, times=2)
    messages = run(collect, start_message(), refresh_env(double, double.issue_token(USER)))
    assert done(messages)["error"]["code"] == "credentials_invalid"
    assert double.requests.count(("POST", "/api/token")) == 1


def test_paging_link_to_another_host_is_not_followed(double: SpotifyDouble) -> None:
    api = connector._Api(env_for(double, "tok"))
    try:
        with pytest.raises(connector._StreamGap) as caught:
            api.get("https://elsewhere.example/v1/me/tracks?offset=50")
        assert caught.value.reason == "unexpected_upstream_response"
    finally:
        api.close()
    assert double.requests == []


def test_play_id_truncates_to_the_second_and_ignores_case() -> None:
    at = datetime(2025, 3, 1, 12, 34, 56, 789000, tzinfo=UTC)
    second = datetime(2025, 3, 1, 12, 34, 56, tzinfo=UTC)
    minute = datetime(2025, 3, 1, 12, 34, tzinfo=UTC)
    key = make_play_id(at, "millisecond", "The Owls", "Night Café")
    assert key == make_play_id(second, "second", "THE OWLS", "night café")  # API = extended
    assert key != make_play_id(at, "millisecond", "The Owls", "Day Café")
    assert key == hashlib.sha1("2025-03-01T12:34:56|the owls|night café".encode()).hexdigest()[:20]
    coarse = make_play_id(minute, "minute", "The Owls", "Night Café")
    assert coarse == hashlib.sha1("2025-03-01T12:34|the owls|night café".encode()).hexdigest()[:20]
    assert coarse != make_play_id(minute, "second", "The Owls", "Night Café")
    assert make_play_id(minute, "minute", "The Owls", "Night Café", ordinal=2) == (
        hashlib.sha1("2025-03-01T12:34|the owls|night café|#2".encode()).hexdigest()[:20]
    )


def test_saved_shows_and_episodes(double: SpotifyDouble, user: SpotifyUser) -> None:
    start = start_message(streams=["saved_shows", "saved_episodes"])
    messages = run(collect, start, env_for(double, double.issue_token(USER)))
    shows = {s["show_uri"]: s for s in records(messages, "saved_shows")}
    assert set(shows) == {s.show.uri for s in user.saved_shows}
    for saved_show in user.saved_shows:
        got = shows[saved_show.show.uri]
        assert (got["show_name"], got["publisher"]) == (
            saved_show.show.name, saved_show.show.publisher
        )
        assert got["added_at"] == saved_show.added_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    episodes = {e["episode_uri"]: e for e in records(messages, "saved_episodes")}
    assert set(episodes) == {s.episode.uri for s in user.saved_episodes}
    for saved_episode in user.saved_episodes:
        got = episodes[saved_episode.episode.uri]
        assert got["show_name"] == saved_episode.episode.show.name
        assert got["resume_position_ms"] == saved_episode.resume_position_ms
        assert got["fully_played"] is saved_episode.fully_played
        assert got["release_date"] == saved_episode.episode.release_date
    assert set(paths(double)) == {"/v1/me", "/v1/me/shows", "/v1/me/episodes"}


def test_a_malformed_play_is_rejected_and_the_rest_collected(
    double: SpotifyDouble, user: SpotifyUser
) -> None:
    def break_two(body: Any) -> None:
        body["items"][3]["played_at"] = None
        body["items"][5]["track"]["artists"] = []

    double.edit_answers(RECENT, break_two)
    start = start_message(streams=["listening_history"])
    messages = run(collect, start, env_for(double, double.issue_token(USER)))
    assert done(messages)["status"] == "succeeded"
    assert len(records(messages, "listening_history")) == 48
    rejected = [(m["reason"], m["key"], m["stream"]) for m in of_type(messages, "REJECT")]
    assert rejected == [
        ("missing_field", "recently-played/1#3", "listening_history"),
        ("not_an_object", "recently-played/1#5", "listening_history"),
    ]


def test_malformed_library_items_and_playlist_entries_are_rejected_alone(
    double: SpotifyDouble, user: SpotifyUser
) -> None:
    def break_saved(body: Any) -> None:
        body["items"][0]["added_at"] = "last tuesday"
        body["items"][1] = "not an item"
        body["items"][2]["track"] = {**body["items"][2]["track"], "type": "episode"}

    def break_playlist(body: Any) -> None:
        body["items"][0]["track"] = None  # unavailable in this market
        body["items"][1]["track"]["name"] = 42

    first = user.playlists[0]
    double.edit_answers("/v1/me/tracks", break_saved)
    double.edit_answers(f"/v1/playlists/{first.id}/", break_playlist)
    start = start_message(streams=["saved_tracks", "playlists"])
    messages = run(collect, start, env_for(double, double.issue_token(USER)))
    assert done(messages)["status"] == "succeeded"
    assert len(records(messages, "saved_tracks")) == len(user.saved_tracks) - 3
    rejected = {(m["stream"], m["reason"], m["key"]) for m in of_type(messages, "REJECT")}
    assert rejected == {
        ("saved_tracks", "invalid_time", "/v1/me/tracks#0"),
        ("saved_tracks", "not_an_object", "/v1/me/tracks#1"),
        ("playlists", "wrong_type", f"{first.id}#1"),
    }
    assert {(m["reason"], m["count"]) for m in of_type(messages, "OMIT")} == {
        ("saved_tracks_item_not_modelled", 1),
        ("playlist_item_unavailable", 1),
    }
    playlist = next(p for p in records(messages, "playlists") if p["playlist_id"] == first.id)
    assert playlist["item_count"] == len(first.items)
    assert len(playlist["items"]) == len(first.items) - 2
