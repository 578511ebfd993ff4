"""A database written with version 1's minute keys is re-keyed in place at start: record ids
kept, no change-feed entry, and the keys the version-2 connectors give the same plays."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pytest

from ownstream.clock import iso
from ownstream.connectors.spotify import rekey_play
from ownstream.dev.spotify_data import (
    Play,
    SpotifyUser,
    generate_catalog,
    generate_user,
    write_archive,
)
from ownstream.home import Home
from ownstream.model import ConnectionIdentity, RecordWrite
from ownstream.registry import Catalog
from ownstream.store.base import Binding, NewConnection, PathAttachment, Publication, StreamBatch
from ownstream.store.sqlite import SQLiteStore
from ownstream.store.sqlite.record_codec import RecordCodec, register

USER = "ana.upgrade"
EMITTED = "2026-01-01T00:00:00.000Z"


def version_1_key(play: Play, artist: str) -> str:
    """`play_id` as version 1 derived it for every path: the minute, the artist, the track."""
    minute = play.played_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    basis = f"{minute}|{artist.casefold()}|{play.track.name.casefold()}"
    return hashlib.sha1(basis.encode("utf-8")).hexdigest()[:20]


def extended_v1(play: Play) -> dict[str, Any]:
    """What version 1's archive importer emitted for an extended-history entry."""
    artist = play.track.album.artists[0].name
    return {
        "play_id": version_1_key(play, artist),
        "played_at": iso(play.played_at.replace(microsecond=0)),
        "track_name": play.track.name,
        "artist_name": artist,
        "album_name": play.track.album.name,
        "ms_played": play.ms_played,
        "track_uri": play.track.uri,
        "platform": play.platform,
        "shuffle": play.shuffle,
        "skipped": play.skipped,
        "reason_start": play.reason_start,
        "reason_end": play.reason_end,
    }


def api_v1(play: Play) -> dict[str, Any]:
    """What version 1's Web API connector emitted for a recently played item."""
    artist = play.track.artists[0].name
    return {
        "play_id": version_1_key(play, artist),
        "played_at": iso(play.played_at),
        "track_name": play.track.name,
        "artist_name": artist,
        "album_name": play.track.album.name,
        "track_uri": play.track.uri,
    }


def stage_v1(
    store: SQLiteStore, connection_id: str, path: PathAttachment, data: list[dict[str, Any]]
) -> None:
    """One version-1 import or run: the first entry of each (minute) key, as it kept them."""
    acquisition = store.start_stage(
        Binding(connection_id),
        connector_key=path.connector_key,
        acquisition_method=path.acquisition_method,
        trigger="import",
        collection_mode="full_refresh",
        holder="version-1",
        run_id=f"run_v1_{path.connector_key}",
    )
    kept: dict[str, dict[str, Any]] = {}
    for entry in data:
        kept.setdefault(entry["play_id"], entry)
    writes = [RecordWrite("listening_history", key, d, EMITTED) for key, d in kept.items()]
    definition = Catalog.load().definition("listening_history")
    store.commit_batch(acquisition, [StreamBatch(definition, writes)])
    store.publish(acquisition, Publication("succeeded", {}, [], {}, None, {}))


@pytest.fixture
def listener() -> SpotifyUser:
    return generate_user(
        USER, seed=32, plays=2_000, years=0.1, episodes=0, chapters=0,
        catalog=generate_catalog(seed=31, artists=8),
    )


