"""Rules no other test guarded: a cursor carries a position, never authority; a change token of
another database is refused even under the same key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.home import Home
from ownstream.owner import AccessOperations
from tests.services.postgres import backend_environment

from .conftest import World, assert_error

LH = "listening_history"


def test_a_cursor_minted_for_the_owner_reads_only_the_grant_it_is_presented_with(
    shared_world: World,
) -> None:
    w = shared_world
    ada, bo = w.conns["ada.lind"], w.conns["bo.ek"]
    owner_page = w.get(f"/v1/streams/{LH}/records", w.owner_token, {"limit": 3}).json()
    assert owner_page["has_more"]
    _, token = w.grant([{"name": LH, "fields": ["played_at", "track_name"],
                         "connection_ids": [ada]}])
    narrowed = w.cget(
        f"/v1/streams/{LH}/records", token, {"limit": 100, "cursor": owner_page["next_cursor"]}
    )
    assert narrowed.status_code == 200, narrowed.text
    records = narrowed.json()["data"]
    assert records, "the position carried over, the authority did not"
    assert {r["connection_id"] for r in records} == {ada}  # never bo's, never the owner's reach
    assert all(set(r["data"]) <= {"played_at", "track_name"} for r in records)
    assert bo not in narrowed.text


def test_a_change_token_of_another_database_is_gone_even_under_the_same_key(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    w = world
    _, token = w.grant([{"name": LH}])
    synced = w.cget(f"/v1/streams/{LH}/records", token,
                    {"changes_since": "beginning", "limit": 100}).json()
    while synced["has_more"]:
        synced = w.cget(f"/v1/streams/{LH}/records", token,
                        {"changes_since": "beginning", "cursor": synced["next_cursor"],
                         "limit": 100}).json()
    foreign_token = synced["next_changes_since"]
    # another database, with the same server key (a restored copy, a second install)
    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    shutil.copy(w.home.path / "secret.key", twin_dir / "secret.key")
    with backend_environment(request, "postgres_databases"):
        twin = Home(twin_dir)
        twin_token, _ = AccessOperations(twin).mint_owner_token()
    assert twin.store.epoch() != w.store.epoch()
    client = TestClient(create_app(twin))
    response = client.get(
        f"/v1/streams/{LH}/records",
        params={"changes_since": foreign_token},
        headers={"Authorization": f"Bearer {twin_token}"},
    )
    assert_error(response, 410, "cursor_expired")
