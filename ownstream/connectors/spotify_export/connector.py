"""Import Spotify's "Download your data" archive (basic, legacy or extended), ZIP or folder.

The archive is untrusted input, so everything is checked before the first message: member paths,
symlinks, declared sizes (a decompression bomb) and that every recognized file is valid JSON of
the expected shape. Only then is the account identified (IDENTITY must precede every RECORD) and
the files read again, one member at a time, to emit records in a deterministic order. Nothing is
extracted to disk and no more than one file is held in memory.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

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
from ownstream.runtime.sdk import ConnectorError, Message, Start, identity, progress, skip

MAX_TOTAL_UNCOMPRESSED = 4 * 1024**3
"""Refuse a ZIP whose members claim more than this in total once decompressed."""
MAX_COMPRESSION_RATIO = 200
"""Refuse a large member that claims to expand more than this many times..."""
RATIO_CHECK_MIN_SIZE = 10 * 1024**2
"""...when it decompresses to more than this (small, highly repetitive JSON is normal)."""
MAX_JSON_FILE_SIZE = 1024**3
"""A recognized file is parsed whole; beyond this it is refused rather than risk memory."""

# Recognized files, by base name, in the order their records are emitted.
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("userdata", re.compile(r"^Userdata\.json$", re.IGNORECASE)),
    # Extended before basic: when both are present the richer record of a play wins.
    (
        "extended",
        re.compile(r"^(Streaming_History_Audio_.*|endsong_\d+)\.json$", re.IGNORECASE),
    ),
    ("basic", re.compile(r"^StreamingHistory_music_\d+\.json$", re.IGNORECASE)),
    ("legacy", re.compile(r"^StreamingHistory\d+\.json$", re.IGNORECASE)),
    ("library", re.compile(r"^YourLibrary\.json$", re.IGNORECASE)),
    ("playlists", re.compile(r"^Playlist\d+\.json$", re.IGNORECASE)),
)
_KIND_ORDER = {kind: index for index, (kind, _) in enumerate(_KINDS)}
_KIND_STREAM = {
    "userdata": PROFILE,
    "basic": LISTENING_HISTORY,
    "legacy": LISTENING_HISTORY,
    "extended": LISTENING_HISTORY,
    "library": SAVED_TRACKS,
    "playlists": PLAYLISTS,
}
_KIND_SHAPE: dict[str, type] = {
    "userdata": dict,
    "basic": list,
    "legacy": list,
    "extended": list,
    "library": dict,
    "playlists": dict,
}
# Operating-system litter that is not part of what Spotify sent.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOM = b"\xef\xbb\xbf"


def _unsafe(message: str) -> ConnectorError:
    return ConnectorError(message, code="unsafe_archive", recovery_action="manual_action_required")


def _corrupt(message: str) -> ConnectorError:
    return ConnectorError(message, code="corrupt_archive", recovery_action="manual_action_required")


def _natural(path: str) -> list[Any]:
    """Sort key putting StreamingHistory_music_10 after _9, as Spotify numbered them."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", path)]


def _kind(path: str) -> str | None:
    base = re.split(r"[\\/]", path)[-1]  # ZIPs made on Windows may use backslashes
    return next((kind for kind, pattern in _KINDS if pattern.match(base)), None)


@dataclass(frozen=True)
class _File:
    path: str  # relative, "/"-separated, as shown to the owner
    kind: str | None
    size: int


class _Tree:
    """The files of an archive, readable one at a time."""

    def __init__(self, files: list[_File], reader: Callable[[str], bytes]) -> None:
        self.files = files
        self._reader = reader

    def read(self, file: _File) -> bytes:
        if file.size > MAX_JSON_FILE_SIZE:
            raise _unsafe(f"{file.path} is too large to import ({file.size} bytes)")
        return self._reader(file.path)


_READABLE_COMPRESSION = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise _unsafe(f"the archive member {name!r} points outside the archive")
    if info.compress_type not in _READABLE_COMPRESSION:
        raise _corrupt(f"the archive member {name!r} uses a compression method zip cannot read")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _unsafe(f"the archive member {name!r} is a symbolic link")
    if info.file_size > RATIO_CHECK_MIN_SIZE and info.file_size > MAX_COMPRESSION_RATIO * max(
        info.compress_size, 1
    ):
        raise _unsafe(f"the archive member {name!r} expands suspiciously (a decompression bomb)")


