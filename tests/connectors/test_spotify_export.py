"""The archive connector: every export kind, ZIP and folder, and every way an archive can be bad."""

from __future__ import annotations

import json
import stat
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ownstream.connectors.spotify import connector as api_connector
from ownstream.connectors.spotify import listen_key, play_id
from ownstream.connectors.spotify_export import connector
from ownstream.connectors.spotify_export.connector import collect
from ownstream.connectors.spotify_export.json_array import READ_AHEAD
from ownstream.dev.spotify_data import (
    ArchiveKind,
    SpotifyUser,
    generate_catalog,
    generate_user,
    write_archive,
)
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.runtime.sdk import drive

from . import done, of_type, records, run, start_message

USER = "mira.holm"
ACCOUNT = "Spotify Account Data"
EXTENDED = "Spotify Extended Streaming History"
UNMODELLED = {"Inferences.json", "SearchQueries.json", "ReadMeFirst_ExtendedStreamingHistory.pdf"}
EVERY_STREAM = (
    "profile",
    "listening_history",
    "podcast_listening",
    "audiobook_listening",
    "saved_tracks",
    "playlists",
)


@pytest.fixture(scope="module")
def catalog() -> Any:
    return generate_catalog(seed=21, artists=30)


@pytest.fixture
def user(catalog: Any) -> SpotifyUser:
    return generate_user(USER, seed=9, plays=400, catalog=catalog)


def import_archive(path: Path, **start: Any) -> list[dict[str, Any]]:
    start.setdefault("streams", EVERY_STREAM)
    return run(collect, start_message(artifact=path, **start), {})


def minute_keys(moments_and_names: list[tuple[datetime, str, str]]) -> list[str]:
    """The keys a basic history gives its listens: the minute, and an ordinal for the second
    listen to the same thing in the same minute."""
    seen: Counter[str] = Counter()
    keys = []
    for moment, first, second in moments_and_names:
        coarse = listen_key(moment, "minute", first, second)
        seen[coarse] += 1
        keys.append(listen_key(moment, "minute", first, second, ordinal=seen[coarse]))
    return keys


