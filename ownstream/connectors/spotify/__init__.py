"""What a Spotify record looks like, whichever path (Web API or archive) acquired it.

Both connectors import these helpers so that one play reported by the API, the extended
history and the basic history gets one `play_id`, and so that both honour the run's scope
(time range and field projection) the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ownstream.clock import parse_iso
from ownstream.runtime.sdk import Message, Start, record

CLAIM = "spotify_user_id"
LISTENING_HISTORY = "listening_history"
SAVED_TRACKS = "saved_tracks"
PLAYLISTS = "playlists"
PROFILE = "profile"

# The field each stream's time range applies to (its consent-time field).
_CONSENT_TIME = {LISTENING_HISTORY: "played_at", SAVED_TRACKS: "added_at"}


def play_id(played_at: datetime, artist_name: str, track_name: str) -> str:
    """The key of one play: minute precision is the coarsest any path reports (basic archive)."""
    minute = played_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    basis = f"{minute}|{artist_name.casefold()}|{track_name.casefold()}"
    return hashlib.sha1(basis.encode("utf-8")).hexdigest()[:20]


def compact(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop fields the source did not provide: absent, never null, never invented."""
    return {k: v for k, v in data.items() if v is not None}


def scoped_record(start: Start, stream: str, key: str, data: Mapping[str, Any]) -> Message | None:
    """A RECORD for `data` within the run's scope, or None when its time lies outside it.

    The runtime treats a record outside the time range, or a field outside the requested
    fields, as a protocol violation, so the connector filters and projects before emitting.
    """
    scope = next((s for s in start.streams if s.name == stream), None)
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
