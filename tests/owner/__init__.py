"""Owner operations: connection lifecycle, delete, scheduler, credentials, health, owner API.

Helpers shared by the modules of this package live here; fixtures live in `conftest.py`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ownstream.cli.main import app as cli_app
from ownstream.clock import utc_now
from ownstream.dev.spotify_data import SpotifyUser, write_archive
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.home import Home
from ownstream.owner import ConnectionOperations
from ownstream.runtime.runner import ImportResult
from ownstream.scheduler import Worker
from ownstream.store.base import Store
from ownstream.store.sqlite.search_index import scope_token

# Every table keyed on connection_id (the delete cascade must empty each for one connection).
KEYED_TABLES = (
    "records",
    "stream_stats",
    "coverage",
    "connection_state",
    "schedules",
    "run_leases",
    "runs",
    "acquisition_batches",
    "connection_credentials",
    "connection_settings",
    "connection_paths",
    "connections",
)


class FakeClock:
    """A worker clock that only moves when a test moves it (schedules come due without sleep)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utc_now() + timedelta(days=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def custom_manifest(key: str, refresh_policy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A registered (non built-in) Spotify Web API path with its own refresh policy.

    It runs the built-in Spotify connector code, so it collects from the test double too.
    """
    return {
        "protocol_version": "0.1.0",
        "connector_key": key,
        "version": "1.0.0",
        "display_name": f"Spotify ({key})",
        "source": "spotify",
        "acquisition_method": "provider_api",
        "run": {"python": "ownstream.connectors.spotify.connector:collect"},
        "identity": {"claim": "spotify_user_id"},
        "setup": {
            "secrets": [{"name": "access_token", "env": "SPOTIFY_ACCESS_TOKEN"}],
            "settings": [
                {"name": "api_base_url", "env": "SPOTIFY_API_BASE_URL"},
                {"name": "token_url", "env": "SPOTIFY_TOKEN_URL"},
            ],
        },
        "refresh_policy": refresh_policy,
        "streams": [{"definition": "listening_history"}, {"definition": "profile"}],
        **extra,
    }


@dataclass
class Lab:
    """One owner's data directory, the Spotify double, the owner API and the CLI."""

    root: Path
    double: SpotifyDouble
    users: dict[str, SpotifyUser]
    home: Home
    http: TestClient
    owner_token: str
    secrets: set[str] = field(default_factory=set)  # every credential value given to ownstream
    tokens: dict[str, str] = field(default_factory=dict)  # user -> latest access token
    _homes: list[Home] = field(default_factory=list)
    _archives: int = 0

    # -- the data directory -------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.home.store

    @property
    def ops(self) -> ConnectionOperations:
        return ConnectionOperations(self.home)

    def fresh_home(self) -> Home:
        """Another Home on the same directory: its own SQLite connections and catalog."""
        home = Home(self.home.path)
        self._homes.append(home)
        return home

    def close(self) -> None:
        for home in [self.home, *self._homes]:
            if "store" in home.__dict__:
                home.store.close()

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home.path / "ownstream.db")


    def counts(self, connection_id: str) -> dict[str, int]:
        """Rows keyed on one connection, per table (plus provenance and search rows)."""
        with self.db() as db:
            found = {
                table: db.execute(
                    f"SELECT count(*) FROM {table} WHERE connection_id = ?", (connection_id,)
                ).fetchone()[0]
                for table in KEYED_TABLES
            }
            found["record_evidence"] = db.execute(
                "SELECT count(*) FROM record_evidence WHERE record_id IN "
                "(SELECT record_id FROM records WHERE connection_id = ?)",
                (connection_id,),
            ).fetchone()[0]
            found["record_changes"] = db.execute(
                "SELECT count(*) FROM record_changes WHERE stage IN "
                "(SELECT run_seq FROM runs WHERE connection_id = ?)",
                (connection_id,),
            ).fetchone()[0]
            found["search_index"] = db.execute(
                "SELECT count(*) FROM search_index WHERE search_index MATCH ?",
                (f'scope : "{scope_token("c", connection_id)}"',),
            ).fetchone()[0]
        return found

    # -- connections --------------------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        base = self.double.base_url
        return {"api_base_url": base, "token_url": base + "/api/token"}

    def issue(self, user: str) -> str:
        token = self.double.issue_token(user)
        self.secrets.add(token)
        self.tokens[user] = token
        return token

    def connect(self, user: str, connector: str = "spotify", **kwargs: Any) -> str:
        result = self.ops.connect(
            connector,
            secrets={"access_token": self.issue(user)},
            settings=self.settings(),
            **kwargs,
        )
        return result.connection.connection_id

    def archive(self, user: str) -> Path:
        self._archives += 1
        return write_archive(self.users[user], self.root / "archives" / f"{user}-{self._archives}")

    def import_archive(self, user: str, **kwargs: Any) -> ImportResult:
        return self.ops.import_artifact("spotify-export", self.archive(user), **kwargs)

    def register(self, manifest: dict[str, Any]) -> None:
        folder = self.root / "manifests"
        folder.mkdir(exist_ok=True)
        path = folder / f"{manifest['connector_key']}.json"
        path.write_text(json.dumps(manifest))
        self.home.catalog.add_manifest(path, self.store)

    def worker(
        self, clock: Callable[[], datetime], *, home: Home | None = None, **kw: Any
    ) -> Worker:
        return Worker((home or self.home).runtime(), clock=clock, **kw)

    @staticmethod
    def outcomes(result: object) -> list[Any]:
        """A worker's result for one connection, which must be its run outcomes."""
        assert isinstance(result, list), result
        return result

    def runs(self, connection_id: str) -> list[Any]:
        return self.store.runs(connection_id, limit=1000)

    # -- the owner API ------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {self.owner_token}"}
        response: httpx2.Response = self.http.request(method, path, headers=headers, **kwargs)
        self.assert_no_secret(response.text)
        return response

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.api(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def error(self, method: str, path: str, status: int, code: str, **kw: Any) -> dict[str, Any]:
        response = self.api(method, path, **kw)
        assert response.status_code == status, response.text
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] == code, error
        return error

    def wait_runs(
        self, connection_id: str, run_ids: Iterable[str], timeout: float = 30
    ) -> dict[str, dict[str, Any]]:
        """Poll `GET …/runs` until each run has finished; their views by run_id."""
        wanted = set(run_ids)
        deadline = time.monotonic() + timeout
        while True:
            listed = self.ok("GET", f"/v1/owner/connections/{connection_id}/runs")["data"]
            found = {r["run_id"]: r for r in listed if r["run_id"] in wanted}
            if len(found) == len(wanted) and all(r["status"] != "running" for r in found.values()):
                return found
            assert time.monotonic() < deadline, f"runs {wanted} did not finish: {found}"
            time.sleep(0.02)

    def audit(self, connection_id: str | None = None) -> list[dict[str, Any]]:
        params = {"connection_id": connection_id} if connection_id else None
        events: list[dict[str, Any]] = self.ok("GET", "/v1/owner/audit", params=params)["data"]
        return events

    # -- the command line ---------------------------------------------------------------------
    def cli(self, *args: str, code: int | None = 0) -> Any:
        result = CliRunner().invoke(cli_app, ["--home", str(self.home.path), *map(str, args)])
        if code is not None:
            assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        self.assert_no_secret(result.stdout + result.stderr)
        return result

    def cli_json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.cli(*args, "--json", code=code).stdout)

    # -- leaks --------------------------------------------------------------------------------
    def assert_no_secret(self, text: str | bytes) -> None:
        blob = text if isinstance(text, bytes) else text.encode()
        leaked = [s for s in self.secrets if s.encode() in blob]
        assert not leaked, f"a credential leaked: {blob[:300]!r}"

    def record_strings(self, connection_id: str, limit: int = 50) -> set[str]:
        """Distinctive string values of a connection's records (track names, emails…)."""
        with self.db() as db:
            rows = db.execute(
                "SELECT data FROM records WHERE connection_id = ? LIMIT ?", (connection_id, limit)
            ).fetchall()
        found: set[str] = set()
        for (data,) in rows:
            document = json.loads(data)
            for key in ("track_name", "artist_name", "album_name", "email", "name"):
                value = document.get(key)
                if isinstance(value, str) and len(value) >= 6:
                    found.add(value)
        return found
