"""Bad input never aborts good input: broken archive entries are rejected one by one, counted
with a reason and their place, and the receipt's counts add up."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownstream.connectors.spotify_export.connector import collect
from ownstream.dev.spotify_data import generate_catalog, generate_user, write_archive
from ownstream.home import Home
from ownstream.model import ReadScope

from . import done, of_type, records, run, start_message

EXTENDED = "Spotify Extended Streaming History/Streaming_History_Audio_2025_0.json"
BASIC = "Spotify Account Data/StreamingHistory_music_0.json"
PODCASTS = "Spotify Account Data/StreamingHistory_podcast_0.json"
LISTENS = ("listening_history", "podcast_listening", "audiobook_listening")
STREAMS = ("profile", *LISTENS, "saved_tracks", "playlists")
BASE = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def extended_entry(at: datetime, **fields: Any) -> dict[str, Any]:
    """An extended-history entry with every field Spotify writes, null where it does not apply."""
    entry: dict[str, Any] = {
        "ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "username": "broken.input",
        "platform": "ios",
        "ms_played": 120_000,
        "master_metadata_track_name": None,
        "master_metadata_album_artist_name": None,
        "master_metadata_album_album_name": None,
        "spotify_track_uri": None,
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "audiobook_title": None,
        "audiobook_uri": None,
        "audiobook_chapter_uri": None,
        "audiobook_chapter_title": None,
        "reason_start": "clickrow",
        "reason_end": "trackdone",
        "shuffle": False,
        "skipped": None,
    }
    return entry | fields


def track(at: datetime, n: int) -> dict[str, Any]:
    return extended_entry(
        at,
        master_metadata_track_name=f"Song {n}",
        master_metadata_album_artist_name="Band",
        spotify_track_uri=f"spotify:track:{n}",
    )


def episode(at: datetime, n: int) -> dict[str, Any]:
    return extended_entry(
        at, episode_name=f"Episode {n}", episode_show_name="A Show", spotify_episode_uri=f"e:{n}"
    )


def chapter(at: datetime, n: int) -> dict[str, Any]:
    return extended_entry(
        at, audiobook_title="A Book", audiobook_chapter_title=f"Chapter {n}", audiobook_uri="b:1"
    )


def basic_entry(at: datetime, n: int) -> dict[str, Any]:
    return {
        "endTime": at.strftime("%Y-%m-%d %H:%M"),
        "artistName": "Band",
        "trackName": f"Song {n}",
        "msPlayed": 1000,
    }


def podcast_entry(at: datetime, n: int) -> dict[str, Any]:
    return {
        "endTime": at.strftime("%Y-%m-%d %H:%M"),
        "podcastName": "A Show",
        "episodeName": f"Episode {n}",
        "msPlayed": 1000,
    }


@dataclass(frozen=True)
class Case:
    """One way an entry can look, and what must become of it: a record of `outcome`, an OMIT
    (`omit:<reason>`), or a REJECT (`reject:<reason>`)."""

    name: str
    make: Callable[[datetime, int], Any]
    outcome: str


def broken(make: Callable[[datetime, int], Any], **changes: Any) -> Callable[[datetime, int], Any]:
    def made(at: datetime, n: int) -> Any:
        entry = make(at, n)
        for name, value in changes.items():
            if value is _ABSENT:
                entry.pop(name)
            else:
                entry[name] = value
        return entry

    return made


_ABSENT = object()

EXTENDED_CASES = (
    Case("track", track, "listening_history"),
    Case("episode", episode, "podcast_listening"),
    Case("chapter", chapter, "audiobook_listening"),
    Case("no content", lambda at, n: extended_entry(at), "omit:content_without_metadata"),
    Case("null ts", broken(track, ts=None), "reject:missing_field"),
    Case("no ts", broken(episode, ts=_ABSENT), "reject:missing_field"),
    Case("garbage ts", broken(track, ts="yesterday"), "reject:invalid_time"),
    Case("numeric ts", broken(chapter, ts=1_700_000_000), "reject:wrong_type"),
    Case("numeric name", broken(track, master_metadata_track_name=7), "reject:wrong_type"),
    Case(
        "no artist", broken(track, master_metadata_album_artist_name=None), "reject:missing_field"
    ),
    Case("text ms_played", broken(track, ms_played="12"), "reject:wrong_type"),
    Case("negative ms_played", broken(episode, ms_played=-5), "reject:out_of_range"),
    Case("text shuffle", broken(track, shuffle="yes"), "reject:wrong_type"),
    Case("show missing", broken(episode, episode_show_name=None), "reject:missing_field"),
    Case("a number", lambda at, n: n, "reject:not_an_object"),
    Case("a string", lambda at, n: "entry", "reject:not_an_object"),
    Case("a list", lambda at, n: [at.isoformat()], "reject:not_an_object"),
    Case("null", lambda at, n: None, "reject:not_an_object"),
)
BASIC_CASES = (
    Case("basic", basic_entry, "listening_history"),
    Case("null endTime", broken(basic_entry, endTime=None), "reject:missing_field"),
    Case("iso endTime", broken(basic_entry, endTime="2025-03-01T09:00:00Z"), "reject:invalid_time"),
    Case("no track", broken(basic_entry, trackName=_ABSENT), "reject:missing_field"),
    Case("boolean msPlayed", broken(basic_entry, msPlayed=True), "reject:wrong_type"),
    Case("a number", lambda at, n: n, "reject:not_an_object"),
)
PODCAST_CASES = (
    Case("podcast", podcast_entry, "podcast_listening"),
    Case("no show", broken(podcast_entry, podcastName=""), "reject:missing_field"),
    Case("null endTime", broken(podcast_entry, endTime=None), "reject:missing_field"),
)
FILES = ((EXTENDED, EXTENDED_CASES), (BASIC, BASIC_CASES), (PODCASTS, PODCAST_CASES))


def cases(pool: tuple[Case, ...]) -> st.SearchStrategy[list[tuple[Case, int]]]:
    """Entries of one file: which case each is, and the seconds after BASE it ended."""
    return st.lists(
        st.tuples(st.sampled_from(pool), st.integers(min_value=0, max_value=600)), max_size=25
    )


archives = st.tuples(cases(EXTENDED_CASES), cases(BASIC_CASES), cases(PODCAST_CASES))


def write(folder: Path, files: dict[str, list[tuple[Case, int]]]) -> Path:
    """The archive as a folder, with a Userdata.json so it always has something readable."""
    root = folder / "MyData"
    (root / "Spotify Account Data").mkdir(parents=True)
    (root / "Spotify Extended Streaming History").mkdir()
    (root / "Spotify Account Data/Userdata.json").write_text('{"username": "broken.input"}')
    for name, entries in files.items():
        made = [
            case.make(BASE + timedelta(seconds=seconds), n)
            for n, (case, seconds) in enumerate(entries)
        ]
        (root / name).write_text(json.dumps(made))
    return root


def expected(files: dict[str, list[tuple[Case, int]]]) -> tuple[Counter[str], set[str]]:
    """What each entry must become, counted, and the places of the rejected ones."""
    outcomes: Counter[str] = Counter()
    places = set()
    for name, entries in files.items():
        for index, (case, _) in enumerate(entries):
            outcomes[case.outcome] += 1
            if case.outcome.startswith("reject:"):
                places.add(f"{name.rsplit('/', 1)[1]}#{index}")
    return outcomes, places


def emitted(messages: list[dict[str, Any]]) -> tuple[Counter[str], set[str]]:
    outcomes: Counter[str] = Counter()
    for stream in LISTENS:
        outcomes[stream] += len(records(messages, stream))
    for message in of_type(messages, "OMIT"):
        outcomes[f"omit:{message['reason']}"] += message["count"]
    for message in of_type(messages, "REJECT"):
        outcomes[f"reject:{message['reason']}"] += 1
    return +outcomes, {m["key"] for m in of_type(messages, "REJECT")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives)
def test_every_entry_becomes_a_record_an_omission_or_a_rejection(
    drawn: tuple[list[tuple[Case, int]], ...],
) -> None:
    files = {name: entries for (name, _), entries in zip(FILES, drawn, strict=True)}
    with tempfile.TemporaryDirectory() as scratch:
        archive = write(Path(scratch), files)
        messages = run(collect, start_message(artifact=archive, streams=STREAMS), {})
    assert done(messages)["status"] == "succeeded"
    want, places = expected(files)
    got, keys = emitted(messages)
    assert got == +want
    assert keys == places
    assert all(m["detail"] for m in of_type(messages, "REJECT"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives)
def test_the_receipt_of_a_broken_archive_adds_up(drawn: tuple[list[tuple[Case, int]], ...]) -> None:
    files = {name: entries for (name, _), entries in zip(FILES, drawn, strict=True)}
    with tempfile.TemporaryDirectory() as scratch:
        archive = write(Path(scratch), files)
        home = Home(Path(scratch) / "home")
        try:
            result = home.runtime().import_artifact("spotify-export", archive)
            counts = result.receipt.counts
            held = {
                stream: sum(1 for _ in _live(home, result.receipt.connection_id, stream))
                for stream in LISTENS
            }
        finally:
            home.store.close()
    want, _ = expected(files)
    rejected = sum(n for outcome, n in want.items() if outcome.startswith("reject:"))
    accepted = sum(want[stream] for stream in LISTENS) + 1  # and the profile
    assert counts["parsed"] == counts["accepted"] + counts["rejected"]
    assert (counts["accepted"], counts["rejected"]) == (accepted, rejected)
    assert counts["accepted"] == sum(
        counts[name] for name in ("new", "updated", "duplicate", "deleted", "skipped")
    )
    assert counts["new"] == sum(held.values()) + 1
    assert {r["reason"]: r["count"] for r in counts["rejections"]} == {
        outcome.removeprefix("reject:"): n
        for outcome, n in want.items()
        if outcome.startswith("reject:")
    }
    assert counts["omitted"] == {
        outcome.removeprefix("omit:"): n
        for outcome, n in want.items()
        if outcome.startswith("omit:")
    }


def _live(home: Home, connection_id: str, stream: str) -> list[Any]:
    definition = home.catalog.definition(stream)
    page, _ = home.store.records_page(
        ReadScope(definition, (connection_id,), definition.fields), limit=10_000
    )
    return page


def test_one_null_ts_among_1500_entries_is_rejected_alone(tmp_path: Path) -> None:
    """The reliability issue's case: it used to abort the whole import."""
    listener = generate_user(
        "nulls", seed=4, plays=1500, episodes=0, chapters=0,
        catalog=generate_catalog(seed=4, artists=30),
    )
    archive = write_archive(listener, tmp_path, kind="extended", as_zip=False)
    (history,) = archive.glob("*/Streaming_History_Audio_*.json")
    entries = json.loads(history.read_text())
    entries[700]["ts"] = None
    history.write_text(json.dumps(entries))
    messages = run(collect, start_message(artifact=archive, streams=STREAMS), {})
    assert done(messages)["status"] == "succeeded"
    assert len(records(messages, "listening_history")) == 1499
    (rejected,) = of_type(messages, "REJECT")
    assert (rejected["reason"], rejected["key"]) == ("missing_field", f"{history.name}#700")
    assert "ts is missing" in rejected["detail"]


