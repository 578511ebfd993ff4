"""Spotify Web API connector: profile, recently played, Liked Songs and playlists.

Failure policy, per stream: a rate limit that outlasts its retries or an upstream outage becomes
a known gap (SKIP_RESULT) and the run moves on to the next stream; a rejected credential fails
the whole run, because every later request would be rejected too. STATE is emitted for a stream
only after the stream finished, so a failure never checkpoints past data that was not collected.

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
from collections.abc import Iterator, Mapping
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
    SAVED_TRACKS,
    compact,
    play_id,
    scoped_record,
)
from ownstream.runtime import oauth_client
from ownstream.runtime.sdk import (
    ConnectorError,
    Message,
    ReconnectRequired,
    Start,
    credentials,
    identity,
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


def _artist(track: Mapping[str, Any]) -> str | None:
    artists = track.get("artists") or []
    first = artists[0] if artists and isinstance(artists[0], dict) else {}
    name = first.get("name")
    return name if isinstance(name, str) and name else None


def _album(track: Mapping[str, Any]) -> str | None:
    album = track.get("album")
    name = album.get("name") if isinstance(album, dict) else None
    return name if isinstance(name, str) and name else None


def _as_track(item: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The track of a library or playlist item; None for episodes and unavailable entries."""
    track = item.get("track")
    if not isinstance(track, dict) or track.get("type", "track") != "track":
        return None
    if not isinstance(track.get("name"), str) or not track["name"] or _artist(track) is None:
        return None
    return track


def _ms(moment: str) -> int:
    """Unix milliseconds, exactly: the unit of the recently-played cursors."""
    return (parse_iso(moment) - _EPOCH) // timedelta(milliseconds=1)


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
    """Recently played, newest first; incremental from the `after` cursor when there is one."""
    cursor = start.state.get(LISTENING_HISTORY)
    after = cursor.get("after") if isinstance(cursor, dict) else None
    if not isinstance(after, int) or isinstance(after, bool):
        after = None
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if after is not None:
        params["after"] = after
    newest = after
    seen: set[str] = set()
    keys: set[str] = set()
    reached_cursor = False
    pages = 0
    next_url: str | None = api.url("/v1/me/player/recently-played")
    next_params: Mapping[str, Any] | None = params
    while next_url and not reached_cursor and pages < MAX_PAGES:
        page = api.get(next_url, next_params)
        pages += 1
        fresh = 0
        for item in page.get("items") or []:
            track = _as_track(item)
            played = item.get("played_at")
            if track is None or not isinstance(played, str):
                continue
            played_ms = _ms(played)
            if after is not None and played_ms <= after:
                reached_cursor = True
                continue
            at = parse_iso(played)
            artist = _artist(track) or ""
            key = play_id(at, artist, track["name"])
            identity_of_play = f"{played_ms}|{track.get('uri')}"
            if identity_of_play in seen:
                continue
            seen.add(identity_of_play)
            fresh += 1
            if key in keys:
                continue  # the same track ending in the same minute: one play by definition
            keys.add(key)
            data = compact(
                {
                    "play_id": key,
                    "played_at": iso(at),
                    "track_name": track["name"],
                    "artist_name": artist,
                    "album_name": _album(track),
                    "track_uri": track.get("uri") or None,
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


def _saved_tracks(start: Start, api: _Api) -> Iterator[Message]:
    count = 0
    for page in api.pages(api.url("/v1/me/tracks"), {"limit": PAGE_SIZE}):
        for item in page.get("items") or []:
            track = _as_track(item)
            if track is None or not isinstance(track.get("uri"), str):
                continue
            added = item.get("added_at")
            duration = track.get("duration_ms")
            data = compact(
                {
                    "track_uri": track["uri"],
                    "track_name": track["name"],
                    "artist_name": _artist(track),
                    "album_name": _album(track),
                    "added_at": iso(parse_iso(added)) if isinstance(added, str) else None,
                    "duration_ms": duration if isinstance(duration, int) else None,
                }
            )
            message = scoped_record(start, SAVED_TRACKS, track["uri"], data)
            if message is not None:
                count += 1
                yield message
        total = page.get("total")
        yield progress(
            "saved tracks",
            stream=SAVED_TRACKS,
            count=count,
            total=total if isinstance(total, int) else None,
        )


def _playlist_items(api: _Api, playlist_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    url = api.url(f"/v1/playlists/{playlist_id}/tracks")
    for page in api.pages(url, {"limit": PLAYLIST_ITEMS_PAGE_SIZE}):
        for item in page.get("items") or []:
            track = _as_track(item)
            if track is None:
                continue
            added = item.get("added_at")
            items.append(
                compact(
                    {
                        "track_name": track["name"],
                        "artist_name": _artist(track),
                        "album_name": _album(track),
                        "track_uri": track.get("uri") or None,
                        "added_at": iso(parse_iso(added)) if isinstance(added, str) else None,
                    }
                )
            )
    return items


def _playlists(start: Start, api: _Api) -> Iterator[Message]:
    count = 0
    for page in api.pages(api.url("/v1/me/playlists"), {"limit": PAGE_SIZE}):
        for playlist in page.get("items") or []:
            if not isinstance(playlist, dict) or not isinstance(playlist.get("id"), str):
                continue
            playlist_id = playlist["id"]
            try:
                items = _playlist_items(api, playlist_id)
            except _NotFound:
                yield skip(
                    PLAYLISTS,
                    "resource_not_found",
                    f"playlist {playlist_id} disappeared while it was being read",
                    recovery_action="retry_by_runtime",
                    retryable=True,
                )
                continue
            owner = playlist.get("owner")
            tracks = playlist.get("tracks")
            total = tracks.get("total") if isinstance(tracks, dict) else None
            description = playlist.get("description")
            data = compact(
                {
                    "playlist_id": playlist_id,
                    "name": playlist.get("name") or "",
                    # The Web API HTML-escapes descriptions; the archive does not.
                    "description": html.unescape(description) if description else None,
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
