"""Upgrading a database written by the previous release (schema version 1) in place."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import orjson
import pytest

from ownstream.connectors.spotify import rekey_play
from ownstream.home import Home
from ownstream.model import ReadScope
from ownstream.owner import ConnectionOperations
from ownstream.search import parse_query
from ownstream.store.sqlite.database import SCHEMA_VERSION

FIXTURE = Path(__file__).parent / "fixtures" / "schema_v1.sql"
FIXTURE_KEY = base64.urlsafe_b64encode(b"v1-fixture-key-not-a-secret-1234").decode()
API = "cin_996ce6e50c0a9c972eb6b777"  # the Web API connection the extended archive joined


@pytest.fixture
def upgraded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("OWNSTREAM_SECRET_KEY", FIXTURE_KEY)
    home_dir = tmp_path / "home"
    home_dir.mkdir()
    db = sqlite3.connect(home_dir / "ownstream.db")
    db.executescript(FIXTURE.read_text())
    db.close()
    return Home(home_dir)


def _v1() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(FIXTURE.read_text())
    return db


def test_a_version_1_database_upgrades_in_place_keeping_every_id(upgraded: Home) -> None:
    old = _v1()
    old_records = old.execute(
        "SELECT record_id, connection_id, stream, record_key, data, version FROM records "
        "WHERE deleted = 0 ORDER BY record_id"
    ).fetchall()
    old_grants = old.execute("SELECT grant_id FROM grants").fetchall()
    store, catalog = upgraded.store, upgraded.catalog  # opening the store upgrades it
    assert store.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]

    with sqlite3.connect(upgraded.path / "ownstream.db") as db:
        new_records = db.execute(
            "SELECT record_id, connection_id, stream, record_key, data, version FROM records "
            "WHERE deleted = 0 AND parked = 0 ORDER BY record_id"
        ).fetchall()
        assert db.execute("SELECT count(*) FROM record_changes").fetchone()[0] == old.execute(
            "SELECT count(*) FROM record_changes"
        ).fetchone()[0]
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
    # record ids, keys, data and versions all kept; listening_history's version-1 minute keys
    # are re-keyed in place (its data gains the precision it was known at)
    assert [r[:3] + r[5:] for r in new_records] == [r[:3] + r[5:] for r in old_records]
    rekeyed = 0
    for new, old in zip(new_records, old_records, strict=True):
        kept = (old[3], orjson.loads(old[4]))
        expected = rekey_play(kept[1]) if old[2] == "listening_history" else None
        rekeyed += expected is not None and expected[0] != old[3]
        assert (new[3], orjson.loads(new[4])) == (expected or kept)
    assert rekeyed > 0
    assert [g.grant_id for g in store.grants()] == [g for (g,) in old_grants]

    # every record is readable, and searchable again (search was rebuilt from the records)
    history = catalog.definition("listening_history")
    page, _ = store.records_page(ReadScope(history, (API,), history.fields), limit=1000)
    assert len(page) == sum(
        1 for r in old_records if r[1] == API and r[2] == "listening_history"
    )
    track = page[0].data["track_name"].split()[0]
    hits, _ = store.search(
        [ReadScope(history, (API,), history.fields)], parse_query(track), limit=5, before=None
    )
    assert hits and all(hit.connection_id == API for hit in hits)

    # connections keep their paths, and their sealed credentials still open
    ops = ConnectionOperations(upgraded)
    connection = store.connection(API)
    assert [p.connector_key for p in connection.paths] == ["spotify", "spotify-export"]
    assert ops.runtime()._connection_env(API, catalog.manifest("spotify"))
    assert ops.rename(API, "Ana's Spotify").display_name == "Ana's Spotify"


def test_change_tokens_of_version_1_expire_and_history_keeps_its_diffs(upgraded: Home) -> None:
    store = upgraded.store
    old_epoch = "db_090e8c2c782a021d13fffbed"
    assert store.epoch() != old_epoch  # a v1 change token is refused with 410, then re-sync
    assert store.change_horizon() > 0
    with sqlite3.connect(upgraded.path / "ownstream.db") as db:
        ops = dict(db.execute("SELECT op, count(*) FROM record_changes GROUP BY op").fetchall())
        inserts_with_fields = db.execute(
            "SELECT count(*) FROM record_changes WHERE op = 'insert' AND version = 1 "
            "AND fields IS NOT NULL"
        ).fetchone()[0]
    assert ops.get("insert", 0) > 0 and inserts_with_fields == 0


def test_record_ids_stay_above_every_id_ever_given_after_the_upgrade(upgraded: Home) -> None:
    """Version 3 moves records to `record_rows`: its id sequence continues the old one, so an
    id a deleted record had (search rows and history key on it) is never given again."""
    (old_seq,) = _v1().execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'records'"
    ).fetchone()
    upgraded.store  # noqa: B018 - opening the store upgrades it
    with sqlite3.connect(upgraded.path / "ownstream.db") as db:
        sequences = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        kinds = dict(db.execute("SELECT name, type FROM sqlite_master").fetchall())
    assert sequences.get("record_rows") == old_seq and "records" not in sequences
    assert kinds["records"] == "view" and kinds["record_rows"] == "table"
