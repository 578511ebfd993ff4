"""A home with a `photos` definition (its `image` a blob_ref field), two in-process importers
of it, the owner token, and helpers to import archives and issue grants."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.blobs import MAX_BLOB_ENV
from ownstream.grants.issue import issue_grant
from ownstream.home import Home
from ownstream.owner import AccessOperations
from ownstream.runtime.runner import ImportResult

MAX_BLOB_BYTES = 64 * 1024

PHOTOS_DEFINITION: dict[str, Any] = {
    "name": "photos",
    "version": 1,
    "semantics": "mutable_state",
    "primary_key": ["photo_id"],
    "cursor_field": "taken_at",
    "consent_time_field": "taken_at",
    "searchable_fields": ["caption"],
    "schema": {
        "type": "object",
        "properties": {
            "photo_id": {"type": "string"},
            "taken_at": {"type": "string", "format": "date-time"},
            "caption": {"type": "string"},
            "image": {"type": "object", "x_pdpp_type": "blob_ref"},
        },
        "required": ["photo_id"],
        "additionalProperties": False,
    },
}


ALBUMS_DEFINITION: dict[str, Any] = {
    "name": "albums",
    "version": 1,
    "semantics": "mutable_state",
    "primary_key": ["album_id"],
    "schema": {
        "type": "object",
        "properties": {
            "album_id": {"type": "string"},
            "title": {"type": "string"},
            "cover": {"type": "object", "x_pdpp_type": "blob_ref"},
        },
        "required": ["album_id"],
        "additionalProperties": False,
    },
}


def manifest(key: str, entry: str) -> dict[str, Any]:
    return {
        "protocol_version": "0.1.0",
        "connector_key": key,
        "version": "1.0.0",
        "display_name": f"Photos ({key}, test connector)",
        "source": "photos",
        "acquisition_method": "owner_artifact",
        "run": {"python": entry},
        "streams": [{"definition": "photos"}, {"definition": "albums"}],
    }


def photo_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@dataclass
class Photos:
    root: Path
    home: Home
    http: TestClient
    owner_token: str
    imports: int = 0

    def import_zip(
        self, members: dict[str, bytes], connection_id: str | None = None
    ) -> ImportResult:
        return self.import_file(photo_zip(members), "photos-export", connection_id)

    def import_file(
        self, content: bytes, connector: str, connection_id: str | None = None
    ) -> ImportResult:
        self.imports += 1
        path = self.root / f"archive-{self.imports}"
        path.write_bytes(content)
        return self.home.runtime().import_artifact(connector, path, connection_id=connection_id)

    def grant(self, streams: list[dict[str, Any]]) -> str:
        _, token = issue_grant(self.home.store, self.home.catalog, "app.test", {"streams": streams})
        return token

    def get(self, path: str, token: str, **headers: str) -> httpx2.Response:
        response: httpx2.Response = self.http.get(
            path, headers={"Authorization": f"Bearer {token}", **headers}
        )
        return response

    def blob_files(self) -> list[str]:
        root = self.home.blobs.root
        return sorted(p.name for p in root.glob("??/blob_sha256_*"))


def photos_world(root: Path) -> Photos:
    """A home under `root` with the photos and albums definitions and both importers."""
    home = Home(root / "home")
    home.catalog.add_definition(PHOTOS_DEFINITION, home.store)
    home.catalog.add_definition(ALBUMS_DEFINITION, home.store)
    for key, entry in (
        ("photos-export", "tests.blobs.photos:collect"),
        ("photos-probe", "tests.blobs.photos:misbehave"),
    ):
        path = root / f"{key}.json"
        path.write_text(json.dumps(manifest(key, entry)))
        home.catalog.add_manifest(path, home.store)
    owner, _ = AccessOperations(home).mint_owner_token()
    return Photos(root, home, TestClient(create_app(home)), owner)


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Photos]:
    monkeypatch.setenv(MAX_BLOB_ENV, str(MAX_BLOB_BYTES))
    world = photos_world(tmp_path)
    yield world
    world.home.store.close()
