"""What a Spotify record looks like, whichever path (Web API or archive) acquired it.

Both connectors import these helpers so that one play reported by the API, the extended
history and the basic history gets keys that meet, and so that both honour the run's scope
(time range and field projection) the same way.

Keys (docs/spotify.md): a play is keyed by the most precise moment its path knows. The Web API
(milliseconds) and the extended history (seconds) both truncate to the second, so they give the
same key for the same play; the basic history knows only the minute and keeps a minute key,
which the `spotify-play` record rule pairs with the precise record of the same play.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from ownstream.clock import parse_iso
from ownstream.runtime.sdk import Message, Start, record

CLAIM = "spotify_user_id"
LISTENING_HISTORY = "listening_history"
PODCAST_LISTENING = "podcast_listening"
AUDIOBOOK_LISTENING = "audiobook_listening"
SAVED_TRACKS = "saved_tracks"
SAVED_SHOWS = "saved_shows"
SAVED_EPISODES = "saved_episodes"
PLAYLISTS = "playlists"
PROFILE = "profile"

Precision = Literal["millisecond", "second", "minute"]

# The field each stream's time range applies to (its consent-time field).
_CONSENT_TIME = {
    LISTENING_HISTORY: "played_at",
    PODCAST_LISTENING: "played_at",
    AUDIOBOOK_LISTENING: "played_at",
    SAVED_TRACKS: "added_at",
    SAVED_SHOWS: "added_at",
    SAVED_EPISODES: "added_at",
}


def listen_key(moment: datetime, precision: Precision, *names: str, ordinal: int = 1) -> str:
    """The key of one listen: its end, truncated to the second (to the minute when that is all
    the path knows), and the names of what was heard, case-folded.

    Truncating milliseconds makes the Web API and the extended history meet; the minute and the
    second render differently, so a coarse key never equals a precise one. `ordinal` tells apart
    the n-th listen of the same thing in the same minute of a basic history, which has nothing
    finer to tell them by.
    """
    parts = [_key_time(moment.astimezone(UTC), precision), *[name.casefold() for name in names]]
    if ordinal > 1:
        parts.append(f"#{ordinal}")
    return hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()[:20]


def _key_time(moment: datetime, precision: Precision) -> str:
    """A key's time as strftime renders it: `%Y-%m-%dT%H:%M`, and `:%S` unless coarse.
    %-formatting the fields is about three times faster (f-strings are slower); strftime
    writes years before 1000 without leading zeros on some platforms, so those keep it."""
    if moment.year < 1000:
        return moment.strftime("%Y-%m-%dT%H:%M" if precision == "minute" else "%Y-%m-%dT%H:%M:%S")
    fields = (moment.year, moment.month, moment.day, moment.hour, moment.minute)
    if precision == "minute":
        return "%04d-%02d-%02dT%02d:%02d" % fields  # noqa: UP031
    return "%04d-%02d-%02dT%02d:%02d:%02d" % (*fields, moment.second)  # noqa: UP031


def play_id(
    played_at: datetime, precision: Precision, artist_name: str, track_name: str, ordinal: int = 1
) -> str:
    """The `listening_history` key of one play of a track."""
    return listen_key(played_at, precision, artist_name, track_name, ordinal=ordinal)


def precision_of(moment: datetime) -> Precision:
    """What a stored time shows of its precision: a minute-aligned time is taken as coarse."""
    if moment.microsecond:
        return "millisecond"
    return "second" if moment.second else "minute"


def rekey_play(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The version-2 key and data of a `listening_history` record written under version 1, whose
    `play_id` was the minute key of every path; None for a record already in version 2 (it has
    `played_at_precision`) or one without the fields a key needs.

    Version 1 records do not say their precision, so it is read from `played_at`: sub-second or
    sub-minute parts mean the Web API or the extended history. A minute-aligned time is coarse,
    whatever other fields the record has: under the minute key a basic history imported after
    the API or the extended history overwrote their precise time with its minute, and the rare
    extended play that really ended on the minute's first second cannot be told from that.
    """
    if "played_at_precision" in data:
        return None
    played_at = data.get("played_at")
    artist, track = data.get("artist_name"), data.get("track_name")
    if not (isinstance(played_at, str) and isinstance(artist, str) and isinstance(track, str)):
        return None
    try:
        moment = parse_iso(played_at)
    except ValueError:
        return None
    precision = precision_of(moment)
    key = play_id(moment, precision, artist, track)
    return key, {**data, "play_id": key, "played_at_precision": precision}


def compact(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop fields the source did not provide: absent, never null, never invented."""
    return {k: v for k, v in data.items() if v is not None}


def scoped_record(start: Start, stream: str, key: str, data: Mapping[str, Any]) -> Message | None:
    """A RECORD for `data` within the run's scope, or None when its time lies outside it.

    The runtime treats a record outside the time range, or a field outside the requested
    fields, as a protocol violation, so the connector filters and projects before emitting.
    """
    scope = start.scope(stream)
    if scope is None:
        return None
    time_field = _CONSENT_TIME.get(stream)
    moment = data.get(time_field) if time_field else None
    if isinstance(moment, str) and (scope.since or scope.until):
        at = parse_iso(moment)
        if scope.since and at < parse_iso(scope.since):
            return None
        if scope.until and at >= parse_iso(scope.until):
            return None
    if scope.fields is not None:
        data = {k: v for k, v in data.items() if k in scope.fields}
    return record(stream, key, data)
