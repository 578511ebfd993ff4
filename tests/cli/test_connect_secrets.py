"""`ownstream connect` without OAuth: secrets from stdin, a file or a hidden prompt, never argv."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ownstream.cli import connections
from ownstream.cli.main import app
from ownstream.credentials import fingerprint
from ownstream.dev.spotify_data import generate_catalog, generate_user
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.home import Home


@pytest.fixture
def double() -> Iterator[SpotifyDouble]:
    user = generate_user("ann", seed=1, plays=20, catalog=generate_catalog(seed=2, artists=5))
    with SpotifyDouble([user]) as running:
        yield running


def connect(home: Path, double: SpotifyDouble, *args: str, stdin: str = "") -> dict[str, object]:
    result = CliRunner().invoke(
        app,
        [
            "--home",
            str(home),
            "connect",
            "spotify",
            "--setting",
            f"api_base_url={double.base_url}",
            *args,
            "--json",
        ],
        input=stdin,
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


def stored_fingerprints(home: Path) -> dict[str, str]:
    store = Home(home).store
    [connection] = store.connections()
    return {c.name: c.fingerprint for c in store.credential_metadata(connection.connection_id)}


def test_a_secret_from_stdin_connects_and_is_stored_sealed(
    tmp_path: Path, double: SpotifyDouble
) -> None:
    token = double.issue_token("ann")
    payload = connect(tmp_path, double, "--secret-stdin", "access_token", stdin=token + "\n")
    assert payload["identity"] == {"claim": "spotify_user_id", "value": "ann"}
    assert token not in json.dumps(payload)
    assert stored_fingerprints(tmp_path) == {"access_token": fingerprint(token)}
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("ownstream.db*"))
    assert on_disk and token.encode() not in on_disk


def test_a_secret_from_a_file(tmp_path: Path, double: SpotifyDouble) -> None:
    token = double.issue_token("ann")
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(token + "\n")
    payload = connect(tmp_path / "home", double, "--secret-file", f"access_token={secret_file}")
    assert payload["created"] is True


def test_a_missing_secret_is_asked_for_at_a_hidden_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, bool]] = []

    def prompt(name: str, hide_input: bool = False) -> str:
        asked.append((name, hide_input))
        return "typed-" + name

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(typer, "prompt", prompt)
    given = connections._secrets(["token=argv"], [], None, ["token", "access_token"])
    assert given == {"token": "argv", "access_token": "typed-access_token"}
    assert asked == [("access_token", True)]
