"""Fixtures: an owner home, its server on a loopback URL and the Spotify double with the app
`CLIENT_ID` registered (refresh tokens rotate unless a test asks otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.connectors.spotify import connector as spotify_connector
from ownstream.dev.spotify_data import SpotifyUser, generate_catalog, generate_user
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.home import Home
from ownstream.owner import AccessOperations

from . import CLIENT_ID, REDIRECT_URI, SERVER, OAuthLab

USERS = ("ann", "ben")
_SERVER_ENV = (
    "OWNSTREAM_HOME",
    "OWNSTREAM_SECRET_KEY",
    "OWNSTREAM_CONNECTOR_TRANSPORT",
    "OWNSTREAM_SERVER_URL",
)


@pytest.fixture
def users() -> dict[str, SpotifyUser]:
    catalog = generate_catalog(seed=21, artists=20)
    return {
        name: generate_user(name, seed=i + 1, plays=80, catalog=catalog)
        for i, name in enumerate(USERS)
    }


@pytest.fixture
def rotate() -> bool:
    return True


@pytest.fixture
def double(users: dict[str, SpotifyUser], rotate: bool) -> Iterator[SpotifyDouble]:
    with SpotifyDouble(list(users.values()), rotate_refresh_tokens=rotate) as running:
        running.register_client(CLIENT_ID, [REDIRECT_URI])
        yield running


@pytest.fixture
def lab(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    double: SpotifyDouble,
    users: dict[str, SpotifyUser],
) -> Iterator[OAuthLab]:
    for name in _SERVER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(spotify_connector, "_sleep", lambda seconds: None)
    home = Home(tmp_path / "home")
    token, _ = AccessOperations(home).mint_owner_token()
    http = TestClient(create_app(home), base_url=SERVER)
    created = OAuthLab(tmp_path, double, users, home, http, token)
    yield created
    created.close()