@pytest.fixture
def version_1_home(tmp_path: Path, listener: SpotifyUser) -> Iterator[Path]:
    """A home whose database version 1 wrote: the extended history of the account, then the
    Web API's recently played, merged into the same minute keys (the API's time won)."""
    home_dir = tmp_path / "home"
    home_dir.mkdir()
    store = SQLiteStore(home_dir / "ownstream.db")  # no Home: nothing upgrades it yet
    archive = PathAttachment("spotify-export", "owner_artifact", True, None)
    api = PathAttachment("spotify", "provider_api", True, "spotify-account")
    identity = ConnectionIdentity("spotify_user_id", USER, "spotify-export", None, EMITTED)
    new = NewConnection("owner", "spotify", "Spotify", True, identity, "")
    connection_id = store.create_connection(new, archive).connection_id
    store.attach_path(connection_id, api)
    stage_v1(store, connection_id, archive, [extended_v1(p) for p in listener.plays])
    stage_v1(store, connection_id, api, [api_v1(p) for p in listener.plays[-50:]])
    store.close()
    yield home_dir


def snapshot(home_dir: Path) -> tuple[list[tuple[Any, ...]], int, str]:
    with sqlite3.connect(home_dir / "ownstream.db") as db:
        register(db, RecordCodec())
        records = db.execute(
            "SELECT record_id, record_key, record_json(data), version, deleted FROM records "
            "WHERE stream = 'listening_history' ORDER BY record_id"
        ).fetchall()
        (changes,) = db.execute("SELECT count(*) FROM record_changes").fetchone()
        (clock,) = db.execute("SELECT value FROM meta WHERE key = 'publish_clock'").fetchone()
    return records, changes, clock


def test_version_1_keys_are_rekeyed_in_place_once(version_1_home: Path) -> None:
    before, changes, clock = snapshot(version_1_home)
    home = Home(version_1_home)
    home.catalog  # noqa: B018 - loading the catalog at start runs the upgrade
    after, changes_after, clock_after = snapshot(version_1_home)
    home.store.close()

    assert [r[0] for r in after] == [r[0] for r in before]  # record ids kept
    assert [(r[3], r[4]) for r in after] == [(r[3], r[4]) for r in before]  # versions too
    for (_, _, old, _, _), (_, key, new, _, _) in zip(before, after, strict=True):
        expected = rekey_play(orjson.loads(old))
        assert expected is not None
        assert (key, orjson.loads(new)) == expected
    assert (changes_after, clock_after) == (changes, clock)  # nothing for the change feed
    precisions = [orjson.loads(r[2])["played_at_precision"] for r in after]
    assert {"millisecond", "second", "minute"} <= set(precisions)  # API, extended, aligned

    again = Home(version_1_home)
    again.catalog  # noqa: B018
    events = again.store.audit_events(operation="records.rekey")
    again.store.close()
    assert len(events) == 1  # it ran once
    assert events[0].summary["rekeyed"] == len(after) and events[0].summary["conflicts"] == 0


def test_after_the_upgrade_the_version_2_importer_meets_every_rekeyed_play(
    version_1_home: Path, listener: SpotifyUser, tmp_path: Path
) -> None:
    """Re-importing the same history with the version-2 importer finds every play it held: the
    plays version 1 merged come back, and nothing is held twice."""
    before, _, _ = snapshot(version_1_home)
    merged_by_version_1 = len(listener.plays) - len(before)
    assert merged_by_version_1 > 0  # the seed makes a few same-minute repeats
    home = Home(version_1_home)
    try:
        result = home.runtime().import_artifact(
            "spotify-export", write_archive(listener, tmp_path / "again", kind="extended")
        )
        counts = result.receipt.counts
        after, _, _ = snapshot(version_1_home)
    finally:
        home.store.close()
    live = [r for r in after if not r[4]]
    assert len(live) == len(listener.plays)  # every play, once
    assert counts["rejected"] == 0 and counts["parsed"] == len(listener.plays)
    # the plays version 1 merged are new; a play its data showed only to the minute (it ended
    # on a minute's first second) is found again by the record rule and re-keyed precisely
    aligned = sum(1 for r in before if orjson.loads(r[2])["played_at"].endswith(":00.000Z"))
    assert counts["new"] == merged_by_version_1 + aligned
    # merged: those, and the 50 plays the Web API path evidenced too
    assert counts["merged_with_existing"] == aligned + 50
