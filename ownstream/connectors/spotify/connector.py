"""Spotify Web API connector: profile, recently played, Liked Songs, saved podcasts and
episodes, and playlists.

Failure policy, per stream: a rate limit that outlasts its retries or an upstream outage becomes
a known gap (SKIP_RESULT) and the run moves on to the next stream; a rejected credential fails
the whole run, because every later request would be rejected too. One malformed item (a null
time, a track without a name) is REJECTed alone and the stream goes on. STATE is emitted for a
stream only after the stream finished, so a failure never checkpoints past data that was not
collected.

An expired access token is refreshed once per run with the refresh token (a public PKCE client
sends its client id; with a client secret it authenticates as a confidential client). The new
access token, and the new refresh token when Spotify rotates it, are handed back with
CREDENTIALS before any other message, and even when the run then fails: the next run starts
from them, and a rotated refresh token is never lost. A refresh token Spotify refuses
(`invalid_grant`: expired, or access revoked in the account) fails the run with
`ReconnectRequired`. The tokens never appear in an error or a log line.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from ownstream.clock import iso, parse_iso
from ownstream.connectors.spotify import (
    CLAIM,
    LISTENING_HISTORY,
    PLAYLISTS,
    PROFILE,
    SAVED_EPISODES,
    SAVED_SHOWS,
    SAVED_TRACKS,
    compact,
    play_id,
    scoped_record,
)
from ownstream.connectors.spotify.fields import (
    Malformed,
    entry_object,
    field,
    moment,
    optional_moment,
    rejected,
    required_text,
    text,
)
from ownstream.runtime import oauth_client
from ownstream.runtime.sdk import (
    ConnectorError,
    Message,
    ReconnectRequired,
    Start,
    credentials,
    identity,
    omit,
    progress,
    skip,
    state,
)

DEFAULT_API_BASE_URL = "https://api.spotify.com"
DEFAULT_TOKEN_URL = "https://accounts.spotify.com/api/token"
DEFAULT_MAX_RETRY_AFTER = 60.0

RATE_LIMIT_TRIES = 5
"""Requests answered 429 before the stream is given up as a known gap."""
UNAVAILABLE_TRIES = 3
"""Requests that fail with 5xx or a network error before the stream is given up."""
BACKOFF_BASE_SECONDS = 0.2
"""First back-off after a 5xx or network error; it doubles on each further try."""
RECENTLY_PLAYED_WINDOW = 50
"""Spotify exposes only this many most recent plays; older ones need the archive."""
PAGE_SIZE = 50
"""Spotify's maximum page for recently played, Liked Songs and the playlist list."""
PLAYLIST_ITEMS_PAGE_SIZE = 100
"""Spotify's maximum page for a playlist's items."""
MAX_PAGES = 10_000
"""A stop for a paging loop whose `next` links never end."""
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _sleep(seconds: float) -> None:
    """Indirection so tests can observe back-off without waiting for it."""
    time.sleep(seconds)


