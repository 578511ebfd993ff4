"""A real ownstream home for API tests: data goes in only through the runtime.

`World` holds one data directory with
- Spotify archive imports (`spotify-export`, owner_artifact): one connection per listener, all
  sharing `listening_history`, `saved_tracks`, `playlists`, `profile`;
- a small stdlib "notes" connector registered from a manifest, with two acquisition paths that
  emit one shared `notes` definition (mutable_state): `notes-api` (provider_api, a subprocess
  run per connection) and `notes-export` (owner_artifact). Updates and deletes of notes drive
  change feeds and tombstones. `secret` is a searchable field tests keep out of grants.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.dev.spotify_data import (
    SpotifyCatalog,
    SpotifyUser,
    generate_catalog,
    generate_user,
    write_archive,
)
from ownstream.grants.issue import issue_grant
from ownstream.home import Home
from ownstream.model import Grant
from ownstream.owner import AccessOperations
from tests.rawdb import RawDb
from tests.services.postgres import backend_environment

NOTES_DEFINITION: dict[str, Any] = {
    "name": "notes",
    "version": 1,
    "semantics": "mutable_state",
    "primary_key": ["note_id"],
    "cursor_field": "updated_at",
    "consent_time_field": "updated_at",
    "searchable_fields": ["title", "body", "secret"],
    "aggregations": {
        "count": True,
        "min": ["updated_at"],
        "max": ["updated_at"],
        "group_by": ["tag", "secret"],
        "group_by_time": ["updated_at"],
        "count_distinct": ["title", "tag", "secret"],
    },
    "description": "A note; `secret` is searchable text that grants in these tests withhold.",
    "schema": {
        "type": "object",
        "properties": {
            "note_id": {"type": "string"},
            "title": {"type": "string"},
            "body": {"type": "string"},
            "secret": {"type": "string"},
            "tag": {"type": "string"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "required": ["note_id"],
        "additionalProperties": False,
    },
}

NOTES_SCRIPT = '''\
"""A stdlib connector: emits the notes of one JSON data file as protocol lines."""
import json
import os
import sys


def main():
    start = json.loads(sys.stdin.readline())
    artifact = start.get("artifact") or {}
    path = artifact.get("path") or os.environ["NOTES_DATA"]
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    out = [{"type": "IDENTITY", "claim": "notes_account", "value": doc["account"]}]
    count = 0
    if start.get("collection_mode") != "identify":
        for note in doc.get("notes", []):
            out.append({"type": "RECORD", "stream": "notes", "key": note["note_id"],
                        "data": note})
            count += 1
        for key in doc.get("deleted", []):
            out.append({"type": "RECORD", "stream": "notes", "key": key, "op": "delete",
                        "data": {"note_id": key}})
            count += 1
    out.append({"type": "DONE", "status": "succeeded", "records_emitted": count})
    for message in out:
        sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()


main()
'''


def notes_manifest(key: str, method: str, display: str) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "protocol_version": "0.1.0",
        "connector_key": key,
        "version": "1.0.0",
        "display_name": display,
        "source": "notes",
        "acquisition_method": method,
        "identity": {"claim": "notes_account"},
        "run": {"command": [sys.executable, "connector.py"]},
        "streams": [{"definition": "notes"}],
    }
    if method != "owner_artifact":
        manifest["setup"] = {"secrets": [], "settings": [{"name": "data", "env": "NOTES_DATA"}]}
    return manifest


TITLE_WORDS = ("garden", "budget", "travel", "recipe", "meeting", "reading", "repair", "music")
BODY_WORDS = ("tomatoes", "invoice", "harbour", "lentils", "agenda", "novel", "bicycle", "chords")
# Words that only ever appear in the hidden `secret` field.
SECRET_WORDS = ("zephyr", "obsidian", "quasar", "marmalade", "tundra", "glacier")


def make_notes(account: str, count: int = 12, *, month_offset: int = 0) -> list[dict[str, Any]]:
    """Deterministic notes n01..nNN; the same keys exist in every account."""
    notes = []
    for i in range(1, count + 1):
        month = (i + month_offset) % 12 + 1
        notes.append(
            {
                "note_id": f"n{i:02d}",
                "title": f"{TITLE_WORDS[i % len(TITLE_WORDS)]} {account} {i}",
                "body": f"{BODY_WORDS[(i * 3) % len(BODY_WORDS)]} and more {account}",
                "secret": f"{SECRET_WORDS[i % len(SECRET_WORDS)]} {account}",
                "tag": "even" if i % 2 == 0 else "odd",
                "updated_at": f"2025-{month:02d}-{(i % 27) + 1:02d}T10:00:00.000Z",
            }
        )
    return notes




@dataclass
class World:
    root: Path
    home: Home
    http: TestClient
    owner_token: str
    spotify_catalog: SpotifyCatalog | None = None
    users: dict[str, SpotifyUser] = field(default_factory=dict)
    conns: dict[str, str] = field(default_factory=dict)  # short name -> connection_id
    notes_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    _artifacts: int = 0

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path) -> World:
        home = Home(root / "home")
        owner, _ = AccessOperations(home).mint_owner_token()
        return cls(root, home, TestClient(create_app(home)), owner)

    @property
    def store(self) -> Any:
        return self.home.store

    def add_spotify(
        self, name: str, seed: int, *, plays: int = 300, label: str | None = None
    ) -> str:
        if self.spotify_catalog is None:
            self.spotify_catalog = generate_catalog(seed=77, artists=40)
        user = generate_user(name, seed=seed, plays=plays, catalog=self.spotify_catalog)
        self.users[name] = user
        return self.import_spotify(name, label=label)

    def import_spotify(self, name: str, *, label: str | None = None) -> str:
        """Import (another) archive of a listener; returns its connection id."""
        self._artifacts += 1
        dest = self.root / "archives" / f"{name}-{self._artifacts}"
        path = write_archive(self.users[name], dest)
        result = self.home.runtime().import_artifact("spotify-export", path)
        assert result.status == "committed", result
        connection_id = result.receipt.connection_id
        self.conns[name] = connection_id
        if label is not None:
            self.store.rename_connection(connection_id, label)
        return connection_id

    def install_notes(self) -> None:
        folder = self.root / "notes-connector"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "connector.py").write_text(NOTES_SCRIPT, encoding="utf-8")
        catalog, store = self.home.catalog, self.store
        catalog.add_definition(NOTES_DEFINITION, store)
        for key, method, display in (
            ("notes-api", "provider_api", "Notes (API, test connector)"),
            ("notes-export", "owner_artifact", "Notes (export file, test connector)"),
        ):
            path = folder / f"{key}.json"
            path.write_text(json.dumps(notes_manifest(key, method, display)), encoding="utf-8")
            catalog.add_manifest(path, store)

    def _notes_file(
        self, account: str, notes: list[dict[str, Any]], deleted: Iterable[str]
    ) -> Path:
        self._artifacts += 1
        folder = self.root / "notes-data"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{account}-export-{self._artifacts}.json"
        doc = {"account": account, "notes": notes, "deleted": list(deleted)}
        path.write_text(json.dumps(doc), encoding="utf-8")
        self.notes_data[account] = doc
        return path

    def connect_notes(
        self, account: str, notes: list[dict[str, Any]], *, label: str | None = None
    ) -> str:
        """A notes-api connection for `account`, then one collection run."""
        path = self._notes_file(account, notes, ())
        runtime = self.home.runtime()
        result = runtime.connect("notes-api", secrets={}, settings={"data": str(path)},
                                 display_name=label)
        connection_id = result.connection.connection_id
        self.conns[account] = connection_id
        self.run_notes(account, notes)
        return connection_id

    def run_notes(
        self, account: str, notes: list[dict[str, Any]], deleted: Iterable[str] = ()
    ) -> None:
        """Rewrite the account's API data and run its connection again."""
        connection_id = self.conns[account]
        settings = self.store.connection_config(connection_id, "notes-api").settings
        path = Path(settings["data"])
        path.write_text(
            json.dumps({"account": account, "notes": notes, "deleted": list(deleted)}),
            encoding="utf-8",
        )
        self.notes_data[account] = {"account": account, "notes": notes, "deleted": list(deleted)}
        outcomes = self.home.runtime().run_connection(connection_id)
        assert [o.status for o in outcomes] == ["succeeded"], [o.to_dict() for o in outcomes]

    def import_notes(
        self, account: str, notes: list[dict[str, Any]], deleted: Iterable[str] = ()
    ) -> str:
        path = self._notes_file(account, notes, deleted)
        result = self.home.runtime().import_artifact("notes-export", path)
        assert result.status == "committed", result
        self.conns[account] = result.receipt.connection_id
        return result.receipt.connection_id

    # -- access -----------------------------------------------------------------------------
    def grant(
        self, streams: list[dict[str, Any]], *, client_id: str = "app.test", **extra: Any
    ) -> tuple[Grant, str]:
        return issue_grant(
            self.store, self.home.catalog, client_id, {"streams": streams, **extra}
        )

    def get(
        self, path: str, token: str | None = None, params: Any = None, **kw: Any
    ) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(path, params=params, headers=headers, **kw)

    def cget(self, path: str, token: str, params: Any = None) -> httpx2.Response:
        """A client read: whatever it answers, it carries a Request-Id and no provenance."""
        response = self.get(path, token, params)
        assert response.headers.get("Request-Id", "").startswith("req_")
        assert_no_provenance(response.text, self.provenance_strings())
        return response

    def post(self, path: str, token: str | None = None, **kw: Any) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.post(path, headers=headers, **kw)

    def page_all(
        self, path: str, token: str, params: dict[str, Any], *, max_pages: int = 200
    ) -> Iterator[dict[str, Any]]:
        """Yield each page body, following next_cursor."""
        params = dict(params)
        for _ in range(max_pages):
            response = self.get(path, token, params)
            assert response.status_code == 200, response.text
            body = response.json()
            yield body
            if not body["has_more"]:
                return
            params["cursor"] = body["next_cursor"]
        raise AssertionError("paging did not end")

    # -- ground truth, read straight from the database --------------------------------------
    def db(self) -> RawDb:
        return RawDb(self.store)

    def rows(self, stream: str, *, deleted: bool | None = False) -> list[dict[str, Any]]:
        sql = (
            "SELECT connection_id, record_key, data, cursor_value, consent_time, deleted "
            "FROM records WHERE stream = ?"
        )
        params: list[Any] = [stream]
        if deleted is not None:
            sql += " AND deleted = ?"
            params.append(deleted)
        with self.db() as db:
            found = db.execute(sql, params).fetchall()
        return [
            {
                "connection_id": c,
                "record_key": k,
                "data": json.loads(d),
                "cursor_value": v,
                "consent_time": t,
                "deleted": bool(x),
            }
            for c, k, d, v, t, x in found
        ]

    def provenance_strings(self) -> set[str]:
        """Everything a client must never see: acquisition paths, runs, batches, artifacts,
        connector display names and placeholder connection labels."""
        store = self.store
        found: set[str] = {"acquisition_method", "connector_key", "batch_id", "run_id"}
        catalog = self.home.catalog
        for connection in store.connections():
            for path in connection.paths:
                manifest = catalog.manifest(path.connector_key)
                found.update({path.connector_key, path.acquisition_method,
                              manifest.display_name})
            if connection.display_name_is_placeholder:
                found.add(connection.display_name)
            for run in store.runs(connection.connection_id, limit=1000):
                found.add(run.run_id)
            for batch in store.batches(connection_id=connection.connection_id):
                found.update({batch.batch_id, batch.artifact_name, batch.artifact_sha256,
                              batch.run_id})
        return found


