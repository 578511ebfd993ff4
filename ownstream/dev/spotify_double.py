"""A local HTTP test double of the Spotify Web API and its accounts service (OAuth).

Connector tests need Spotify's real response shapes, paging, cursor rules, the 50-play
recently-played window and its failure modes (401, 429 with Retry-After, 5xx) without the network
or real accounts. The double serves generated `SpotifyUser`s from memory on a background thread;
tests steer it through tokens, fault injection and by appending plays to a user.

Its accounts service follows Spotify's authorization code flow with PKCE: `GET /authorize`
checks the registered client and redirect URI and shows a consent page (the "user" signs in by
picking an account), `POST /authorize/consent` redirects back with a single-use code or
`error=access_denied`, and `POST /api/token` trades a code (with its S256 `code_verifier`, or
the client secret) or a refresh token for short-lived access tokens. Whether a refresh answers a
new refresh token (invalidating the old one) is configurable, as Spotify may do either; a user
can revoke an app's access (`revoke_access`), which invalidates every token of that grant.
`consent` drives the consent page over HTTP, as a browser would, so tests need no browser.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import html
import json
import re
import secrets
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from ownstream.dev.spotify_data import (
    Play,
    Playlist,
    PlaylistItem,
    SavedEpisode,
    SavedShow,
    SavedTrack,
    SpotifyAlbum,
    SpotifyArtist,
    SpotifyShow,
    SpotifyTrack,
    SpotifyUser,
    epoch_ms,
)

SCOPE = (
    "user-read-recently-played user-library-read playlist-read-private "
    "user-read-playback-position"
)
_PLAYLIST_PATH = re.compile(r"^/v1/playlists/([^/]+)/(tracks|items)$")
_FAULT_MESSAGES = {
    429: "API rate limit exceeded",
    500: "Server error",
    502: "Bad gateway",
    503: "Service unavailable",
}
_NEVER_EXPIRES = 100 * 365 * 86_400
_CONSENT_FIELD = re.compile(r'name="consent_id" value="([^"]+)"')

_T = TypeVar("_T")
_Saved = TypeVar("_Saved", SavedTrack, SavedShow, SavedEpisode)


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()
    page: str | None = None  # an HTML page instead of a JSON body


@dataclass(frozen=True)
class _AccessToken:
    user_id: str
    expires_at: float
    grant_id: str | None = None


@dataclass(frozen=True)
class _Client:
    """An app registered in Spotify's developer dashboard."""

    client_id: str
    redirect_uris: frozenset[str]
    client_secret: str | None


@dataclass(frozen=True)
class _Grant:
    """A user's consent to one app: every token issued under it dies when it is revoked."""

    user_id: str
    client_id: str
    client_secret: str | None
    scope: str
    pkce: bool  # issued through PKCE: refreshes need no client secret


@dataclass(frozen=True)
class _RefreshToken:
    grant_id: str


@dataclass(frozen=True)
class _AuthorizationRequest:
    client_id: str
    redirect_uri: str
    state: str | None
    scope: str
    code_challenge: str | None


@dataclass(frozen=True)
class _Code:
    request: _AuthorizationRequest
    user_id: str


@dataclass
class _Fault:
    path_prefix: str
    status: int
    remaining: int
    retry_after: int | None


@dataclass
class _Edit:
    path_prefix: str
    edit: Callable[[Any], None]
    remaining: int


def _api_error(status: int, message: str) -> _Reply:
    return _Reply(status, {"error": {"status": status, "message": message}})


