"""Machines with data directories of their own share one PostgreSQL database and, through
`OWNSTREAM_BLOB_DIR`, one blob directory: content one of them stored, another serves and
deletes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.blobs import BLOB_DIR_ENV
from ownstream.home import DATABASE_URL_ENV, Home
from ownstream.owner import AccessOperations, WriteOperations
from tests.blobs.conftest import photos_world
from tests.blobs.test_blobs import JPEG, blob_id


def test_a_blob_stored_by_one_machine_is_served_and_deleted_by_another(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-blobs"  # a mount every machine has
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)
    monkeypatch.setenv(BLOB_DIR_ENV, str(shared))
    importer = photos_world(tmp_path / "importer")  # runs the import
    server = Home(tmp_path / "server")  # serves, with a data directory of its own
    try:
        importer.import_zip({"a.jpg": JPEG})
        assert importer.home.blobs.root == server.blobs.root == shared
        assert importer.blob_files() == [blob_id(JPEG)]
        assert not (importer.home.path / "blobs").exists()
        owner, _ = AccessOperations(server).mint_owner_token()
        response = TestClient(create_app(server)).get(
            f"/v1/blobs/{blob_id(JPEG)}", headers={"Authorization": f"Bearer {owner}"}
        )
        assert response.status_code == 200 and response.content == JPEG
        writes = WriteOperations(server)
        writes.delete_record("photos", "a.jpg")
        writes.delete_record("albums", "archive-1")  # its cover is the same content
        assert importer.blob_files() == []  # gone from the shared directory
    finally:
        server.store.close()
        importer.home.store.close()
