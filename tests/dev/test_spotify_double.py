"""The Web API double must page, authenticate and fail the way Spotify documents."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from ownstream.dev.spotify_data import (
    SpotifyUser,
    add_plays,
    epoch_ms,
    generate_catalog,
    generate_user,
)
from ownstream.dev.spotify_double import SpotifyDouble, serve

RECENT = "/v1/me/player/recently-played"


@pytest.fixture
def users() -> list[SpotifyUser]:
    catalog = generate_catalog(seed=11, artists=40)
    return [
        generate_user("alice.k", seed=1, plays=300, catalog=catalog),
        generate_user("bob", seed=2, plays=120, catalog=catalog),
    ]


@pytest.fixture
def double(users: list[SpotifyUser]) -> Iterator[SpotifyDouble]:
    with SpotifyDouble(users) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as http:
        yield http


def get(client: httpx.Client, url: str, token: str) -> Any:
    response = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def ms(played_at: str) -> int:
    return epoch_ms(datetime.fromisoformat(played_at.replace("Z", "+00:00")))


def test_me(double: SpotifyDouble, client: httpx.Client) -> None:
    me = get(client, f"{double.base_url}/v1/me", double.issue_token("alice.k"))
    assert me["id"] == "alice.k"
    assert me["type"] == "user" and me["uri"] == "spotify:user:alice.k"
    assert me["product"] == "premium" and me["images"] == []
    assert set(me["followers"]) == {"href", "total"}
    assert me["display_name"] == "Alice K"


def test_recently_played_pages_back_through_the_window(
    double: SpotifyDouble, client: httpx.Client, users: list[SpotifyUser]
) -> None:
    token = double.issue_token("alice.k")
    page = get(client, f"{double.base_url}{RECENT}", token)
    assert page["limit"] == 20 and len(page["items"]) == 20
    first = page["items"][0]
    assert first["context"] is None and first["track"]["type"] == "track"
    assert first["played_at"].endswith("Z") and len(first["played_at"]) == 24
    stamps = [ms(item["played_at"]) for item in page["items"]]
    assert stamps == sorted(stamps, reverse=True)
    assert page["cursors"] == {"after": str(stamps[0]), "before": str(stamps[-1])}

    seen = list(stamps)
    while page["next"]:
        page = get(client, page["next"], token)
        seen += [ms(item["played_at"]) for item in page["items"]]
    window = [epoch_ms(p.played_at) for p in users[0].plays[-50:]]
    assert seen == window[::-1]  # exactly the 50 most recent, never older ones


def test_after_cursor_returns_only_new_plays(double: SpotifyDouble, client: httpx.Client) -> None:
    token = double.issue_token("alice.k")
    page = get(client, f"{double.base_url}{RECENT}?limit=50", token)
    cursor = page["cursors"]["after"]
    empty = get(client, f"{double.base_url}{RECENT}?after={cursor}", token)
    assert empty["items"] == [] and empty["cursors"] is None and empty["next"] is None

    added = add_plays(double.user("alice.k"), 3, seed=4)
    fresh = get(client, f"{double.base_url}{RECENT}?after={cursor}&limit=50", token)
    assert [item["track"]["id"] for item in fresh["items"]] == [p.track.id for p in added[::-1]]
    assert fresh["cursors"]["after"] == str(epoch_ms(added[-1].played_at))


def test_before_cursor_and_parameter_errors(double: SpotifyDouble, client: httpx.Client) -> None:
    token = double.issue_token("alice.k")
    latest = get(client, f"{double.base_url}{RECENT}?limit=1", token)
    before = latest["cursors"]["before"]
    older = get(client, f"{double.base_url}{RECENT}?before={before}&limit=5", token)
    assert all(ms(item["played_at"]) < int(before) for item in older["items"])
    assert len(older["items"]) == 5
    for query in ("after=1&before=2", "limit=0", "limit=51", "after=soon"):
        response = client.get(
            f"{double.base_url}{RECENT}?{query}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["status"] == 400


def test_window_size_is_configurable(users: list[SpotifyUser], client: httpx.Client) -> None:
    with SpotifyDouble(users, recently_played_window=7) as small:
        page = get(client, f"{small.base_url}{RECENT}?limit=50", small.issue_token("bob"))
        assert len(page["items"]) == 7 and page["next"] is None


def test_saved_tracks_paging_visits_every_item_once(
    double: SpotifyDouble, client: httpx.Client, users: list[SpotifyUser]
) -> None:
    token = double.issue_token("alice.k")
    url: str | None = f"{double.base_url}/v1/me/tracks?limit=50"
    added_at: list[str] = []
    ids: list[str] = []
    while url:
        page = get(client, url, token)
        assert page["total"] == len(users[0].saved_tracks)
        assert (page["previous"] is None) == (page["offset"] == 0)
        ids += [item["track"]["id"] for item in page["items"]]
        added_at += [item["added_at"] for item in page["items"]]
        url = page["next"]
    assert sorted(ids) == sorted(s.track.id for s in users[0].saved_tracks)
    assert len(set(ids)) == len(ids)
    assert added_at == sorted(added_at, reverse=True)


def test_saved_shows_and_episodes_page_like_spotify(
    double: SpotifyDouble, client: httpx.Client, users: list[SpotifyUser]
) -> None:
    token, user = double.issue_token("alice.k"), users[0]
    shows = get(client, f"{double.base_url}/v1/me/shows?limit=2", token)
    assert shows["total"] == len(user.saved_shows) > 0 and shows["limit"] == 2
    show = shows["items"][0]["show"]
    newest = max(user.saved_shows, key=lambda s: s.added_at)
    assert show["uri"] == newest.show.uri == f"spotify:show:{show['id']}"
    assert (show["type"], show["name"], show["publisher"]) == (
        "show", newest.show.name, newest.show.publisher
    )
    assert show["total_episodes"] == newest.show.total_episodes

    url: str | None = f"{double.base_url}/v1/me/episodes?limit=3"
    seen: list[Any] = []
    while url:
        page = get(client, url, token)
        seen += page["items"]
        url = page["next"]
    assert len(seen) == len(user.saved_episodes) > 0
    assert [i["added_at"] for i in seen] == sorted((i["added_at"] for i in seen), reverse=True)
    by_uri = {s.episode.uri: s for s in user.saved_episodes}
    for item in seen:
        episode, saved = item["episode"], by_uri[item["episode"]["uri"]]
        assert episode["type"] == "episode" and episode["show"]["type"] == "show"
        assert episode["show"]["name"] == saved.episode.show.name
        assert episode["resume_point"] == {
            "fully_played": saved.fully_played,
            "resume_position_ms": saved.resume_position_ms,
        }
        assert episode["release_date_precision"] == "day"


def test_answers_can_be_edited_to_hand_out_malformed_items(
    double: SpotifyDouble, client: httpx.Client
) -> None:
    token = double.issue_token("alice.k")

    def null_time(body: Any) -> None:
        body["items"][0]["played_at"] = None

    double.edit_answers(RECENT, null_time)
    assert get(client, f"{double.base_url}{RECENT}", token)["items"][0]["played_at"] is None
    assert get(client, f"{double.base_url}{RECENT}", token)["items"][0]["played_at"]  # once


def test_playlists_and_their_items(
    double: SpotifyDouble, client: httpx.Client, users: list[SpotifyUser]
) -> None:
    token = double.issue_token("alice.k")
    page = get(client, f"{double.base_url}/v1/me/playlists?limit=2", token)
    listed = page["items"]
    while page["next"]:
        page = get(client, page["next"], token)
        listed += page["items"]
    assert [p["id"] for p in listed] == [p.id for p in users[0].playlists]
    first = listed[0]
    assert first["type"] == "playlist" and first["owner"]["id"] == "alice.k"
    assert first["tracks"]["total"] == len(users[0].playlists[0].items)

    url: str | None = f"{first['tracks']['href']}?limit=7"
    uris: list[str] = []
    while url:
        items = get(client, url, token)
        assert items["limit"] == 7
        for item in items["items"]:
            assert item["is_local"] is False and item["added_by"]["id"] == "alice.k"
            uris.append(item["track"]["uri"])
        url = items["next"]
    assert uris == [i.track.uri for i in users[0].playlists[0].items]
    via_items = get(client, f"{double.base_url}/v1/playlists/{first['id']}/items", token)
    assert via_items["limit"] == 100 and len(via_items["items"]) == len(uris)


def test_foreign_playlist_is_not_found(
    double: SpotifyDouble, client: httpx.Client, users: list[SpotifyUser]
) -> None:
    token = double.issue_token("alice.k")
    foreign = users[1].playlists[0].id
    response = client.get(
        f"{double.base_url}/v1/playlists/{foreign}/tracks",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


def test_unauthorized_requests(double: SpotifyDouble, client: httpx.Client) -> None:
    url = f"{double.base_url}/v1/me"
    assert client.get(url).status_code == 401
    unknown = client.get(url, headers={"Authorization": "Bearer nope"})
    assert unknown.json() == {"error": {"status": 401, "message": "Invalid access token"}}
    token = double.issue_token("alice.k")
    assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    double.expire_token(token)
    expired = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "The access token expired"
    stale = double.issue_token("alice.k", expires_in=0)
    assert client.get(url, headers={"Authorization": f"Bearer {stale}"}).status_code == 401


def test_rate_limit_with_retry_after(double: SpotifyDouble, client: httpx.Client) -> None:
    token = double.issue_token("alice.k", token="fixed-token")
    assert token == "fixed-token"
    double.inject_fault("/v1/me/player", 429, retry_after=7)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{double.base_url}/v1/me", headers=headers).status_code == 200
    limited = client.get(f"{double.base_url}{RECENT}", headers=headers)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.json() == {"error": {"status": 429, "message": "API rate limit exceeded"}}
    assert client.get(f"{double.base_url}{RECENT}", headers=headers).status_code == 200


def test_server_errors_are_injected_a_given_number_of_times(
    double: SpotifyDouble, client: httpx.Client
) -> None:
    headers = {"Authorization": f"Bearer {double.issue_token('alice.k')}"}
    double.inject_fault("/v1/me/tracks", 503, times=2)
    double.inject_fault("/v1/me/tracks", 502)
    statuses = [
        client.get(f"{double.base_url}/v1/me/tracks", headers=headers).status_code for _ in range(4)
    ]
    assert statuses == [503, 503, 502, 200]
    double.inject_fault("/v1", 500)
    failed = client.get(f"{double.base_url}/v1/me", headers=headers)
    assert failed.status_code == 500 and failed.json()["error"]["status"] == 500
    assert ("GET", "/v1/me/tracks") in double.requests
    assert len([r for r in double.requests if r[1] == "/v1/me/tracks"]) == 4


def test_refresh_token_exchange(double: SpotifyDouble, client: httpx.Client) -> None:
    refresh = double.issue_refresh_token("bob", client_id="app", client_secret="s3cret")
    token_url = f"{double.base_url}/api/token"
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    basic = client.post(token_url, data=form, auth=("app", "s3cret"))
    assert basic.status_code == 200
    body = basic.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert "user-read-recently-played" in body["scope"].split()
    assert get(client, f"{double.base_url}/v1/me", body["access_token"])["id"] == "bob"

    in_form = client.post(token_url, data={**form, "client_id": "app", "client_secret": "s3cret"})
    assert in_form.status_code == 200

    bad = client.post(token_url, data={**form, "refresh_token": "x"}, auth=("app", "s3cret"))
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    wrong_client = client.post(token_url, data=form, auth=("app", "other"))
    assert wrong_client.status_code == 400
    assert wrong_client.json()["error"] == "invalid_client"


def test_unknown_path_and_stop(users: list[SpotifyUser], client: httpx.Client) -> None:
    double = SpotifyDouble(users)
    base = double.start()
    token = double.issue_token("alice.k")
    missing = client.get(f"{base}/v1/nowhere", headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404
    double.stop()
    with pytest.raises(httpx.TransportError):
        client.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"})


def test_serve_accepts_fixed_tokens(users: list[SpotifyUser], client: httpx.Client) -> None:
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(
        target=serve,
        args=("127.0.0.1", 0, users, {"demo-token": "bob"}),
        kwargs={"on_ready": on_ready},
        daemon=True,
    )
    thread.start()
    assert ready.wait(5)
    assert get(client, f"{urls[0]}/v1/me", "demo-token")["id"] == "bob"