def _open_zip(path: Path) -> tuple[zipfile.ZipFile, _Tree]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _corrupt(f"the archive is not a readable ZIP file ({exc})") from None
    try:
        members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in archive.infolist():
            _check_member(info)
            total += info.file_size
            if info.is_dir() or _JUNK.search(info.filename):
                continue
            members.setdefault(info.filename, info)
        if total > MAX_TOTAL_UNCOMPRESSED:
            raise _unsafe(
                f"the archive expands to {total} bytes, over the {MAX_TOTAL_UNCOMPRESSED} limit"
            )
    except BaseException:
        archive.close()
        raise

    def read(name: str) -> bytes:
        try:
            return archive.read(members[name])
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            RuntimeError,
            OSError,
        ) as exc:
            raise _corrupt(f"{name} could not be read from the archive ({exc})") from None

    files = [_File(name, _kind(name), info.file_size) for name, info in members.items()]
    return archive, _Tree(files, read)


def _open_folder(root: Path) -> _Tree:
    files: list[_File] = []
    for directory, subdirs, names in os.walk(root, followlinks=False):
        for name in [*subdirs, *names]:
            full = Path(directory, name)
            if full.is_symlink():
                raise _unsafe(f"{full.relative_to(root).as_posix()} is a symbolic link")
        for name in names:
            full = Path(directory, name)
            relative = full.relative_to(root).as_posix()
            if not _JUNK.search(relative):
                files.append(_File(relative, _kind(relative), full.stat().st_size))

    def read(name: str) -> bytes:
        try:
            return (root / name).read_bytes()
        except OSError as exc:
            raise _corrupt(f"{name} could not be read ({exc.strerror})") from None

    return _Tree(files, read)


def _load(tree: _Tree, file: _File) -> Any:
    data = tree.read(file)
    try:
        document = orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError as exc:
        raise _corrupt(f"{file.path} is not valid JSON ({exc})") from None
    assert file.kind is not None
    shape = _KIND_SHAPE[file.kind]
    listed = {"library": "tracks", "playlists": "playlists"}.get(file.kind)
    if not isinstance(document, shape) or (
        listed is not None
        and isinstance(document, dict)
        and not isinstance(document.get(listed, []), list)
    ):
        raise _corrupt(f"{file.path} does not have the shape Spotify exports it in")
    return document


def _usernames(file: _File, document: Any) -> set[str]:
    if file.kind == "userdata":
        name = document.get("username")
        return {name} if isinstance(name, str) and name else set()
    if file.kind == "extended":
        return {
            entry["username"]
            for entry in document
            if isinstance(entry, dict)
            and isinstance(entry.get("username"), str)
            and entry["username"]
        }
    return set()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _day(value: Any) -> str | None:
    return value if isinstance(value, str) and _DAY.match(value) else None


@dataclass
class _Counts:
    emitted: int = 0
    duplicates: int = 0
    not_music: int = 0
    malformed: int = 0


