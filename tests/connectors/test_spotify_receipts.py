"""No silent merges: two distinct plays are two records, and an import's receipt says exactly
what each entry did (the spotify-export connector through the whole runtime)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ownstream.connectors.spotify import listen_key
from ownstream.dev.spotify_data import (
    Play,
    SpotifyUser,
    generate_catalog,
    generate_user,
    write_archive,
)
from ownstream.home import Home
from ownstream.model import ReadScope
from ownstream.runtime.runner import ImportResult

EXTENDED = "Spotify Extended Streaming History"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    opened = Home(tmp_path / "home")
    yield opened
    opened.store.close()


def imported(home: Home, path: Path) -> ImportResult:
    result = home.runtime().import_artifact("spotify-export", path)
    assert result.status == "committed"
    return result


def held(home: Home, connection_id: str, stream: str) -> list[dict[str, Any]]:
    definition = home.catalog.definition(stream)
    scope = ReadScope(definition, (connection_id,), definition.fields)
    page, more = home.store.records_page(scope, limit=1_000_000, order="asc")
    assert not more
    return [r.data for r in page]


def minute_collisions(plays: list[Play]) -> int:
    """Plays the version-1 key (minute, artist, track) would have merged into another."""
    keys = Counter(
        listen_key(p.played_at, "minute", p.track.artists[0].name, p.track.name) for p in plays
    )
    return sum(count - 1 for count in keys.values())


def receipt_counts(result: ImportResult) -> dict[str, Any]:
    counts = dict(result.receipt.counts)
    assert counts["parsed"] == counts["accepted"] + counts["rejected"]
    assert counts["accepted"] == sum(
        counts[name] for name in ("new", "updated", "duplicate", "deleted", "skipped")
    )
    return counts


def test_the_same_track_twice_within_one_minute_is_two_records(
    home: Home, tmp_path: Path
) -> None:
    listener = generate_user(
        "twice", seed=8, plays=40, episodes=0, chapters=0,
        catalog=generate_catalog(seed=8, artists=10),
    )
    first = listener.plays[10]
    # skipped after 12 s, then played again from the start: both plays end in one minute
    start = first.played_at.replace(second=5, microsecond=250_000)
    again = [
        replace(first, played_at=start, ms_played=12_000, skipped=True, reason_end="fwdbtn"),
        replace(first, played_at=start + timedelta(seconds=40), ms_played=first.track.duration_ms),
    ]
    listener.plays[10:11] = again
    assert minute_collisions(listener.plays) >= 1
    result = imported(home, write_archive(listener, tmp_path, kind="extended"))
    counts = receipt_counts(result)
    assert (counts["parsed"], counts["new"], counts["duplicate"]) == (41, 41, 0)
    assert (counts["updated"], counts["merged_with_existing"], counts["rejected"]) == (0, 0, 0)
    plays = held(home, result.receipt.connection_id, "listening_history")
    same = [p for p in plays if p["track_uri"] == first.track.uri and p["played_at"][:16] == (
        start.strftime("%Y-%m-%dT%H:%M")
    )]
    assert [p["ms_played"] for p in same] == [12_000, first.track.duration_ms]
    assert len({p["play_id"] for p in plays}) == 41


def test_a_dense_history_keeps_every_play_at_the_collision_rate_of_the_issue(
    home: Home, tmp_path: Path
) -> None:
    """The issue's 250,000-play archive lost 124 plays to the minute key (0.05 %); this
    listener's 20,000 plays (as densely listened as 250,000 over ten years) collide at the
    same rate."""
    listener = generate_user("dense", seed=10, plays=20_000, years=0.8)
    assert minute_collisions(listener.plays) == 10
    result = imported(home, write_archive(listener, tmp_path, kind="extended"))
    counts = receipt_counts(result)
    listens = len(listener.plays) + len(listener.episode_plays) + len(listener.chapter_plays)
    assert counts["parsed"] == counts["new"] == listens
    assert counts["duplicate"] == counts["updated"] == counts["merged_with_existing"] == 0
    assert counts["rejected"] == 0 and counts["omitted"] == {}
    connection = result.receipt.connection_id
    assert len(held(home, connection, "listening_history")) == len(listener.plays)
    assert len(held(home, connection, "podcast_listening")) == len(listener.episode_plays)
    assert len(held(home, connection, "audiobook_listening")) == len(listener.chapter_plays)
    # the same archive bytes again are refused as a duplicate; an overlapping export is not
    later = write_archive(listener, tmp_path / "later", kind="extended", as_zip=False)
    again = receipt_counts(imported(home, later))
    assert again["duplicate"] == listens and again["new"] == again["updated"] == 0


def _minute_groups(listener: SpotifyUser) -> tuple[Counter[str], Counter[str]]:
    """The basic history's year of plays and of episodes, counted by minute key."""
    year_ago = listener.plays[-1].played_at - timedelta(days=365)
    plays = Counter(
        listen_key(p.played_at, "minute", p.track.artists[0].name, p.track.name)
        for p in listener.plays
        if p.played_at > year_ago
    )
    episodes = Counter(
        listen_key(e.played_at, "minute", e.episode.show.name, e.episode.name)
        for e in listener.episode_plays
        if e.played_at > year_ago
    )
    return plays, episodes


def test_basic_and_extended_history_of_one_account_are_one_record_a_play(
    home: Home, tmp_path: Path
) -> None:
    """A basic-history play (to the minute) fills the extended record of the same play; where
    the same track ended twice in one minute the basic entries cannot say which is which, so
    they are kept apart and reported."""
    listener = generate_user("both", seed=5, plays=8_000, years=0.4)
    merged = write_archive(listener, tmp_path / "a", kind="basic", as_zip=False)
    extended = write_archive(listener, tmp_path / "b", kind="extended", as_zip=False)
    (extended / EXTENDED).rename(merged / EXTENDED)
    result = imported(home, merged)
    counts = receipt_counts(result)

    play_groups, episode_groups = _minute_groups(listener)
    ambiguous = sum(n for n in play_groups.values() if n > 1)
    assert ambiguous >= 2, "the generator should make a few same-minute repeats"
    assert max(episode_groups.values()) == 1
    plays = held(home, result.receipt.connection_id, "listening_history")
    assert len(plays) == len(listener.plays) + ambiguous
    assert sum(p["played_at_precision"] == "minute" for p in plays) == ambiguous
    paired = sum(n for n in play_groups.values() if n == 1) + sum(episode_groups.values())
    assert counts["merged_with_existing"] == paired
    assert counts["rejected"] == 0
    outcome = result.outcome
    assert outcome is not None
    (gap,) = [g for g in outcome.known_gaps if g.reason == "ambiguous_match"]
    assert gap.message.startswith(f"{ambiguous} coarse records") and gap.severity == "informational"
    precise = [p for p in plays if p["played_at_precision"] == "second"]
    assert all("ms_played" in p and "track_uri" in p for p in precise)
    episodes = held(home, result.receipt.connection_id, "podcast_listening")
    assert len(episodes) == len(listener.episode_plays)