def schema_streams(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stream entry of a `/v1/schema` document, across its connector entries."""
    return [s for connector in body["connectors"] for s in connector["streams"]]


def assert_no_provenance(body: Any, forbidden: set[str]) -> None:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    leaked = sorted(s for s in forbidden if s and s in text)
    assert not leaked, f"client response leaks provenance {leaked}: {text[:300]}"


def assert_error(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    """The PDPP envelope, with the Request-Id header matching the body's request_id."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"type", "code", "message", "request_id"} <= set(error), error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] and response.headers["Request-Id"] == error["request_id"]
    expected_type = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        409: "conflict_error",
        410: "gone_error",
        422: "invalid_request_error",
    }[status]
    assert error["type"] == expected_type
    return error


def build_standard(root: Path) -> World:
    """Three Spotify listeners (one renamed) and three notes connections over two paths."""
    world = World.create(root)
    world.add_spotify("ada.lind", 1, label="Ada's phone")
    world.add_spotify("bo.ek", 2)
    world.add_spotify("cy.rask", 3)
    world.install_notes()
    world.connect_notes("alice", make_notes("alice"), label="Alice notebook")
    world.connect_notes("bob", make_notes("bob", month_offset=3))
    world.import_notes("carol", make_notes("carol", month_offset=6))
    return world


@pytest.fixture(scope="session")
def shared_world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> World:
    """Read-only: tests that change data or grants' status build their own world."""
    with backend_environment(request):
        return build_standard(tmp_path_factory.mktemp("shared-world"))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_standard(tmp_path)