def test_video_entries_are_counted_not_dropped(tmp_path: Path) -> None:
    root = tmp_path / "MyData"
    root.mkdir()
    (root / "Streaming_History_Audio_2025.json").write_text(json.dumps([track(BASE, 1)]))
    (root / "Streaming_History_Video_2025.json").write_text(json.dumps([{"ts": "x"}] * 3))
    messages = run(collect, start_message(artifact=root, streams=STREAMS), {})
    assert [(m["reason"], m["count"]) for m in of_type(messages, "OMIT")] == [
        ("video_not_modelled", 3)
    ]
    assert len(records(messages, "listening_history")) == 1


@pytest.mark.parametrize(
    "scope", [("podcast_listening",), ("listening_history",), ("audiobook_listening",)]
)
def test_an_extended_entry_that_is_broken_is_rejected_whatever_the_scope(
    tmp_path: Path, scope: tuple[str, ...]
) -> None:
    root = tmp_path / "MyData"
    root.mkdir()
    (root / "Streaming_History_Audio_2025.json").write_text(json.dumps([None, episode(BASE, 1)]))
    messages = run(collect, start_message(artifact=root, streams=scope), {})
    (rejected,) = of_type(messages, "REJECT")
    assert rejected["stream"] is None  # a broken extended entry could have been anything
    assert len(records(messages, "podcast_listening")) == (scope == ("podcast_listening",))