def failure(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The run failed, and failed before emitting anything at all."""
    assert [m["type"] for m in messages] == ["DONE"], messages[:3]
    assert done(messages)["status"] == "failed"
    error: dict[str, Any] = done(messages)["error"]
    return error


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k != "emitted_at"} for m in messages]


def warnings(messages: list[dict[str, Any]]) -> list[str]:
    return [
        m["message"]
        for m in of_type(messages, "SKIP_RESULT")
        if m["reason"] == "file_not_modelled"
    ]


def last_year(user: SpotifyUser) -> list[Any]:
    exported = user.plays[-1].played_at
    return [p for p in user.plays if exported - timedelta(days=365) < p.played_at]


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def history_entry(end: str, artist: str, track: str) -> dict[str, Any]:
    return {"endTime": end, "artistName": artist, "trackName": track, "msPlayed": 1000}


@pytest.mark.parametrize("kind", ["basic", "legacy"])
def test_basic_and_legacy_archives(tmp_path: Path, user: SpotifyUser, kind: ArchiveKind) -> None:
    messages = import_archive(write_archive(user, tmp_path, kind=kind))
    assert messages[0] == {"type": "IDENTITY", "claim": "spotify_user_id", "value": USER}
    assert done(messages)["status"] == "succeeded"

    (profile,) = records(messages, "profile")
    assert profile == {
        "user_id": USER,
        "email": user.email,
        "country": user.country,
        "account_created": user.created.isoformat(),
    }

    history = records(messages, "listening_history")
    plays = last_year(user)
    assert [h["play_id"] for h in history] == minute_keys(
        [(p.played_at, p.track.artists[0].name, p.track.name) for p in plays]
    )
    assert len({h["play_id"] for h in history}) == len(plays)  # two plays are two records
    for entry in history:
        assert entry["played_at"].endswith(":00.000Z")  # minute precision, UTC
        assert entry["played_at_precision"] == "minute"
        assert isinstance(entry["ms_played"], int)
        assert "track_uri" not in entry and "album_name" not in entry

    podcasts = records(messages, "podcast_listening")
    year_ago = user.plays[-1].played_at - timedelta(days=365)
    heard = [e for e in user.episode_plays if e.played_at > year_ago]
    if kind == "legacy":
        assert podcasts == []  # legacy exports had no podcast files
    else:
        assert [e["play_id"] for e in podcasts] == minute_keys(
            [(e.played_at, e.episode.show.name, e.episode.name) for e in heard]
        )
        assert {e["played_at_precision"] for e in podcasts} == {"minute"}
        assert podcasts[0]["show_name"] == heard[0].episode.show.name
    assert not of_type(messages, "REJECT") and not of_type(messages, "OMIT")

    saved = records(messages, "saved_tracks")
    exported = user.plays[-1].played_at
    assert {s["track_uri"] for s in saved} == {
        s.track.uri for s in user.saved_tracks if s.added_at <= exported
    }
    assert all("added_at" not in s and "duration_ms" not in s for s in saved)

    playlists = {p["playlist_id"]: p for p in records(messages, "playlists")}
    assert set(playlists) == {f"name:{p.name}" for p in user.playlists}
    for expected in user.playlists:
        got = playlists[f"name:{expected.name}"]
        items = [i for i in expected.items if i.added_at <= exported]
        assert [i["track_uri"] for i in got["items"]] == [i.track.uri for i in items]
        assert [i["added_at"] for i in got["items"]] == [f"{i.added_at:%Y-%m-%d}" for i in items]
        assert got["item_count"] == len(items)
        assert len(got["last_modified"]) == 10
        assert "public" not in got and "snapshot_id" not in got

    names = sorted(w.split("/")[-1].removesuffix(" is not imported") for w in warnings(messages))
    assert names == sorted(UNMODELLED)
    for skipped in of_type(messages, "SKIP_RESULT"):
        assert skipped["recovery_hint"] == {"action": "not_retriable", "retryable": False}
        assert skipped["stream"] is None


def test_extended_archive(tmp_path: Path, user: SpotifyUser) -> None:
    messages = import_archive(write_archive(user, tmp_path, kind="extended"))
    assert messages[0]["type"] == "IDENTITY" and messages[0]["value"] == USER
    assert done(messages)["status"] == "succeeded"
    assert records(messages, "profile") == []
    history = records(messages, "listening_history")
    # every play is a record of its own, keyed by its second
    assert [h["play_id"] for h in history] == [
        play_id(p.played_at, "second", p.track.album.artists[0].name, p.track.name)
        for p in user.plays
    ]
    assert len({h["play_id"] for h in history}) == len(user.plays)
    for entry, play in zip(history, user.plays, strict=True):
        assert entry["track_uri"] == play.track.uri
        assert entry["ms_played"] == play.ms_played
        assert entry["platform"] == play.platform and entry["skipped"] is play.skipped
        assert entry["played_at"] == play.played_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert entry["played_at_precision"] == "second"
    podcasts = records(messages, "podcast_listening")
    assert [(e["show_name"], e["episode_name"], e["episode_uri"]) for e in podcasts] == [
        (e.episode.show.name, e.episode.name, e.episode.uri) for e in user.episode_plays
    ]
    chapters = records(messages, "audiobook_listening")
    assert [(c["audiobook_title"], c["chapter_title"]) for c in chapters] == [
        (c.chapter.audiobook.title, c.chapter.title) for c in user.chapter_plays
    ]
    assert {c["played_at_precision"] for c in [*podcasts, *chapters]} == {"second"}
    assert not of_type(messages, "REJECT") and not of_type(messages, "OMIT")
    assert {w.split("/")[-1] for w in warnings(messages)} == {
        "ReadMeFirst_ExtendedStreamingHistory.pdf is not imported",
    }


def test_folder_and_zip_give_the_same_records(tmp_path: Path, user: SpotifyUser) -> None:
    zipped = import_archive(write_archive(user, tmp_path / "z", kind="basic"))
    folder = import_archive(write_archive(user, tmp_path / "f", kind="basic", as_zip=False))
    assert comparable(records(zipped, "listening_history")) == comparable(
        records(folder, "listening_history")
    )
    assert comparable(of_type(zipped, "RECORD")) == comparable(of_type(folder, "RECORD"))
    assert comparable(folder) == comparable(import_archive(tmp_path / "f" / "MyData"))


def test_output_is_deterministic(tmp_path: Path, user: SpotifyUser) -> None:
    path = write_archive(user, tmp_path, kind="basic")
    assert comparable(import_archive(path)) == comparable(import_archive(path))


@pytest.mark.parametrize("kind", ["basic", "extended"])
def test_archive_without_identity(tmp_path: Path, user: SpotifyUser, kind: ArchiveKind) -> None:
    messages = import_archive(write_archive(user, tmp_path, kind=kind, include_identity=False))
    assert not of_type(messages, "IDENTITY")
    assert done(messages)["status"] == "succeeded"
    assert records(messages, "listening_history")


def test_identify_mode(tmp_path: Path, user: SpotifyUser) -> None:
    messages = import_archive(write_archive(user, tmp_path), mode="identify")
    assert [m["type"] for m in messages] == ["IDENTITY", "DONE"]


def test_scope_is_honoured(tmp_path: Path, user: SpotifyUser) -> None:
    messages = import_archive(write_archive(user, tmp_path), streams=["profile"])
    assert {m["stream"] for m in of_type(messages, "RECORD")} == {"profile"}


def test_two_accounts_in_one_archive_conflict(
    tmp_path: Path, user: SpotifyUser, catalog: Any
) -> None:
    other = generate_user("someone.else", seed=10, plays=50, catalog=catalog)
    merged = write_archive(user, tmp_path / "a", kind="basic", as_zip=False)
    extended = write_archive(other, tmp_path / "b", kind="extended", as_zip=False)
    (extended / EXTENDED).rename(merged / EXTENDED)
    error = failure(import_archive(merged))
    assert error["code"] == "identity_conflict"
    assert "someone.else" not in error["message"]


@pytest.mark.parametrize("member", ["../evil.json", "/etc/evil.json", "MyData/../../x.json"])
def test_path_traversal_is_refused(tmp_path: Path, member: str) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"MyData/{ACCOUNT}/Userdata.json", b'{"username": "x"}')
        archive.writestr(zipfile.ZipInfo(member), b"[]")
    assert failure(import_archive(path))["code"] == "unsafe_archive"


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MyData/Userdata.json", b'{"username": "x"}')
        info = zipfile.ZipInfo("MyData/StreamingHistory_music_0.json")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, b"/etc/passwd")
    assert failure(import_archive(path))["code"] == "unsafe_archive"


def test_symlink_in_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "MyData"
    folder.mkdir()
    (folder / "Userdata.json").write_text('{"username": "x"}')
    (folder / "StreamingHistory_music_0.json").symlink_to("/etc/hostname")
    assert failure(import_archive(folder))["code"] == "unsafe_archive"


def test_total_size_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connector, "MAX_TOTAL_UNCOMPRESSED", 1000)
    entries = [history_entry("2025-01-01 10:00", "A", f"T{i}") for i in range(50)]
    path = make_zip(
        tmp_path / "big.zip", {"MyData/StreamingHistory_music_0.json": json.dumps(entries).encode()}
    )
    error = failure(import_archive(path))
    assert error["code"] == "unsafe_archive"


def test_compression_ratio_bomb_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connector, "RATIO_CHECK_MIN_SIZE", 10_000)
    padding = b"[" + b" " * 200_000 + b"]"
    path = make_zip(tmp_path / "bomb.zip", {"MyData/StreamingHistory_music_0.json": padding})
    assert failure(import_archive(path))["code"] == "unsafe_archive"


def test_unrecognized_archive(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "x.zip", {"photos/cat.jpg": b"\xff\xd8", "notes.json": b"{}"})
    assert failure(import_archive(path))["code"] == "unrecognized_archive"


def test_corrupt_zip(tmp_path: Path, user: SpotifyUser) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip at all")
    assert failure(import_archive(garbage))["code"] == "corrupt_archive"

    whole = write_archive(user, tmp_path, kind="basic").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    assert failure(import_archive(truncated))["code"] == "corrupt_archive"


def test_damaged_member_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "damaged.zip"
    content = json.dumps({"username": "abcdefghijklmnop"}).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("MyData/Userdata.json", content)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"abcdefghijklmnop", b"abcdefghijklmnoX", 1))
    error = failure(import_archive(path))
    assert error["code"] == "corrupt_archive" and "Userdata.json" in error["message"]


def test_a_file_that_is_not_json_is_rejected_and_the_rest_imported(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "bad.zip",
        {
            "MyData/Userdata.json": b'{"username": "x"}',
            "MyData/StreamingHistory_music_0.json": b'[{"endTime": ',
            "MyData/StreamingHistory_music_1.json": json.dumps(
                [history_entry("2025-01-01 10:00", "A", "T")]
            ).encode(),
            "MyData/Playlist1.json": b'{"playlists": {"not": "a list"}}',
        },
    )
    messages = import_archive(path)
    assert done(messages)["status"] == "succeeded"
    assert [r["user_id"] for r in records(messages, "profile")] == ["x"]
    assert len(records(messages, "listening_history")) == 1
    rejected = {(m["key"], m["reason"], m["stream"]) for m in of_type(messages, "REJECT")}
    assert rejected == {
        ("StreamingHistory_music_0.json", "invalid_json", None),
        ("Playlist1.json", "unexpected_shape", None),
    }
    detail = next(m["detail"] for m in of_type(messages, "REJECT") if "music_0" in m["key"])
    assert "MyData/StreamingHistory_music_0.json" in detail


@pytest.mark.parametrize("as_folder", [False, True])
def test_a_history_cut_off_after_many_entries_is_rejected_whole_in_orjsons_words(
    tmp_path: Path, as_folder: bool
) -> None:
    """Histories are read entry by entry, but a file broken after thousands of good entries is
    still rejected whole, before any of its entries is emitted, with what orjson says of it."""
    whole = json.dumps(
        [history_entry(f"2025-01-01 {n // 60:02}:{n % 60:02}", "A", f"T{n}") for n in range(1440)],
        indent=2,
    ).encode()
    cut = whole[: len(whole) - 300]
    members = {
        "MyData/Userdata.json": b'{"username": "x"}',
        "MyData/StreamingHistory_music_0.json": cut,
        "MyData/StreamingHistory_music_1.json": json.dumps(
            [history_entry("2025-01-02 10:00", "A", "T")]
        ).encode(),
    }
    if as_folder:
        for name, data in members.items():
            (tmp_path / name).parent.mkdir(exist_ok=True)
            (tmp_path / name).write_bytes(data)
        path = tmp_path / "MyData"
    else:
        path = make_zip(tmp_path / "cut.zip", members)
    messages = import_archive(path)
    assert done(messages)["status"] == "succeeded"
    assert [r["played_at"] for r in records(messages, "listening_history")] == [
        "2025-01-02T10:00:00.000Z"
    ]
    (rejection,) = of_type(messages, "REJECT")
    with pytest.raises(orjson.JSONDecodeError) as refused:
        orjson.loads(cut)
    assert (rejection["key"], rejection["reason"], rejection["stream"]) == (
        "StreamingHistory_music_0.json",
        "invalid_json",
        None,
    )
    prefix = "" if as_folder else "MyData/"
    expected = f"{prefix}StreamingHistory_music_0.json is not valid JSON ({refused.value})"
    assert rejection["detail"] == expected


@pytest.mark.parametrize("replacement", [b"[", b"[]"], ids=["broken", "rewritten"])
def test_a_history_that_changes_while_it_is_imported_fails_the_import(
    tmp_path: Path, replacement: bytes
) -> None:
    """A folder's history rewritten after its first record was emitted: its records so far
    cannot stand, whether what is left is broken or valid JSON. (The survey read it whole.)"""
    entries = [
        history_entry(f"2025-01-{1 + n // 1440:02} {n // 60 % 24:02}:{n % 60:02}", "A", f"T{n}")
        for n in range(6000)
    ]
    history = tmp_path / "StreamingHistory_music_0.json"
    history.write_bytes(json.dumps(entries, indent=2).encode())
    assert history.stat().st_size > 2 * READ_AHEAD
    messages: list[dict[str, Any]] = []
    for message in drive(collect, start_message(artifact=tmp_path, streams=EVERY_STREAM), {}):
        if message["type"] == "RECORD" and not records(messages, "listening_history"):
            history.write_bytes(replacement)
        messages.append(message)
    assert 0 < len(records(messages, "listening_history")) < len(entries)
    error = done(messages)["error"]
    assert error["code"] == "corrupt_archive"
    assert error["message"] == "StreamingHistory_music_0.json changed while the archive was read"


def test_an_archive_whose_every_file_is_unreadable_is_corrupt(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "bad.zip",
        {"MyData/Userdata.json": b"{", "MyData/StreamingHistory_music_0.json": b"nope"},
    )
    error = failure(import_archive(path))
    assert error["code"] == "corrupt_archive" and "could be read" in error["message"]


def test_wrong_shape_is_corrupt(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "shape.zip", {"MyData/YourLibrary.json": b'{"tracks": 7}'})
    assert failure(import_archive(path))["code"] == "corrupt_archive"


def test_hand_made_archive_edge_cases(tmp_path: Path) -> None:
    extended = [
        {
            "ts": "2025-02-03T04:05:06Z",
            "username": "x",
            "ms_played": 1234,
            "master_metadata_track_name": "Song",
            "master_metadata_album_artist_name": "Band",
            "master_metadata_album_album_name": "Album",
            "spotify_track_uri": "spotify:track:1",
            "platform": "ios",
            "shuffle": False,
            "skipped": None,
            "reason_start": "clickrow",
            "reason_end": "trackdone",
        },
        {
            "ts": "2025-02-03T06:00:00.250+01:00",  # not Spotify's form: still read as a moment
            "username": "x",
            "ms_played": 60000,
            "master_metadata_track_name": None,
            "master_metadata_album_artist_name": None,
            "master_metadata_album_album_name": None,
            "spotify_track_uri": None,
            "episode_name": "Episode 1",
            "episode_show_name": "A Podcast",
        },
    ]
    playlists = {
        "playlists": [
            {"name": "Mix", "lastModifiedDate": "2025-01-01", "description": None, "items": []},
            {
                "name": "Mix",
                "lastModifiedDate": "2025-01-02",
                "items": [
                    {"track": None, "episode": {"episodeName": "E"}, "addedDate": "2025-01-02"},
                ],
            },
        ]
    }
    basic = [
        history_entry("2025-02-03 04:05", "BAND", "song"),  # the same play as the extended one
        history_entry("not a time", "Band", "Song"),
    ]
    path = make_zip(
        tmp_path / "edge.zip",
        {
            "Spotify Extended Streaming History/Streaming_History_Audio_2025.json": json.dumps(
                extended
            ).encode(),
            "Spotify Account Data/StreamingHistory_music_10.json": json.dumps(basic).encode(),
            "Spotify Account Data/StreamingHistory_music_2.json": b"\xef\xbb\xbf[]",
            "Spotify Account Data/Playlist1.json": json.dumps(playlists).encode(),
            "Spotify Account Data/YourLibrary.json": json.dumps(
                {"tracks": [], "albums": [{"artist": "A", "album": "B", "uri": "u"}]}
            ).encode(),
            "__MACOSX/._Playlist1.json": b"junk",
            "Spotify Account Data/.DS_Store": b"junk",
        },
    )
    messages = import_archive(path)
    assert done(messages)["status"] == "succeeded"
    assert messages[0]["value"] == "x"

    # the extended play (to the second) and the basic one (to the minute) are both emitted;
    # the spotify-play record rule makes them one record when they are stored
    precise, coarse = records(messages, "listening_history")
    assert precise["played_at"] == "2025-02-03T04:05:06.000Z" and "skipped" not in precise
    assert (precise["played_at_precision"], coarse["played_at_precision"]) == ("second", "minute")
    assert coarse["played_at"] == "2025-02-03T04:05:00.000Z"
    (episode,) = records(messages, "podcast_listening")
    assert (episode["show_name"], episode["episode_name"]) == ("A Podcast", "Episode 1")
    assert episode["played_at"] == "2025-02-03T05:00:00.250Z"
    (malformed,) = of_type(messages, "REJECT")
    assert malformed["stream"] == "listening_history" and malformed["reason"] == "invalid_time"
    assert malformed["key"] == "StreamingHistory_music_10.json#1"

    mixes = records(messages, "playlists")
    assert [p["playlist_id"] for p in mixes] == ["name:Mix", "name:Mix#2"]
    assert mixes[1]["item_count"] == 1 and mixes[1]["items"] == []
    assert "description" not in mixes[0]
    assert warnings(messages) == []
    assert [(m["reason"], m["count"]) for m in of_type(messages, "OMIT")] == [
        ("library_albums_not_modelled", 1),
        ("playlist_item_not_a_track", 1),
    ]
    reads = [m["message"] for m in of_type(messages, "PROGRESS") if m["message"].startswith("read")]
    assert reads.index("reading Spotify Account Data/StreamingHistory_music_2.json") < reads.index(
        "reading Spotify Account Data/StreamingHistory_music_10.json"
    )


def test_missing_artifact() -> None:
    messages = run(collect, start_message(), {})
    assert failure(messages)["code"] == "artifact_missing"


def test_keys_agree_across_api_basic_and_extended(tmp_path: Path, user: SpotifyUser) -> None:
    """The API and the extended history give the same play the same key (both truncate its
    end to the second); the basic history names the same minute, artist and track."""
    with SpotifyDouble([user]) as double:
        env = {
            "SPOTIFY_ACCESS_TOKEN": double.issue_token(USER),
            "SPOTIFY_API_BASE_URL": double.base_url,
        }
        api = run(api_connector.collect, start_message(streams=["listening_history"]), env)
    api_plays = {h["play_id"]: h for h in records(api, "listening_history")}
    assert len(api_plays) == 50
    assert {h["played_at_precision"] for h in api_plays.values()} == {"millisecond"}
    extended = records(
        import_archive(write_archive(user, tmp_path / "e", kind="extended")), "listening_history"
    )
    extended_by_id = {h["play_id"]: h for h in extended}
    assert set(api_plays) <= set(extended_by_id)
    basic = records(import_archive(write_archive(user, tmp_path / "b")), "listening_history")
    minutes = {(h["played_at"][:16], h["artist_name"], h["track_name"]) for h in basic}
    for key, from_api in api_plays.items():
        assert extended_by_id[key]["played_at"][:19] == from_api["played_at"][:19]
        assert from_api["track_uri"] == extended_by_id[key]["track_uri"]
        assert (from_api["played_at"][:16], from_api["artist_name"], from_api["track_name"]) in (
            minutes
        )
    assert all(p.played_at.tzinfo == UTC for p in user.plays)
