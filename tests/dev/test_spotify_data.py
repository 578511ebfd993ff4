"""The generator must be reproducible, realistic in volume, and match Spotify's export shapes."""

from __future__ import annotations

import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from ownstream.dev.spotify_data import (
    DEFAULT_NOW,
    ChapterPlay,
    EpisodePlay,
    Play,
    SpotifyUser,
    add_plays,
    epoch_ms,
    generate_catalog,
    generate_user,
    write_archive,
)

BASE62_ID = re.compile(r"^[0-9A-Za-z]{22}$")
EXTENDED_KEYS = [
    "ts",
    "username",
    "platform",
    "ms_played",
    "conn_country",
    "ip_addr_decrypted",
    "user_agent_decrypted",
    "master_metadata_track_name",
    "master_metadata_album_artist_name",
    "master_metadata_album_album_name",
    "spotify_track_uri",
    "episode_name",
    "episode_show_name",
    "spotify_episode_uri",
    "audiobook_title",
    "audiobook_uri",
    "audiobook_chapter_uri",
    "audiobook_chapter_title",
    "reason_start",
    "reason_end",
    "shuffle",
    "skipped",
    "offline",
    "offline_timestamp",
    "incognito_mode",
]


@pytest.fixture(scope="module")
def user() -> SpotifyUser:
    return generate_user("alice.k", seed=7)


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def read_folder(path: Path) -> dict[str, bytes]:
    return {
        file.relative_to(path).as_posix(): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def test_same_seed_gives_the_same_user_and_other_seeds_do_not(user: SpotifyUser) -> None:
    assert generate_user("alice.k", seed=7) == user
    assert generate_user("alice.k", seed=8).plays != user.plays
    assert generate_catalog(seed=3) == generate_catalog(seed=3)
    # podcasts and audiobooks draw from their own random stream: the music of a seed is stable
    quiet = generate_user("alice.k", seed=7, episodes=0, chapters=0)
    assert quiet.plays == user.plays and quiet.saved_tracks == user.saved_tracks
    assert not quiet.episode_plays and not quiet.chapter_plays
    bare = generate_catalog(seed=3, shows=0, audiobooks=0)
    assert bare.tracks == generate_catalog(seed=3).tracks and not bare.episodes


def test_episodes_and_chapters_sit_between_listening_sessions(user: SpotifyUser) -> None:
    assert len(user.episode_plays) == 150 and len(user.chapter_plays) == 30  # 1/20, 1/100
    everything: list[Play | EpisodePlay | ChapterPlay] = [
        *user.plays, *user.episode_plays, *user.chapter_plays
    ]
    spans = sorted(
        (epoch_ms(listen.played_at) - listen.ms_played, epoch_ms(listen.played_at))
        for listen in everything
    )
    assert all(earlier[1] <= later[0] for earlier, later in pairwise(spans))  # no overlap
    for listens in (user.episode_plays, user.chapter_plays):
        moments = [listen.played_at for listen in listens]
        assert moments == sorted(moments) and moments[0] > user.plays[0].played_at
        assert all(m.microsecond % 1000 == 0 for m in moments)
    assert all(0 < e.ms_played <= e.episode.duration_ms for e in user.episode_plays)
    assert 2 <= len({e.episode.show.id for e in user.episode_plays}) <= 5  # a few favourites
    assert len({c.chapter.audiobook.id for c in user.chapter_plays}) == 1
    assert all(BASE62_ID.match(e.episode.id) for e in user.episode_plays)
    assert {s.show.id for s in user.saved_shows} <= {e.episode.show.id for e in user.episode_plays}
    assert {s.episode.id for s in user.saved_episodes} <= {e.episode.id for e in user.episode_plays}
    assert all(0 <= s.resume_position_ms < s.episode.duration_ms for s in user.saved_episodes)


def test_volume_and_shape_are_realistic(user: SpotifyUser) -> None:
    assert len(user.plays) == 3000
    moments = [p.played_at for p in user.plays]
    assert all(a < b for a, b in pairwise(moments))
    assert all(m.tzinfo is not None and m.utcoffset() == timedelta(0) for m in moments)
    assert all(m.microsecond % 1000 == 0 for m in moments)
    assert moments[-1] < DEFAULT_NOW
    assert timedelta(days=3 * 365 - 5) < moments[-1] - moments[0] <= timedelta(days=3 * 366)
    assert user.created < moments[0].date()
    assert 150 <= len(user.saved_tracks) <= 450
    assert len({s.track.id for s in user.saved_tracks}) == len(user.saved_tracks)
    assert 3 <= len(user.playlists) <= 8
    assert all(10 <= len(p.items) <= 80 for p in user.playlists)
    assert all(0 < p.ms_played <= p.track.duration_ms for p in user.plays)
    full = sum(p.ms_played >= p.track.duration_ms - 1500 for p in user.plays)
    skipped = sum(p.skipped for p in user.plays)
    assert full > 0.6 * len(user.plays)
    assert 0.05 * len(user.plays) < skipped < 0.3 * len(user.plays)
    gaps = [b - a for a, b in pairwise(moments)]
    assert sum(g > timedelta(hours=6) for g in gaps) > 50  # sessions separated by real gaps
    assert len({p.track.id for p in user.plays}) > 300


def test_ids_and_names_look_like_spotify(user: SpotifyUser) -> None:
    tracks = {p.track.id: p.track for p in user.plays}
    for track in tracks.values():
        assert BASE62_ID.match(track.id)
        assert BASE62_ID.match(track.album.id)
        assert all(BASE62_ID.match(a.id) for a in track.artists)
        assert track.uri == f"spotify:track:{track.id}"
        datetime.strptime(track.album.release_date, "%Y-%m-%d")
    names = [t.name for t in tracks.values()]
    assert any(not name.isascii() for name in names)
    assert any(not t.artists[0].name.isascii() for t in tracks.values())
    common = sum("Love" in name.split() for name in names)
    assert common > len(names) // 20  # an unselective search term
    assert all(BASE62_ID.match(p.id) for p in user.playlists)


def test_users_on_one_catalog_overlap() -> None:
    catalog = generate_catalog(seed=1)
    alice = generate_user("alice", seed=1, plays=800, catalog=catalog)
    bob = generate_user("bob", seed=2, plays=800, catalog=catalog)
    shared = {p.track.id for p in alice.plays} & {p.track.id for p in bob.plays}
    assert shared
    assert alice.plays != bob.plays


def test_now_and_years_bound_the_history() -> None:
    now = datetime(2024, 3, 1, 12, tzinfo=UTC)
    listener = generate_user("carol", seed=5, plays=500, years=1.0, now=now)
    assert listener.plays[-1].played_at < now
    assert listener.plays[0].played_at > now - timedelta(days=370)
    with pytest.raises(ValueError):
        generate_user("carol", seed=5, now=datetime(2024, 3, 1))


def test_add_plays_appends_strictly_newer_plays() -> None:
    listener = generate_user("dave", seed=9, plays=200)
    latest = listener.plays[-1].played_at
    added = add_plays(listener, 5, seed=1)
    assert listener.plays[-5:] == added
    assert all(p.played_at > latest for p in added)
    assert [p.played_at for p in added] == sorted({p.played_at for p in added})
    assert all(p.played_at.microsecond % 1000 == 0 for p in added)
    later = latest + timedelta(days=10)
    again = add_plays(listener, 2, seed=2, after=later, spacing_seconds=600)
    assert again[0].played_at > later
    assert again[1].played_at - again[0].played_at > timedelta(seconds=599)
    assert add_plays(generate_user("dave", seed=9, plays=200), 5, seed=1) == added


def test_archive_bytes_are_deterministic(user: SpotifyUser, tmp_path: Path) -> None:
    for kind in ("basic", "extended", "legacy"):
        first = write_archive(user, tmp_path / f"{kind}-a", kind=kind)
        second = write_archive(user, tmp_path / f"{kind}-b", kind=kind)
        assert first.name == "my_spotify_data.zip"
        assert first.read_bytes() == second.read_bytes()


def test_basic_archive_layout(user: SpotifyUser, tmp_path: Path) -> None:
    files = read_zip(write_archive(user, tmp_path))
    assert sorted(files) == [
        "Spotify Account Data/Inferences.json",
        "Spotify Account Data/Playlist1.json",
        "Spotify Account Data/ReadMeFirst_ExtendedStreamingHistory.pdf",
        "Spotify Account Data/SearchQueries.json",
        "Spotify Account Data/StreamingHistory_music_0.json",
        "Spotify Account Data/StreamingHistory_podcast_0.json",
        "Spotify Account Data/Userdata.json",
        "Spotify Account Data/YourLibrary.json",
    ]
    identity = json.loads(files["Spotify Account Data/Userdata.json"])
    assert identity["username"] == "alice.k"
    assert identity["creationTime"] == user.created.isoformat()
    assert identity["facebookUid"] is None

    history = json.loads(files["Spotify Account Data/StreamingHistory_music_0.json"])
    year_ago = user.plays[-1].played_at - timedelta(days=365)
    recent = [p for p in user.plays if p.played_at > year_ago]
    assert len(history) == len(recent) < len(user.plays)
    assert set(history[0]) == {"endTime", "artistName", "trackName", "msPlayed"}
    assert history[-1] == {
        "endTime": user.plays[-1].played_at.strftime("%Y-%m-%d %H:%M"),
        "artistName": user.plays[-1].track.artists[0].name,
        "trackName": user.plays[-1].track.name,
        "msPlayed": user.plays[-1].ms_played,
    }
    podcasts = json.loads(files["Spotify Account Data/StreamingHistory_podcast_0.json"])
    heard = [e for e in user.episode_plays if e.played_at > year_ago]
    assert len(podcasts) == len(heard) > 0
    assert podcasts[-1] == {
        "endTime": heard[-1].played_at.strftime("%Y-%m-%d %H:%M"),
        "podcastName": heard[-1].episode.show.name,
        "episodeName": heard[-1].episode.name,
        "msPlayed": heard[-1].ms_played,
    }

    library = json.loads(files["Spotify Account Data/YourLibrary.json"])
    assert [t["uri"] for t in library["tracks"]] == [s.track.uri for s in user.saved_tracks]
    assert library["albums"] == [] and library["bannedArtists"] == []

    playlists = json.loads(files["Spotify Account Data/Playlist1.json"])["playlists"]
    assert [p["name"] for p in playlists] == [p.name for p in user.playlists]
    first = playlists[0]["items"][0]
    assert first["episode"] is None and first["localTrack"] is None
    assert first["track"]["trackUri"] == user.playlists[0].items[0].track.uri
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", first["addedDate"])


def test_legacy_names_and_optional_files(user: SpotifyUser, tmp_path: Path) -> None:
    archive = write_archive(
        user, tmp_path, kind="legacy", include_identity=False, extra_files=False
    )
    assert sorted(read_zip(archive)) == [
        "Spotify Account Data/Playlist1.json",
        "Spotify Account Data/StreamingHistory0.json",
        "Spotify Account Data/YourLibrary.json",
    ]


def test_extended_archive_covers_every_play(user: SpotifyUser, tmp_path: Path) -> None:
    files = read_zip(write_archive(user, tmp_path, kind="extended"))
    audio = sorted(n for n in files if "Streaming_History_Audio_" in n)
    assert all(n.startswith("Spotify Extended Streaming History/") for n in files)
    assert not any(n.endswith("Userdata.json") for n in files)
    assert any(re.search(r"Streaming_History_Video_\d{4}-\d{4}\.json$", n) for n in files)
    assert any(n.endswith("ReadMeFirst_ExtendedStreamingHistory.pdf") for n in files)
    entries = [e for name in audio for e in json.loads(files[name])]
    listens = len(user.plays) + len(user.episode_plays) + len(user.chapter_plays)
    assert len(entries) == listens
    assert [e["ts"] for e in entries] == sorted(e["ts"] for e in entries)  # interleaved by time
    assert all(e["username"] == "alice.k" for e in entries)
    assert all(list(e) == EXTENDED_KEYS for e in entries)
    episodes = [e for e in entries if e["episode_name"] is not None]
    assert len(episodes) == len(user.episode_plays)
    first, heard = episodes[0], user.episode_plays[0]
    assert first["ts"] == heard.played_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["episode_show_name"] == heard.episode.show.name
    assert first["spotify_episode_uri"] == heard.episode.uri
    assert first["master_metadata_track_name"] is None and first["audiobook_title"] is None
    chapters = [e for e in entries if e["audiobook_title"] is not None]
    assert [c["audiobook_chapter_title"] for c in chapters] == [
        c.chapter.title for c in user.chapter_plays
    ]
    assert all(c["episode_name"] is None and c["spotify_track_uri"] is None for c in chapters)
    last, play = entries[-1], user.plays[-1]
    assert last["ts"] == play.played_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert last["spotify_track_uri"] == play.track.uri
    assert last["ms_played"] == play.ms_played
    assert last["offline_timestamp"] == epoch_ms(play.played_at) - play.ms_played
    assert last["ip_addr_decrypted"].startswith("192.0.2.")


def test_extended_without_identity_drops_username(user: SpotifyUser, tmp_path: Path) -> None:
    files = read_zip(write_archive(user, tmp_path, kind="extended", include_identity=False))
    entries = [e for name, data in files.items() if "Audio" in name for e in json.loads(data)]
    assert entries and all("username" not in e for e in entries)


def test_large_histories_split_into_files(tmp_path: Path) -> None:
    heavy = generate_user("erin", seed=3, plays=12_000, years=0.9)
    basic = read_zip(write_archive(heavy, tmp_path / "basic"))
    parts = sorted(n for n in basic if "StreamingHistory_music_" in n)
    assert [n.rsplit("/", 1)[1] for n in parts] == [
        "StreamingHistory_music_0.json",
        "StreamingHistory_music_1.json",
    ]
    counts = [len(json.loads(basic[n])) for n in parts]
    assert counts[0] == 10_000 and sum(counts) == 12_000
    extended = read_zip(write_archive(heavy, tmp_path / "ext", kind="extended"))
    audio = sorted(n for n in extended if "Audio" in n)
    assert [re.sub(r".*_(\d+)\.json$", r"\1", n) for n in audio] == ["0", "1"]
    assert all(re.search(r"Audio_\d{4}(-\d{4})?_\d\.json$", n) for n in audio)


def test_folder_matches_zip(user: SpotifyUser, tmp_path: Path) -> None:
    zipped = write_archive(user, tmp_path / "z", kind="extended")
    folder = write_archive(user, tmp_path / "f", kind="extended", as_zip=False)
    assert folder.name == "MyData" and folder.is_dir()
    assert read_folder(folder) == read_zip(zipped)


def test_export_moment_limits_contents(user: SpotifyUser, tmp_path: Path) -> None:
    cut = user.plays[2000].played_at
    files = read_zip(write_archive(user, tmp_path, kind="extended", exported_at=cut))
    entries = [e for name, data in files.items() if "Audio" in name for e in json.loads(data)]
    spoken: list[EpisodePlay | ChapterPlay] = [
        *(e for e in user.episode_plays if e.played_at <= cut),
        *(c for c in user.chapter_plays if c.played_at <= cut),
    ]
    assert len(entries) == 2001 + len(spoken) and 0 < len(spoken) < 180


def test_refuses_to_overwrite(user: SpotifyUser, tmp_path: Path) -> None:
    write_archive(user, tmp_path)
    with pytest.raises(FileExistsError):
        write_archive(user, tmp_path)