class _StreamGap(Exception):
    """This stream cannot be completed this run; the others still can."""

    def __init__(self, reason: str, message: str, *, recovery_action: str, retryable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.recovery_action = recovery_action
        self.retryable = retryable


class _NotFound(Exception):
    """A 404 for one resource (such as a playlist deleted mid-run), not for the stream."""


def _credentials_rejected(detail: str) -> ConnectorError:
    return ConnectorError(
        f"Spotify rejected the access token ({detail}); reconnect the account",
        code="credentials_invalid",
        recovery_action="refresh_credentials",
    )


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


class _Api:
    """An authenticated Spotify client with the retry, refresh and paging rules above."""

    def __init__(self, env: Mapping[str, str]) -> None:
        token = env.get("SPOTIFY_ACCESS_TOKEN", "").strip()
        if not token:
            raise ConnectorError(
                "no Spotify access token is configured",
                code="credentials_missing",
                recovery_action="refresh_credentials",
            )
        self._token = token
        self._refresh_token = env.get("SPOTIFY_REFRESH_TOKEN", "").strip()
        self._client_id = env.get("SPOTIFY_CLIENT_ID", "").strip()
        self._client_secret = env.get("SPOTIFY_CLIENT_SECRET", "").strip()
        self._refreshed = False
        self._to_hand_back: dict[str, str] = {}
        self.base_url = (env.get("SPOTIFY_API_BASE_URL") or DEFAULT_API_BASE_URL).rstrip("/")
        self._token_url = env.get("SPOTIFY_TOKEN_URL") or DEFAULT_TOKEN_URL
        try:
            self._max_wait = float(env.get("SPOTIFY_MAX_RETRY_AFTER") or DEFAULT_MAX_RETRY_AFTER)
        except ValueError:
            self._max_wait = DEFAULT_MAX_RETRY_AFTER
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)
        # trust_env=False: settings reach a connector only through its declared env.
        self._client = httpx.Client(timeout=TIMEOUT, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a JSON document, retrying rate limits and outages, refreshing a stale token."""
        if (urlsplit(url).scheme, urlsplit(url).netloc) != self._origin:
            # A `next` link elsewhere would receive the bearer token; refuse to follow it.
            raise _StreamGap(
                "unexpected_upstream_response",
                "Spotify returned a paging link outside the configured API",
                recovery_action="retry_on_connector_upgrade",
                retryable=False,
            )
        limited = failed = 0
        while True:
            try:
                response = self._client.get(
                    url, params=params, headers={"Authorization": f"Bearer {self._token}"}
                )
            except httpx.TransportError as exc:
                failed += 1
                if failed >= UNAVAILABLE_TRIES:
                    raise self._unavailable(f"network error ({type(exc).__name__})") from None
                _sleep(BACKOFF_BASE_SECONDS * 2 ** (failed - 1))
                continue
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    raise self._unavailable("a response that is not JSON") from None
            if status == 429:
                limited += 1
                if limited >= RATE_LIMIT_TRIES:
                    raise _StreamGap(
                        "rate_limited",
                        f"Spotify kept rate-limiting requests ({limited} tries)",
                        recovery_action="retry_by_runtime",
                        retryable=True,
                    )
                _sleep(min(_retry_after(response), self._max_wait))
                continue
            if status >= 500:
                failed += 1
                if failed >= UNAVAILABLE_TRIES:
                    raise self._unavailable(f"HTTP {status}")
                _sleep(BACKOFF_BASE_SECONDS * 2 ** (failed - 1))
                continue
            if status == 401:
                self._refresh()
                continue
            if status == 403:
                raise _StreamGap(
                    "permission_denied",
                    "Spotify refused access (HTTP 403); the grant may lack a scope",
                    recovery_action="refresh_credentials",
                    retryable=False,
                )
            if status == 404:
                raise _NotFound(url)
            raise _StreamGap(
                "upstream_rejected_request",
                f"Spotify rejected a request with HTTP {status}",
                recovery_action="retry_on_connector_upgrade",
                retryable=False,
            )

    @staticmethod
    def _unavailable(what: str) -> _StreamGap:
        return _StreamGap(
            "upstream_unavailable",
            f"Spotify was unavailable after {UNAVAILABLE_TRIES} tries: {what}",
            recovery_action="retry_by_runtime",
            retryable=True,
        )

    def _refresh(self) -> None:
        """Trade the refresh token for a new access token, once per run; what Spotify answers
        waits in `handed_back` for the next message."""
        if self._refreshed:
            raise _credentials_rejected("HTTP 401 again after a token refresh")
        if not (self._refresh_token and self._client_id):
            raise _credentials_rejected("HTTP 401, and no refresh token is configured")
        self._refreshed = True
        try:
            tokens = oauth_client.refresh(
                self._client,
                self._token_url,
                client_id=self._client_id,
                client_secret=self._client_secret or None,
                refresh_token=self._refresh_token,
            )
        except oauth_client.TokenEndpointUnavailable as exc:
            raise ConnectorError(
                f"refreshing the Spotify access token failed: {exc}",
                code="upstream_unavailable",
                retryable=True,
                recovery_action="retry_by_runtime",
            ) from None
        except oauth_client.TokenRequestRefused as exc:
            if exc.error == "invalid_grant":
                raise ReconnectRequired(
                    "Spotify refused the refresh token (it expired, or access was removed in "
                    "the Spotify account); connect the account again"
                ) from None
            raise _credentials_rejected(f"the token refresh failed: {exc}") from None
        self._token = tokens.access_token
        self._refresh_token = tokens.refresh_token or self._refresh_token
        self._to_hand_back.update(tokens.secrets())

    def handed_back(self) -> Iterator[Message]:
        """CREDENTIALS for what was refreshed since the last call, if anything was."""
        if self._to_hand_back:
            refreshed, self._to_hand_back = self._to_hand_back, {}
            yield credentials(**refreshed)

    def pages(self, url: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Offset-paged collections: follow `next` until Spotify stops offering one."""
        next_url: str | None = url
        next_params: Mapping[str, Any] | None = params
        for _ in range(MAX_PAGES):
            if not next_url:
                return
            page = self.get(next_url, next_params)
            yield page
            next_url, next_params = page.get("next"), None
        raise _StreamGap(
            "unexpected_upstream_response",
            f"Spotify kept offering pages after {MAX_PAGES}",
            recovery_action="retry_on_connector_upgrade",
            retryable=False,
        )


def _album(track: Mapping[str, Any]) -> str | None:
    album = track.get("album")
    return text(album, "name") if isinstance(album, dict) else None


def _track(item: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str] | None:
    """An item's track with its name and first artist; None for an episode (a kind the
    stream does not model); `Malformed` for a track without the names a record needs."""
    track = entry_object(item.get("track"), "track")
    if track.get("type", "track") != "track":
        return None
    artists = track.get("artists")
    first = artists[0] if isinstance(artists, list) and artists else None
    artist = required_text(entry_object(first, "the first artist"), "name")
    return track, required_text(track, "name"), artist


def _ms(at: datetime) -> int:
    """Unix milliseconds, exactly: the unit of the recently-played cursors."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


def _added_at(item: Mapping[str, Any]) -> str | None:
    added = optional_moment(item, "added_at", parse_iso)
    return iso(added) if added is not None else None


def _profile(start: Start, me: Mapping[str, Any]) -> Iterator[Message]:
    followers = me.get("followers")
    total = followers.get("total") if isinstance(followers, dict) else None
    data = compact(
        {
            "user_id": me["id"],
            "display_name": me.get("display_name") or None,
            "email": me.get("email") or None,
            "country": me.get("country") or None,
            "product": me.get("product") or None,
            "followers": total if isinstance(total, int) else None,
        }
    )
    message = scoped_record(start, PROFILE, me["id"], data)
    if message is not None:
        yield message


def _listening_history(start: Start, api: _Api) -> Iterator[Message]:
    """Recently played, newest first; incremental from the `after` cursor when there is one.

    A play is keyed by its end truncated to the second (so the extended history's entry of the
    same play meets it) and says it is known to the millisecond."""
    cursor = start.state.get(LISTENING_HISTORY)
    after = cursor.get("after") if isinstance(cursor, dict) else None
    if not isinstance(after, int) or isinstance(after, bool):
        after = None
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if after is not None:
        params["after"] = after
    newest = after
    seen: set[str] = set()
    reached_cursor = False
    pages = 0
    next_url: str | None = api.url("/v1/me/player/recently-played")
    next_params: Mapping[str, Any] | None = params
    while next_url and not reached_cursor and pages < MAX_PAGES:
        page = api.get(next_url, next_params)
        pages += 1
        fresh = 0
        for index, item in enumerate(page.get("items") or []):
            try:
                item = entry_object(item, "the item")
                at = moment(item, "played_at", parse_iso)
                found = _track(item)
            except Malformed as problem:
                yield rejected(
                    LISTENING_HISTORY,
                    problem,
                    f"recently played, page {pages} item {index}",
                    f"recently-played/{pages}#{index}",
                )
                continue
            if found is None:
                yield omit("not_a_track")
                continue
            track, name, artist = found
            played_ms = _ms(at)
            if after is not None and played_ms <= after:
                reached_cursor = True
                continue
            identity_of_play = f"{played_ms}|{track.get('uri')}"
            if identity_of_play in seen:
                continue
            seen.add(identity_of_play)
            fresh += 1
            key = play_id(at, "millisecond", artist, name)
            data = compact(
                {
                    "play_id": key,
                    "played_at": iso(at),
                    "played_at_precision": "millisecond",
                    "track_name": name,
                    "artist_name": artist,
                    "album_name": _album(track),
                    "track_uri": text(track, "uri"),
                }
            )
            message = scoped_record(start, LISTENING_HISTORY, key, data)
            if message is not None:
                # Only what was emitted moves the cursor: a play outside the run's time range
                # must stay collectable by a later run.
                newest = played_ms if newest is None else max(newest, played_ms)
                yield message
        if not fresh:
            break
        next_url, next_params = page.get("next"), None
    yield progress("recently played collected", stream=LISTENING_HISTORY, count=len(seen))
    if after is not None and not reached_cursor and len(seen) >= RECENTLY_PLAYED_WINDOW:
        yield skip(
            LISTENING_HISTORY,
            "history_window_exceeded",
            f"{len(seen)} plays since the last run fill Spotify's {RECENTLY_PLAYED_WINDOW}-play "
            "window, so earlier plays may be missing; import the data archive to fill them in",
            recovery_action="manual_action_required",
            retryable=False,
        )
    if newest is not None:
        yield state(LISTENING_HISTORY, {"after": newest})


def _library(
    start: Start,
    api: _Api,
    stream: str,
    path: str,
    read: Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]] | None],
) -> Iterator[Message]:
    """A saved-items collection (Liked Songs, shows, episodes): one record per item `read`
    understands; None from `read` is an item of a kind the stream does not model."""
    count = 0
    for page_number, page in enumerate(api.pages(api.url(path), {"limit": PAGE_SIZE})):
        offset = page.get("offset")
        offset = offset if isinstance(offset, int) else page_number * PAGE_SIZE
        for index, item in enumerate(page.get("items") or []):
            try:
                found = read(entry_object(item, "the item"))
            except Malformed as problem:
                yield rejected(
                    stream, problem, f"{path} item {offset + index}", f"{path}#{offset + index}"
                )
                continue
            if found is None:
                yield omit(f"{stream}_item_not_modelled")
                continue
            key, data = found
            message = scoped_record(start, stream, key, compact(data))
            if message is not None:
                count += 1
                yield message
        total = page.get("total")
        yield progress(
            stream.replace("_", " "),
            stream=stream,
            count=count,
            total=total if isinstance(total, int) else None,
        )


def _saved_track(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    found = _track(item)
    if found is None:
        return None
    track, name, artist = found
    uri = required_text(track, "uri")
    return uri, {
        "track_uri": uri,
        "track_name": name,
        "artist_name": artist,
        "album_name": _album(track),
        "added_at": _added_at(item),
        "duration_ms": field(track, "duration_ms", int),
    }


def _saved_show(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    show = entry_object(item.get("show"), "show")
    uri = required_text(show, "uri")
    return uri, {
        "show_uri": uri,
        "show_name": required_text(show, "name"),
        "publisher": text(show, "publisher"),
        "description": text(show, "description"),
        "total_episodes": field(show, "total_episodes", int),
        "added_at": _added_at(item),
    }


def _saved_episode(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    episode = entry_object(item.get("episode"), "episode")
    uri = required_text(episode, "uri")
    show = episode.get("show")
    resume = episode.get("resume_point")
    resume = resume if isinstance(resume, dict) else {}
    return uri, {
        "episode_uri": uri,
        "episode_name": required_text(episode, "name"),
        "show_name": text(show, "name") if isinstance(show, dict) else None,
        "show_uri": text(show, "uri") if isinstance(show, dict) else None,
        "release_date": text(episode, "release_date"),
        "duration_ms": field(episode, "duration_ms", int),
        "resume_position_ms": field(resume, "resume_position_ms", int),
        "fully_played": field(resume, "fully_played", bool),
        "added_at": _added_at(item),
    }


def _saved_tracks(start: Start, api: _Api) -> Iterator[Message]:
    yield from _library(start, api, SAVED_TRACKS, "/v1/me/tracks", _saved_track)


def _saved_shows(start: Start, api: _Api) -> Iterator[Message]:
    yield from _library(start, api, SAVED_SHOWS, "/v1/me/shows", _saved_show)


def _saved_episodes(start: Start, api: _Api) -> Iterator[Message]:
    yield from _library(start, api, SAVED_EPISODES, "/v1/me/episodes", _saved_episode)


def _playlist_items(api: _Api, playlist_id: str) -> tuple[list[dict[str, Any]], list[Message]]:
    """A playlist's track entries, and what was said about the others: an episode or an
    unavailable entry is omitted (the playlist's item_count still counts it), a malformed one
    rejected."""
    items: list[dict[str, Any]] = []
    said: list[Message] = []
    url = api.url(f"/v1/playlists/{playlist_id}/tracks")
    position = 0
    for page in api.pages(url, {"limit": PLAYLIST_ITEMS_PAGE_SIZE}):
        for item in page.get("items") or []:
            position += 1
            try:
                item = entry_object(item, "the item")
                if item.get("track") is None:
                    said.append(omit("playlist_item_unavailable"))
                    continue
                found = _track(item)
                if found is None:
                    said.append(omit("playlist_item_not_a_track"))
                    continue
                track, name, artist = found
                items.append(
                    compact(
                        {
                            "track_name": name,
                            "artist_name": artist,
                            "album_name": _album(track),
                            "track_uri": text(track, "uri"),
                            "added_at": _added_at(item),
                        }
                    )
                )
            except Malformed as problem:
                said.append(
                    rejected(
                        PLAYLISTS,
                        problem,
                        f"playlist {playlist_id} item {position - 1}",
                        f"{playlist_id}#{position - 1}",
                    )
                )
    return items, said


def _playlists(start: Start, api: _Api) -> Iterator[Message]:
    count = 0
    for page_number, page in enumerate(
        api.pages(api.url("/v1/me/playlists"), {"limit": PAGE_SIZE})
    ):
        for index, playlist in enumerate(page.get("items") or []):
            try:
                playlist = entry_object(playlist, "the playlist")
                playlist_id = required_text(playlist, "id")
            except Malformed as problem:
                yield rejected(
                    PLAYLISTS,
                    problem,
                    f"playlists page {page_number + 1} item {index}",
                    f"playlists/{page_number + 1}#{index}",
                )
                continue
            try:
                items, said = _playlist_items(api, playlist_id)
            except _NotFound:
                yield skip(
                    PLAYLISTS,
                    "resource_not_found",
                    f"playlist {playlist_id} disappeared while it was being read",
                    recovery_action="retry_by_runtime",
                    retryable=True,
                )
                continue
            yield from said
            owner = playlist.get("owner")
            tracks = playlist.get("tracks")
            total = tracks.get("total") if isinstance(tracks, dict) else None
            description = playlist.get("description")
            data = compact(
                {
                    "playlist_id": playlist_id,
                    "name": playlist.get("name") or "",
                    # The Web API HTML-escapes descriptions; the archive does not.
                    "description": html.unescape(description)
                    if isinstance(description, str) and description
                    else None,
                    "public": playlist.get("public")
                    if isinstance(playlist.get("public"), bool)
                    else None,
                    "collaborative": bool(playlist.get("collaborative")),
                    "owner_id": owner.get("id") if isinstance(owner, dict) else None,
                    "snapshot_id": playlist.get("snapshot_id") or None,
                    "item_count": total if isinstance(total, int) else len(items),
                    "items": items,
                }
            )
            message = scoped_record(start, PLAYLISTS, playlist_id, data)
            if message is not None:
                count += 1
                yield message
        yield progress("playlists", stream=PLAYLISTS, count=count)


def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
    """Every message of the run, each preceded by CREDENTIALS when producing it refreshed the
    token; a failure after a refresh still hands the new tokens back first."""
    api = _Api(env)
    try:
        for message in _collect(start, api):
            yield from api.handed_back()
            yield message
        yield from api.handed_back()
    except Exception:
        yield from api.handed_back()
        raise
    finally:
        api.close()


def _collect(start: Start, api: _Api) -> Iterator[Message]:
    """Identify the account from /v1/me, then collect each stream in scope in turn."""
    try:
        me = api.get(api.url("/v1/me"))
    except (_StreamGap, _NotFound) as exc:
        gap = exc if isinstance(exc, _StreamGap) else None
        raise ConnectorError(
            f"could not read the Spotify account: {exc}",
            code=gap.reason if gap else "upstream_rejected_request",
            retryable=gap.retryable if gap else False,
            recovery_action=gap.recovery_action if gap else "unknown",
        ) from None
    if not isinstance(me, dict) or not isinstance(me.get("id"), str) or not me["id"]:
        raise ConnectorError(
            "Spotify's /v1/me answer carries no account id",
            code="unexpected_upstream_response",
            recovery_action="retry_on_connector_upgrade",
        )
    yield identity(CLAIM, me["id"])
    if start.identify_only:
        return
    if start.wants(PROFILE):
        yield from _profile(start, me)
    collectors = (
        (LISTENING_HISTORY, _listening_history),
        (SAVED_TRACKS, _saved_tracks),
        (SAVED_SHOWS, _saved_shows),
        (SAVED_EPISODES, _saved_episodes),
        (PLAYLISTS, _playlists),
    )
    for stream, collector in collectors:
        if not start.wants(stream):
            continue
        try:
            yield from collector(start, api)
        except _StreamGap as gap:
            yield skip(
                stream,
                gap.reason,
                str(gap),
                recovery_action=gap.recovery_action,
                retryable=gap.retryable,
            )
        except _NotFound:
            yield skip(
                stream,
                "upstream_unavailable",
                "Spotify answered 404 for a collection it documents",
                recovery_action="retry_by_runtime",
                retryable=True,
            )