def _iso_ms(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _iso_s(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_param(query: Mapping[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise _ApiError(400, f"Invalid {name}") from None
    if not low <= value <= high:
        raise _ApiError(400, f"Invalid {name}")
    return value


def _cursor_param(query: Mapping[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    try:
        value = int(values[0])
    except ValueError:
        raise _ApiError(400, f"Invalid {name} cursor") from None
    if value < 0:
        raise _ApiError(400, f"Invalid {name} cursor")
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], double: SpotifyDouble) -> None:
        self.double = double
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up; anything else is a bug worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Close kept-alive connections so a stopped double really stops answering."""
        with self.connections_lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately; avoid 40 ms stalls

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log lives on `SpotifyDouble.requests`, not stderr."""

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        authorization = self.headers.get("Authorization") or ""
        reply = self.server.double._dispatch(method, self.path, authorization, body)
        if reply.page is not None:
            payload, content_type = reply.page.encode(), "text/html; charset=utf-8"
        else:
            payload = (
                b"" if reply.body is None else json.dumps(reply.body, ensure_ascii=False).encode()
            )
            content_type = "application/json; charset=utf-8"
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


class SpotifyDouble:
    """Spotify's Web API for a fixed set of users, served from memory on 127.0.0.1.

    Users are held by reference: `add_plays(double.user(id), ...)` is visible to the next request.
    """

    def __init__(
        self,
        users: Sequence[SpotifyUser],
        *,
        recently_played_window: int = 50,
        rotate_refresh_tokens: bool = False,
        access_token_seconds: int = 3600,
    ) -> None:
        if recently_played_window < 0:
            raise ValueError("recently_played_window must be >= 0")
        self._users = {user.id: user for user in users}
        self._window = recently_played_window
        self._lock = threading.Lock()
        self._tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._clients: dict[str, _Client] = {}
        self._grants: dict[str, _Grant] = {}
        self._pending_consents: dict[str, _AuthorizationRequest] = {}
        self._codes: dict[str, _Code] = {}
        self._faults: list[_Fault] = []
        self._edits: list[_Edit] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.access_token_seconds = access_token_seconds
        self.base_url = ""
        self.requests: list[tuple[str, str]] = []
        # (grant_type, the code or refresh token presented) per token request, in order
        self.token_requests: list[tuple[str, str]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def _bind(self, host: str, port: int) -> _Server:
        if self._server is not None:
            raise RuntimeError("the double is already serving")
        server = _Server((host, port), self)
        self._server = server
        self.base_url = f"http://{host}:{server.server_address[1]}"
        return server

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        server = self._bind(host, port)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # a quick stop() keeps test teardown fast
            name="spotify-double",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join()

    def __enter__(self) -> SpotifyDouble:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- steering ----------------------------------------------------------------------------

    def user(self, user_id: str) -> SpotifyUser:
        return self._users[user_id]

    def issue_token(
        self,
        user_id: str,
        *,
        expires_in: int = 3600,
        token: str | None = None,
        grant_id: str | None = None,
    ) -> str:
        """An access token for `user_id`, valid for `expires_in` seconds (0: already expired)."""
        if user_id not in self._users:
            raise KeyError(f"unknown user {user_id!r}")
        token = token if token is not None else "BQ" + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = _AccessToken(user_id, time.time() + expires_in, grant_id)
        return token

    def expire_token(self, token: str) -> None:
        with self._lock:
            self._tokens[token] = replace(self._tokens[token], expires_at=0.0)

    def expire_access_tokens(self, user_id: str) -> None:
        """Every access token of `user_id` expires now, as an hour passing would do."""
        with self._lock:
            for token, grant in self._tokens.items():
                if grant.user_id == user_id:
                    self._tokens[token] = replace(grant, expires_at=0.0)

    def expire_refresh_token(self, token: str) -> None:
        """Spotify stops honouring this refresh token (it expired); the grant and its other
        tokens live on, unlike `revoke_access`."""
        with self._lock:
            del self._refresh_tokens[token]

    def issue_refresh_token(
        self, user_id: str, *, client_id: str, client_secret: str | None = None
    ) -> str:
        """A refresh token that `POST /api/token` accepts only from this client (as if the
        user had approved it through the code flow without PKCE)."""
        if user_id not in self._users:
            raise KeyError(f"unknown user {user_id!r}")
        with self._lock:
            grant_id = secrets.token_hex(8)
            self._grants[grant_id] = _Grant(user_id, client_id, client_secret, SCOPE, False)
            return self._new_refresh_token(grant_id)

    def _new_refresh_token(self, grant_id: str) -> str:
        token = "AQ" + secrets.token_urlsafe(96)
        self._refresh_tokens[token] = _RefreshToken(grant_id)
        return token

    def register_client(
        self, client_id: str, redirect_uris: Sequence[str], *, client_secret: str | None = None
    ) -> None:
        """An app in the developer dashboard: its id, allowed redirect URIs and secret."""
        with self._lock:
            self._clients[client_id] = _Client(client_id, frozenset(redirect_uris), client_secret)

    def revoke_access(self, user_id: str, client_id: str) -> None:
        """The user removes the app from their account: its access and refresh tokens die."""
        with self._lock:
            revoked = {
                grant_id
                for grant_id, grant in self._grants.items()
                if (grant.user_id, grant.client_id) == (user_id, client_id)
            }
            for grant_id in revoked:
                del self._grants[grant_id]
            for store in (self._tokens, self._refresh_tokens):
                for token in [t for t, g in store.items() if g.grant_id in revoked]:
                    del store[token]

    def consent(self, authorization_url: str, user_id: str, *, approve: bool = True) -> str:
        """Act as the user's browser: open the authorization URL, sign in as `user_id` on the
        consent page and approve (or deny). Returns where Spotify redirects the browser."""
        with httpx.Client(trust_env=False, timeout=10) as browser:
            page = browser.get(authorization_url)
            if page.is_redirect:
                return page.headers["Location"]
            found = _CONSENT_FIELD.search(page.text)
            if page.status_code != 200 or found is None:
                raise ValueError(f"the authorization was refused ({page.status_code}): {page.text}")
            decision = browser.post(
                f"{self.base_url}/authorize/consent",
                data={
                    "consent_id": found.group(1),
                    "user_id": user_id,
                    "decision": "approve" if approve else "deny",
                },
            )
            if not decision.is_redirect:
                raise ValueError(f"the consent was refused ({decision.status_code})")
            location: str = decision.headers["Location"]
            return location

    def inject_fault(
        self, path_prefix: str, status: int, *, times: int = 1, retry_after: int | None = None
    ) -> None:
        """Answer `status` to the next `times` requests whose path starts with `path_prefix`."""
        if times < 1:
            raise ValueError("times must be >= 1")
        HTTPStatus(status)  # rejects codes that are not HTTP statuses
        with self._lock:
            self._faults.append(_Fault(path_prefix, status, times, retry_after))

    def edit_answers(
        self, path_prefix: str, edit: Callable[[Any], None], *, times: int = 1
    ) -> None:
        """Let `edit` alter, in place, the JSON body of the next `times` successful answers
        whose path starts with `path_prefix`: how a test hands a connector the malformed item
        (a null time, a missing name) that a real API occasionally sends."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._edits.append(_Edit(path_prefix, edit, times))

    def _take_edit(self, path: str) -> Callable[[Any], None] | None:
        with self._lock:
            for pending in self._edits:
                if path.startswith(pending.path_prefix):
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        self._edits.remove(pending)
                    return pending.edit
        return None

    # --- request handling --------------------------------------------------------------------

    def _dispatch(self, method: str, target: str, authorization: str, body: bytes) -> _Reply:
        with self._lock:
            self.requests.append((method, target))
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        fault = self._take_fault(path)
        if fault is not None:
            return fault
        try:
            if path == "/authorize" and method == "GET":
                return self._authorize(query)
            if path == "/authorize/consent" and method == "POST":
                return self._decide(_form(body))
            if path == "/api/token":
                if method != "POST":
                    raise _ApiError(405, "Method not allowed")
                return self._token(authorization, body)
            route = self._route(path)
            if route is None:
                raise _ApiError(404, "Service not found")
            if method != "GET":
                raise _ApiError(405, "Method not allowed")
            user = self._authenticate(authorization)
            body = route(user, path, query, target)
            edit = self._take_edit(path)
            if edit is not None:
                edit(body)
            return _Reply(200, body)
        except _ApiError as error:
            return _api_error(error.status, error.message)

    def _take_fault(self, path: str) -> _Reply | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    break
            else:
                return None
        retry_after = fault.retry_after
        if fault.status == 429 and retry_after is None:
            retry_after = 1
        message = _FAULT_MESSAGES.get(fault.status) or HTTPStatus(fault.status).phrase
        extra = () if retry_after is None else (("Retry-After", str(retry_after)),)
        return _Reply(fault.status, {"error": {"status": fault.status, "message": message}}, extra)

    def _route(
        self, path: str
    ) -> Callable[[SpotifyUser, str, Mapping[str, list[str]], str], Any] | None:
        routes: dict[str, Callable[[SpotifyUser, str, Mapping[str, list[str]], str], Any]] = {
            "/v1/me": self._me,
            "/v1/me/player/recently-played": self._recently_played,
            "/v1/me/tracks": self._saved_tracks,
            "/v1/me/shows": self._saved_shows,
            "/v1/me/episodes": self._saved_episodes,
            "/v1/me/playlists": self._playlists,
        }
        if path in routes:
            return routes[path]
        return self._playlist_items if _PLAYLIST_PATH.match(path) else None

    def _authenticate(self, authorization: str) -> SpotifyUser:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _ApiError(401, "No token provided")
        with self._lock:
            grant = self._tokens.get(token.strip())
        if grant is None:
            raise _ApiError(401, "Invalid access token")
        if grant.expires_at <= time.time():
            raise _ApiError(401, "The access token expired")
        return self._users[grant.user_id]

    # --- accounts service (OAuth) -------------------------------------------------------------

    def _authorize(self, query: Mapping[str, list[str]]) -> _Reply:
        """The authorization request; a bad client or redirect URI gets an error page (never
        a redirect to an unregistered URI), other errors go back to the redirect URI."""
        params = {k: v[0] for k, v in query.items()}
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            return _page(400, "INVALID_CLIENT: Invalid client")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _page(400, "INVALID_CLIENT: Invalid redirect URI")
        state = params.get("state")

        def refuse(error: str) -> _Reply:
            return _redirect(redirect_uri, {"error": error, "state": state})

        if params.get("response_type") != "code":
            return refuse("unsupported_response_type")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if (challenge is None) != (method is None) or method not in (None, "S256"):
            return refuse("invalid_request")
        if challenge is not None and not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge):
            return refuse("invalid_request")
        request = _AuthorizationRequest(
            client.client_id, redirect_uri, state, params.get("scope", ""), challenge
        )
        consent_id = secrets.token_urlsafe(16)
        with self._lock:
            self._pending_consents[consent_id] = request
        users = "".join(
            f'<option value="{html.escape(user_id)}">{html.escape(user_id)}</option>'
            for user_id in self._users
        )
        return _page(
            200,
            f"<h1>Log in to Spotify</h1><p>{html.escape(client.client_id)} asks to: "
            f"{html.escape(request.scope) or 'read your public profile'}</p>"
            f'<form method="post" action="/authorize/consent">'
            f'<input type="hidden" name="consent_id" value="{consent_id}">'
            f'<select name="user_id">{users}</select>'
            '<button name="decision" value="approve">Agree</button>'
            '<button name="decision" value="deny">Cancel</button></form>',
        )

    def _decide(self, form: Mapping[str, str]) -> _Reply:
        with self._lock:
            request = self._pending_consents.pop(form.get("consent_id", ""), None)
        user_id = form.get("user_id", "")
        if request is None or user_id not in self._users:
            return _page(400, "Something went wrong: this consent is unknown or was used")
        if form.get("decision") != "approve":
            denied = {"error": "access_denied", "state": request.state}
            return _redirect(request.redirect_uri, denied)
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(request, user_id)
        return _redirect(request.redirect_uri, {"code": code, "state": request.state})

    def _token(self, authorization: str, body: bytes) -> _Reply:
        form = _form(body)
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret")
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, client_secret = decoded.partition(":")
        grant_type = form.get("grant_type")
        if grant_type is None:
            return _oauth_error("unsupported_grant_type", "grant_type parameter is missing")
        if grant_type == "authorization_code":
            self.token_requests.append((grant_type, form.get("code", "")))
            return self._exchange_code(form, client_id, client_secret)
        if grant_type == "refresh_token":
            self.token_requests.append((grant_type, form.get("refresh_token", "")))
            return self._refresh(form, client_id, client_secret)
        return _oauth_error("unsupported_grant_type", "grant_type is not supported")

    def _exchange_code(
        self, form: Mapping[str, str], client_id: str, client_secret: str | None
    ) -> _Reply:
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)  # single use
        if code is None:
            return _oauth_error("invalid_grant", "Invalid authorization code")
        request = code.request
        client = self._clients[request.client_id]
        if client_id != client.client_id:
            return _oauth_error("invalid_client", "Invalid client")
        if client_secret is not None and client_secret != client.client_secret:
            return _oauth_error("invalid_client", "Invalid client secret")
        if form.get("redirect_uri") != request.redirect_uri:
            return _oauth_error("invalid_grant", "Invalid redirect URI")
        if request.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != request.code_challenge:
                return _oauth_error("invalid_grant", "code_verifier was incorrect")
        elif client_secret is None:
            return _oauth_error("invalid_client", "Invalid client")
        grant_id = secrets.token_hex(8)
        with self._lock:
            self._grants[grant_id] = _Grant(
                code.user_id,
                client.client_id,
                client.client_secret,
                request.scope,
                request.code_challenge is not None,
            )
            refresh_token = self._new_refresh_token(grant_id)
        return self._tokens_reply(grant_id, refresh_token)

    def _refresh(
        self, form: Mapping[str, str], client_id: str, client_secret: str | None
    ) -> _Reply:
        presented = form.get("refresh_token", "")
        with self._lock:
            token = self._refresh_tokens.get(presented)
            grant = self._grants.get(token.grant_id) if token is not None else None
        if token is None or grant is None:
            return _oauth_error("invalid_grant", "Invalid refresh token")
        if client_id != grant.client_id:
            return _oauth_error("invalid_client", "Invalid client")
        if client_secret is not None and client_secret != grant.client_secret:
            return _oauth_error("invalid_client", "Invalid client secret")
        if client_secret is None and not grant.pkce:
            return _oauth_error("invalid_client", "Invalid client")
        rotated = None
        if self.rotate_refresh_tokens:
            with self._lock:
                self._refresh_tokens.pop(presented, None)
                rotated = self._new_refresh_token(token.grant_id)
        return self._tokens_reply(token.grant_id, rotated)

    def _tokens_reply(self, grant_id: str, refresh_token: str | None) -> _Reply:
        with self._lock:
            grant = self._grants[grant_id]
        access = self.issue_token(
            grant.user_id, expires_in=self.access_token_seconds, grant_id=grant_id
        )
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_token_seconds,
            "scope": grant.scope,
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return _Reply(200, body)

    # --- endpoints ---------------------------------------------------------------------------

    def _me(self, user: SpotifyUser, path: str, query: Mapping[str, list[str]], target: str) -> Any:
        return {
            "country": user.country,
            "display_name": user.display_name,
            "email": user.email,
            "external_urls": {"spotify": f"https://open.spotify.com/user/{user.id}"},
            "followers": {"href": None, "total": zlib.crc32(user.id.encode()) % 40},
            "href": f"{self.base_url}/v1/users/{user.id}",
            "id": user.id,
            "images": [],
            "product": user.product,
            "type": "user",
            "uri": f"spotify:user:{user.id}",
        }

    def _recently_played(
        self, user: SpotifyUser, path: str, query: Mapping[str, list[str]], target: str
    ) -> Any:
        """Newest first, drawn only from the latest `recently_played_window` plays."""
        limit = _int_param(query, "limit", 20, 1, 50)
        after, before = _cursor_param(query, "after"), _cursor_param(query, "before")
        if after is not None and before is not None:
            raise _ApiError(400, "Only one of after or before may be specified")
        window: list[Play] = user.plays[-self._window :] if self._window else []
        if after is not None:
            candidates = [p for p in window if epoch_ms(p.played_at) > after]
        elif before is not None:
            candidates = [p for p in window if epoch_ms(p.played_at) < before]
        else:
            candidates = window
        chosen = candidates[-limit:][::-1]
        page: dict[str, Any] = {
            "href": f"{self.base_url}{target}",
            "limit": limit,
            "next": None,
            "cursors": None,
            "items": [
                {"track": self._track(p.track), "played_at": _iso_ms(p.played_at), "context": None}
                for p in chosen
            ],
        }
        if chosen:
            newest, oldest = epoch_ms(chosen[0].played_at), epoch_ms(chosen[-1].played_at)
            page["cursors"] = {"after": str(newest), "before": str(oldest)}
            if epoch_ms(window[0].played_at) < oldest:
                page["next"] = f"{self.base_url}{path}?before={oldest}&limit={limit}"
        return page

    def _library(
        self,
        path: str,
        query: Mapping[str, list[str]],
        saved: Sequence[_Saved],
        render: Callable[[_Saved], Any],
    ) -> Any:
        """A saved-items collection: newest first, pages of 20 (at most 50), as Spotify's."""
        newest = sorted(saved, key=lambda item: item.added_at, reverse=True)
        return self._page(path, query, newest, render, max_limit=50, default_limit=20)

    def _saved_tracks(
        self, user: SpotifyUser, path: str, query: Mapping[str, list[str]], target: str
    ) -> Any:
        def render(item: SavedTrack) -> Any:
            return {"added_at": _iso_s(item.added_at), "track": self._track(item.track)}

        return self._library(path, query, user.saved_tracks, render)

    def _saved_shows(
        self, user: SpotifyUser, path: str, query: Mapping[str, list[str]], target: str
    ) -> Any:
        def render(item: SavedShow) -> Any:
            return {"added_at": _iso_s(item.added_at), "show": self._show(item.show)}

        return self._library(path, query, user.saved_shows, render)

    def _saved_episodes(
        self, user: SpotifyUser, path: str, query: Mapping[str, list[str]], target: str
    ) -> Any:
        def render(item: SavedEpisode) -> Any:
            episode = item.episode
            return {
                "added_at": _iso_s(item.added_at),
                "episode": {
                    "audio_preview_url": None,
                    "description": f"{episode.name}, from {episode.show.name}.",
                    "html_description": f"<p>{episode.name}, from {episode.show.name}.</p>",
                    "duration_ms": episode.duration_ms,
                    "explicit": False,
                    "external_urls": {
                        "spotify": f"https://open.spotify.com/episode/{episode.id}"
                    },
                    "href": f"{self.base_url}/v1/episodes/{episode.id}",
                    "id": episode.id,
                    "images": [],
                    "is_externally_hosted": False,
                    "is_playable": True,
                    "language": "en",
                    "languages": ["en"],
                    "name": episode.name,
                    "release_date": episode.release_date,
                    "release_date_precision": "day",
                    "resume_point": {
                        "fully_played": item.fully_played,
                        "resume_position_ms": item.resume_position_ms,
                    },
                    "type": "episode",
                    "uri": episode.uri,
                    "show": self._show(episode.show),
                },
            }

        return self._library(path, query, user.saved_episodes, render)

    def _playlists(
        self, user: SpotifyUser, path: str, query: Mapping[str, list[str]], target: str
    ) -> Any:
        def render(playlist: Playlist) -> Any:
            return self._simplified_playlist(user, playlist)

        return self._page(path, query, list(user.playlists), render, max_limit=50, default_limit=20)

    def _playlist_items(
        self, user: SpotifyUser, path: str, query: Mapping[str, list[str]], target: str
    ) -> Any:
        match = _PLAYLIST_PATH.match(path)
        assert match is not None
        playlist = next((p for p in user.playlists if p.id == match.group(1)), None)
        if playlist is None:
            raise _ApiError(404, "Resource not found")
        added_by = self._user_ref(user)

        def render(item: PlaylistItem) -> Any:
            return {
                "added_at": _iso_s(item.added_at),
                "added_by": added_by,
                "is_local": False,
                "track": self._track(item.track),
            }

        return self._page(
            path, query, list(playlist.items), render, max_limit=100, default_limit=100
        )

    # --- object shapes -----------------------------------------------------------------------

    def _page(
        self,
        path: str,
        query: Mapping[str, list[str]],
        items: Sequence[_T],
        render: Callable[[_T], Any],
        *,
        max_limit: int,
        default_limit: int,
    ) -> Any:
        limit = _int_param(query, "limit", default_limit, 1, max_limit)
        offset = _int_param(query, "offset", 0, 0, 1_000_000_000)
        total = len(items)

        def url(at: int) -> str:
            return f"{self.base_url}{path}?offset={at}&limit={limit}"

        return {
            "href": url(offset),
            "items": [render(item) for item in items[offset : offset + limit]],
            "limit": limit,
            "next": url(offset + limit) if offset + limit < total else None,
            "offset": offset,
            "previous": url(max(0, offset - limit)) if offset > 0 else None,
            "total": total,
        }

    def _user_ref(self, user: SpotifyUser) -> Any:
        return {
            "external_urls": {"spotify": f"https://open.spotify.com/user/{user.id}"},
            "href": f"{self.base_url}/v1/users/{user.id}",
            "id": user.id,
            "type": "user",
            "uri": f"spotify:user:{user.id}",
        }

    def _simplified_playlist(self, user: SpotifyUser, playlist: Playlist) -> Any:
        return {
            "collaborative": playlist.collaborative,
            "description": playlist.description,
            "external_urls": {"spotify": f"https://open.spotify.com/playlist/{playlist.id}"},
            "href": f"{self.base_url}/v1/playlists/{playlist.id}",
            "id": playlist.id,
            "images": [],
            "name": playlist.name,
            "owner": {**self._user_ref(user), "display_name": user.display_name},
            "public": playlist.public,
            "snapshot_id": playlist.snapshot_id,
            "tracks": {
                "href": f"{self.base_url}/v1/playlists/{playlist.id}/tracks",
                "total": len(playlist.items),
            },
            "type": "playlist",
            "uri": f"spotify:playlist:{playlist.id}",
        }

    def _show(self, show: SpotifyShow) -> Any:
        """A simplified show object, as saved shows and episodes embed it."""
        return {
            "available_markets": [],
            "copyrights": [],
            "description": show.description,
            "html_description": f"<p>{show.description}</p>",
            "explicit": False,
            "external_urls": {"spotify": f"https://open.spotify.com/show/{show.id}"},
            "href": f"{self.base_url}/v1/shows/{show.id}",
            "id": show.id,
            "images": [],
            "is_externally_hosted": False,
            "languages": ["en"],
            "media_type": "audio",
            "name": show.name,
            "publisher": show.publisher,
            "type": "show",
            "uri": show.uri,
            "total_episodes": show.total_episodes,
        }

    def _artist(self, artist: SpotifyArtist) -> Any:
        return {
            "external_urls": {"spotify": f"https://open.spotify.com/artist/{artist.id}"},
            "href": f"{self.base_url}/v1/artists/{artist.id}",
            "id": artist.id,
            "name": artist.name,
            "type": "artist",
            "uri": f"spotify:artist:{artist.id}",
        }

    def _album(self, album: SpotifyAlbum) -> Any:
        return {
            "album_type": "album",
            "artists": [self._artist(a) for a in album.artists],
            "external_urls": {"spotify": f"https://open.spotify.com/album/{album.id}"},
            "href": f"{self.base_url}/v1/albums/{album.id}",
            "id": album.id,
            "images": [],
            "name": album.name,
            "release_date": album.release_date,
            "release_date_precision": "day",
            "total_tracks": album.total_tracks,
            "type": "album",
            "uri": f"spotify:album:{album.id}",
        }

    def _track(self, track: SpotifyTrack) -> Any:
        return {
            "album": self._album(track.album),
            "artists": [self._artist(a) for a in track.artists],
            "available_markets": [],
            "disc_number": 1,
            "duration_ms": track.duration_ms,
            "explicit": False,
            "external_ids": {},
            "external_urls": {"spotify": f"https://open.spotify.com/track/{track.id}"},
            "href": f"{self.base_url}/v1/tracks/{track.id}",
            "id": track.id,
            "is_local": False,
            "name": track.name,
            "popularity": track.popularity,
            "preview_url": None,
            "track_number": track.track_number,
            "type": "track",
            "uri": track.uri,
        }


def _oauth_error(error: str, description: str) -> _Reply:
    return _Reply(400, {"error": error, "error_description": description})


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _page(status: int, content: str) -> _Reply:
    return _Reply(status, None, page=f"<!doctype html><title>Spotify</title>{content}")


def _redirect(uri: str, params: Mapping[str, str | None]) -> _Reply:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return _Reply(302, None, (("Location", f"{uri}{'&' if '?' in uri else '?'}{query}"),))


def serve(
    host: str,
    port: int,
    users: Sequence[SpotifyUser],
    tokens: Mapping[str, str],
    *,
    clients: Mapping[str, Sequence[str]] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted; `tokens` maps fixed access tokens (that never expire) to users,
    `clients` registers apps (client id to redirect URIs) for the OAuth flow.

    `on_ready` receives the base URL once the socket is bound, which matters when `port` is 0.
    """
    double = SpotifyDouble(users, rotate_refresh_tokens=True)
    for token, user_id in tokens.items():
        double.issue_token(user_id, token=token, expires_in=_NEVER_EXPIRES)
    for client_id, redirect_uris in (clients or {}).items():
        double.register_client(client_id, redirect_uris)
    server = double._bind(host, port)
    if on_ready is not None:
        on_ready(double.base_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.drop_connections()
