"""Fixtures: a fresh owner home with the owner API, the CLI and a Spotify double of 3 users."""

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

from . import Lab

USERS = ("ann", "ben", "cy")
# Server variables a test must not inherit from the machine running it.
_SERVER_ENV = (
    "OWNSTREAM_HOME",
    "OWNSTREAM_SECRET_KEY",
    "OWNSTREAM_CONNECTOR_TRANSPORT",
    "SPOTIFY_ACCESS_TOKEN",
)


@pytest.fixture
def users() -> dict[str, SpotifyUser]:
    catalog = generate_catalog(seed=11, artists=30)
    return {
        name: generate_user(name, seed=i + 1, plays=200, catalog=catalog)
        for i, name in enumerate(USERS)
    }


@pytest.fixture
def double(users: dict[str, SpotifyUser]) -> Iterator[SpotifyDouble]:
    with SpotifyDouble(list(users.values())) as running:
        yield running


@pytest.fixture
def lab(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    double: SpotifyDouble,
    users: dict[str, SpotifyUser],
) -> Iterator[Lab]:
    for name in _SERVER_ENV:
        monkeypatch.delenv(name, raising=False)
    # The connector's retry back-off would only slow 5xx tests down.
    monkeypatch.setattr(spotify_connector, "_sleep", lambda seconds: None)
    home = Home(tmp_path / "home")
    token, _ = AccessOperations(home).mint_owner_token()
    created = Lab(tmp_path, double, users, home, TestClient(create_app(home)), token)
    yield created
    created.close()