class _Importer:
    """Turns recognized files into records; remembers play ids so paths within one archive
    (say, basic and extended history side by side) enrich one record instead of repeating it."""

    def __init__(self, start: Start) -> None:
        self.start = start
        self.plays: set[str] = set()
        self.playlist_names: dict[str, int] = {}

    def records(self, file: _File, document: Any, counts: _Counts) -> Iterator[Message]:
        handlers: dict[str, Callable[[Any, _Counts], Iterator[Message]]] = {
            "userdata": self._profile,
            "basic": self._basic,
            "legacy": self._basic,
            "extended": self._extended,
            "library": self._library,
            "playlists": self._playlists,
        }
        assert file.kind is not None
        yield from handlers[file.kind](document, counts)

    def _emit(
        self, stream: str, key: str, data: dict[str, Any], counts: _Counts
    ) -> Iterator[Message]:
        message = scoped_record(self.start, stream, key, data)
        if message is not None:
            counts.emitted += 1
            yield message

    def _profile(self, document: Any, counts: _Counts) -> Iterator[Message]:
        user_id = _text(document.get("username"))
        if user_id is None:
            counts.malformed += 1
            return
        data = compact(
            {
                "user_id": user_id,
                "email": _text(document.get("email")),
                "country": _text(document.get("country")),
                "account_created": _day(str(document.get("creationTime") or "")[:10]),
            }
        )
        yield from self._emit(PROFILE, user_id, data, counts)

    def _play(self, data: dict[str, Any], counts: _Counts) -> Iterator[Message]:
        key = data["play_id"]
        if key in self.plays:
            counts.duplicates += 1
            return
        self.plays.add(key)
        yield from self._emit(LISTENING_HISTORY, key, compact(data), counts)

    def _basic(self, document: Any, counts: _Counts) -> Iterator[Message]:
        """Basic and legacy history: `endTime` is UTC at minute precision."""
        for entry in document:
            track, artist = _text(entry.get("trackName")), _text(entry.get("artistName"))
            try:
                ended = datetime.strptime(entry["endTime"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            except (KeyError, TypeError, ValueError):
                ended = None
            if track is None or artist is None or ended is None:
                counts.malformed += 1
                continue
            ms_played = entry.get("msPlayed")
            yield from self._play(
                {
                    "play_id": play_id(ended, artist, track),
                    "played_at": iso(ended),
                    "track_name": track,
                    "artist_name": artist,
                    "ms_played": ms_played if isinstance(ms_played, int) else None,
                },
                counts,
            )

    def _extended(self, document: Any, counts: _Counts) -> Iterator[Message]:
        """Extended history: `ts` (UTC, seconds) is when the play ended, as in the Web API."""
        for entry in document:
            if not isinstance(entry, dict):
                counts.malformed += 1
                continue
            track = _text(entry.get("master_metadata_track_name"))
            if track is None:
                counts.not_music += 1  # podcast episode, video or audiobook
                continue
            artist = _text(entry.get("master_metadata_album_artist_name"))
            try:
                ended = parse_iso(entry["ts"])
            except (KeyError, TypeError, ValueError):
                ended = None
            if artist is None or ended is None:
                counts.malformed += 1
                continue

            def flag(name: str, entry: Mapping[str, Any] = entry) -> bool | None:
                value = entry.get(name)
                return value if isinstance(value, bool) else None

            ms_played = entry.get("ms_played")
            yield from self._play(
                {
                    "play_id": play_id(ended, artist, track),
                    "played_at": iso(ended),
                    "track_name": track,
                    "artist_name": artist,
                    "album_name": _text(entry.get("master_metadata_album_album_name")),
                    "ms_played": ms_played if isinstance(ms_played, int) else None,
                    "track_uri": _text(entry.get("spotify_track_uri")),
                    "platform": _text(entry.get("platform")),
                    "shuffle": flag("shuffle"),
                    "skipped": flag("skipped"),
                    "reason_start": _text(entry.get("reason_start")),
                    "reason_end": _text(entry.get("reason_end")),
                },
                counts,
            )

    def _library(self, document: Any, counts: _Counts) -> Iterator[Message]:
        for entry in document.get("tracks", []):
            uri = _text(entry.get("uri")) if isinstance(entry, dict) else None
            if uri is None:
                counts.malformed += 1
                continue
            track, artist = _text(entry.get("track")), _text(entry.get("artist"))
            if track is None or artist is None:
                counts.malformed += 1
                continue
            data = compact(
                {
                    "track_uri": uri,
                    "track_name": track,
                    "artist_name": artist,
                    "album_name": _text(entry.get("album")),
                }
            )
            yield from self._emit(SAVED_TRACKS, uri, data, counts)

    def _playlists(self, document: Any, counts: _Counts) -> Iterator[Message]:
        for playlist in document.get("playlists", []):
            name = _text(playlist.get("name")) if isinstance(playlist, dict) else None
            if name is None:
                counts.malformed += 1
                continue
            # The archive has no playlist ids; a repeated name is told apart by archive order.
            seen = self.playlist_names.get(name, 0) + 1
            self.playlist_names[name] = seen
            playlist_key = f"name:{name}" if seen == 1 else f"name:{name}#{seen}"
            raw_items = playlist.get("items")
            raw_items = raw_items if isinstance(raw_items, list) else []
            items = []
            for item in raw_items:
                track = item.get("track") if isinstance(item, dict) else None
                if not isinstance(track, dict):
                    continue  # episodes, audiobooks and local files
                track_name, artist = _text(track.get("trackName")), _text(track.get("artistName"))
                if track_name is None or artist is None:
                    continue
                items.append(
                    compact(
                        {
                            "track_name": track_name,
                            "artist_name": artist,
                            "album_name": _text(track.get("albumName")),
                            "track_uri": _text(track.get("trackUri")),
                            "added_at": _day(item.get("addedDate")),
                        }
                    )
                )
            data = compact(
                {
                    "playlist_id": playlist_key,
                    "name": name,
                    "description": _text(playlist.get("description")),
                    "last_modified": _day(playlist.get("lastModifiedDate")),
                    "item_count": len(raw_items),
                    "items": items,
                }
            )
            yield from self._emit(PLAYLISTS, playlist_key, data, counts)


def _not_modelled(what: str) -> Message:
    return skip(
        None,
        "file_not_modelled",
        f"{what} is not imported",
        recovery_action="not_retriable",
        retryable=False,
    )


def _unmodelled_sections(file: _File, document: Any) -> Iterator[Message]:
    """YourLibrary.json also lists albums, shows, artists...; say which ones were left out."""
    if file.kind != "library":
        return
    for section in sorted(document):
        value = document[section]
        if section != "tracks" and isinstance(value, list) and value:
            yield _not_modelled(f"{file.path} section {section!r} ({len(value)} entries)")


def _import(start: Start, tree: _Tree) -> Iterator[Message]:
    recognized = sorted(
        (f for f in tree.files if f.kind is not None),
        key=lambda f: (_KIND_ORDER[f.kind or ""], _natural(f.path)),
    )
    if not recognized:
        raise ConnectorError(
            "no Spotify data was recognized in the archive (expected files such as "
            "Userdata.json, StreamingHistory_music_0.json or Streaming_History_Audio_*.json)",
            code="unrecognized_archive",
            recovery_action="manual_action_required",
        )
    unmodelled = sorted((f for f in tree.files if f.kind is None), key=lambda f: _natural(f.path))

    # Survey: validate every recognized file and find the account, before emitting anything.
    usernames: set[str] = set()
    for file in recognized:
        usernames |= _usernames(file, _load(tree, file))
    if len(usernames) > 1:
        raise ConnectorError(
            f"the archive holds data of {len(usernames)} different Spotify accounts; "
            "import each account's archive separately",
            code="identity_conflict",
            recovery_action="manual_action_required",
        )
    if usernames:
        yield identity(CLAIM, next(iter(usernames)))
    if start.identify_only:
        return

    importer = _Importer(start)
    total = len(recognized)
    for index, file in enumerate(recognized, start=1):
        stream = _KIND_STREAM[file.kind or ""]
        if not start.wants(stream):
            continue
        yield progress(f"reading {file.path}", stream=stream, count=index, total=total)
        document = _load(tree, file)
        counts = _Counts()
        yield from importer.records(file, document, counts)
        yield from _unmodelled_sections(file, document)
        if counts.not_music:
            yield progress(
                f"{file.path}: {counts.not_music} podcast, video or audiobook entries skipped",
                stream=stream,
                count=counts.not_music,
            )
        if counts.duplicates:
            yield progress(
                f"{file.path}: {counts.duplicates} plays merged into an already imported play "
                "of the same track ending in the same minute",
                stream=stream,
                count=counts.duplicates,
            )
        if counts.malformed:
            yield skip(
                stream,
                "malformed_entries",
                f"{counts.malformed} entries in {file.path} could not be read and were left out",
                recovery_action="not_retriable",
                retryable=False,
            )
    for file in unmodelled:
        yield _not_modelled(file.path)


def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
    """Read the archive named by START's artifact; the environment carries nothing we need."""
    artifact = start.artifact or {}
    location = artifact.get("path")
    if not isinstance(location, str) or not location:
        raise ConnectorError(
            "no archive was supplied to import",
            code="artifact_missing",
            recovery_action="manual_action_required",
        )
    path = Path(location)
    if path.is_dir():
        yield from _import(start, _open_folder(path))
        return
    if not path.is_file():
        raise ConnectorError(
            "the supplied archive could not be found",
            code="artifact_missing",
            recovery_action="manual_action_required",
        )
    archive, tree = _open_zip(path)
    with archive:
        yield from _import(start, tree)
