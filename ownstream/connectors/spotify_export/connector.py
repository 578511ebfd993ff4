"""Import Spotify's "Download your data" archive (basic, legacy or extended), ZIP or folder.

The archive is untrusted input. Its structure is checked before the first message: member
paths, symlinks, declared sizes (a decompression bomb), and that it holds Spotify data at all;
any of those fails the import. Then every recognized file is read once to find the account
(IDENTITY must precede every RECORD) and again, one member at a time, to emit records in a
deterministic order. Nothing is extracted to disk; a history file is parsed one entry at a time
and any other file whole, one at a time.

Bad input never aborts good input: an entry that cannot become a record (a null `ts`, a missing
name, a wrong type) is REJECTed with a reason and its place (`file.json#index`), and a file that
is not JSON, or not of the shape Spotify exports, is rejected whole; the rest is imported. What
the importer reads but does not model (videos, entries without any content metadata, library
sections other than tracks) is counted with OMIT, so nothing disappears without a count.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ownstream.clock import iso, parse_iso
from ownstream.connectors.spotify import (
    AUDIOBOOK_LISTENING,
    CLAIM,
    LISTENING_HISTORY,
    PLAYLISTS,
    PODCAST_LISTENING,
    PROFILE,
    SAVED_TRACKS,
    Precision,
    compact,
    listen_key,
    scoped_record,
)
from ownstream.connectors.spotify.fields import (
    Malformed,
    entry_object,
    field,
    moment,
    rejected,
    required_text,
    text,
)
from ownstream.connectors.spotify_export.json_array import READ_AHEAD, NotAnArray, array_items
from ownstream.runtime.sdk import (
    ConnectorError,
    Message,
    Start,
    identity,
    omit,
    progress,
    reject,
    skip,
)

MAX_TOTAL_UNCOMPRESSED = 4 * 1024**3
"""Refuse a ZIP whose members claim more than this in total once decompressed."""
MAX_COMPRESSION_RATIO = 200
"""Refuse a large member that claims to expand more than this many times..."""
RATIO_CHECK_MIN_SIZE = 10 * 1024**2
"""...when it decompresses to more than this (small, highly repetitive JSON is normal)."""
MAX_JSON_FILE_SIZE = 1024**3
"""A recognized file may be parsed whole (any but a history, or a broken history to say what is
wrong with it); beyond this it is refused rather than risk memory."""

# Recognized files, by base name, in the order their records are emitted.
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("userdata", re.compile(r"^Userdata\.json$", re.IGNORECASE)),
    # Extended before basic: a precise play is held when its minute-precision twin arrives.
    (
        "extended",
        re.compile(r"^(Streaming_History_Audio_.*|endsong_\d+)\.json$", re.IGNORECASE),
    ),
    ("video", re.compile(r"^Streaming_History_Video_.*\.json$", re.IGNORECASE)),
    ("basic", re.compile(r"^StreamingHistory_music_\d+\.json$", re.IGNORECASE)),
    ("podcast", re.compile(r"^StreamingHistory_podcast_\d+\.json$", re.IGNORECASE)),
    ("legacy", re.compile(r"^StreamingHistory\d+\.json$", re.IGNORECASE)),
    ("library", re.compile(r"^YourLibrary\.json$", re.IGNORECASE)),
    ("playlists", re.compile(r"^Playlist\d+\.json$", re.IGNORECASE)),
)
_KIND_ORDER = {kind: index for index, (kind, _) in enumerate(_KINDS)}
_LISTENING = (LISTENING_HISTORY, PODCAST_LISTENING, AUDIOBOOK_LISTENING)
# A file is read when the run wants one of these streams (a video file: any listening).
_KIND_STREAMS: dict[str, tuple[str, ...]] = {
    "userdata": (PROFILE,),
    "extended": _LISTENING,
    "video": _LISTENING,
    "basic": (LISTENING_HISTORY,),
    "podcast": (PODCAST_LISTENING,),
    "legacy": (LISTENING_HISTORY,),
    "library": (SAVED_TRACKS,),
    "playlists": (PLAYLISTS,),
}
_KIND_SHAPE: dict[str, type] = {
    "userdata": dict,
    "extended": list,
    "video": list,
    "basic": list,
    "podcast": list,
    "legacy": list,
    "library": dict,
    "playlists": dict,
}
# Operating-system litter that is not part of what Spotify sent.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UTC_SECOND = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_BOM = b"\xef\xbb\xbf"


def _unsafe(message: str) -> ConnectorError:
    return ConnectorError(message, code="unsafe_archive", recovery_action="manual_action_required")


def _corrupt(message: str) -> ConnectorError:
    return ConnectorError(message, code="corrupt_archive", recovery_action="manual_action_required")


def _changed(file: _File) -> ConnectorError:
    return _corrupt(f"{file.path} changed while the archive was read")


def _natural(path: str) -> list[Any]:
    """Sort key putting StreamingHistory_music_10 after _9, as Spotify numbered them."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", path)]


def _base_name(path: str) -> str:
    return re.split(r"[\\/]", path)[-1]  # ZIPs made on Windows may use backslashes


def _kind(path: str) -> str | None:
    base = _base_name(path)
    return next((kind for kind, pattern in _KINDS if pattern.match(base)), None)


_Chunks = Generator[bytes, None, None]
"""A file's bytes as it is read, closed when the generator is."""


@dataclass(frozen=True)
class _File:
    path: str  # relative, "/"-separated, as shown to the owner
    kind: str | None
    size: int


class _Tree:
    """The files of an archive, readable one at a time, whole or as a stream of chunks."""

    def __init__(self, files: list[_File], chunks: Callable[[str], _Chunks]) -> None:
        self.files = files
        self._chunks = chunks

    def chunks(self, file: _File) -> _Chunks:
        if file.size > MAX_JSON_FILE_SIZE:
            raise _unsafe(f"{file.path} is too large to import ({file.size} bytes)")
        return self._chunks(file.path)

    def read(self, file: _File) -> bytes:
        with closing(self.chunks(file)) as chunks:
            return b"".join(chunks)


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

    def chunks(name: str) -> _Chunks:
        try:
            with archive.open(members[name]) as member:
                while chunk := member.read(READ_AHEAD):
                    yield chunk
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            RuntimeError,
            OSError,
        ) as exc:
            raise _corrupt(f"{name} could not be read from the archive ({exc})") from None

    files = [_File(name, _kind(name), info.file_size) for name, info in members.items()]
    return archive, _Tree(files, chunks)


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

    def chunks(name: str) -> _Chunks:
        try:
            with (root / name).open("rb") as handle:
                while chunk := handle.read(READ_AHEAD):
                    yield chunk
        except OSError as exc:
            raise _corrupt(f"{name} could not be read ({exc.strerror})") from None

    return _Tree(files, chunks)


class _BadFile(Exception):
    """A recognized file that is not what Spotify exports: rejected whole, the rest goes on."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _load(tree: _Tree, file: _File) -> Any:
    """A recognized file parsed whole, checked to have the shape Spotify exports it in."""
    data = tree.read(file)
    try:
        document = orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError as exc:
        raise _BadFile("invalid_json", f"{file.path} is not valid JSON ({exc})") from None
    assert file.kind is not None
    shape = _KIND_SHAPE[file.kind]
    listed = {"library": "tracks", "playlists": "playlists"}.get(file.kind)
    if not isinstance(document, shape) or (
        listed is not None
        and isinstance(document, dict)
        and not isinstance(document.get(listed, []), list)
    ):
        raise _BadFile(
            "unexpected_shape", f"{file.path} does not have the shape Spotify exports it in"
        )
    return document


def _history(tree: _Tree, file: _File) -> Iterator[Any]:
    """The entries of a history file (a JSON array), parsed one at a time.

    A file that is no array of JSON values is told apart by parsing it whole, as every file once
    was, so it is rejected with the same reason and orjson's same words; the survey reads every
    history through before the first record, so a broken one is rejected before any entry of it
    is emitted."""
    with closing(tree.chunks(file)) as chunks:
        try:
            yield from array_items(chunks)
            return
        except NotAnArray:
            pass
    _load(tree, file)  # raises: the file is not JSON, or not an array
    raise _changed(file)


def _document(tree: _Tree, file: _File) -> Any:
    """What the importer reads of a file: a history's entries one by one, any other file whole."""
    return _history(tree, file) if _KIND_SHAPE[file.kind or ""] is list else _load(tree, file)


def _usernames(tree: _Tree, file: _File) -> set[str]:
    """The accounts a recognized file names, read through first: a broken file raises _BadFile."""
    if _KIND_SHAPE[file.kind or ""] is dict:
        document = _load(tree, file)
        name = document.get("username") if file.kind == "userdata" else None
        return {name} if isinstance(name, str) and name else set()
    names: set[str] = set()
    for entry in _history(tree, file):
        extended = file.kind == "extended" and isinstance(entry, dict)
        name = entry.get("username") if extended else None
        if isinstance(name, str) and name:
            names.add(name)
    return names


def _basic_time(value: str) -> datetime:
    """`endTime` of basic and legacy histories: UTC, to the minute."""
    return datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def _day(value: Any) -> str | None:
    return value if isinstance(value, str) and _DAY.match(value) else None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _where(file: _File, index: int) -> str:
    """Where an entry is, for the owner: the file's base name and the entry's position."""
    return f"{_base_name(file.path)}#{index}"


class _Importer:
    """Turns recognized files into RECORD, REJECT and OMIT messages.

    Keys follow the path's precision (ownstream.connectors.spotify): a basic history's second
    listen to the same thing in the same minute gets ordinal 2, so it stays a record of its own.
    """

    def __init__(self, start: Start) -> None:
        self.start = start
        self.ordinals: dict[str, int] = {}
        self.playlist_names: dict[str, int] = {}

    def records(self, file: _File, document: Any) -> Iterator[Message]:
        music = self._minute_listens(
            LISTENING_HISTORY, ("artistName", "artist_name"), ("trackName", "track_name")
        )
        handlers: dict[str, Callable[[_File, Any], Iterator[Message]]] = {
            "userdata": self._profile,
            "extended": self._entries(self._extended),
            "video": self._videos,
            "basic": self._entries(music),
            "podcast": self._entries(
                self._minute_listens(
                    PODCAST_LISTENING, ("podcastName", "show_name"), ("episodeName", "episode_name")
                )
            ),
            "legacy": self._entries(music),
            "library": self._library,
            "playlists": self._playlists,
        }
        assert file.kind is not None
        yield from handlers[file.kind](file, document)

    def _entries(
        self, parse: Callable[[Mapping[str, Any]], Message | None]
    ) -> Callable[[_File, Any], Iterator[Message]]:
        """Apply `parse` to each entry of a history file: the one message an entry makes, if
        any. One bad entry is rejected alone (under its file's stream, or none for an extended
        history, whose bad entry may be anything)."""

        def each(file: _File, document: Any) -> Iterator[Message]:
            streams = _KIND_STREAMS[file.kind or ""]
            stream = streams[0] if len(streams) == 1 else None
            for index, entry in enumerate(document):
                try:
                    message = parse(entry_object(entry))
                except Malformed as problem:
                    yield rejected(
                        stream, problem, f"{file.path} entry {index}", _where(file, index)
                    )
                    continue
                if message is not None:
                    yield message

        return each

    def _emit(self, stream: str, key: str, data: dict[str, Any]) -> Message | None:
        return scoped_record(self.start, stream, key, compact(data))

    def _ordinal(self, first_key: str) -> int:
        seen = self.ordinals.get(first_key, 0) + 1
        self.ordinals[first_key] = seen
        return seen

    def _profile(self, file: _File, document: Any) -> Iterator[Message]:
        try:
            user_id = required_text(document, "username")
            created = text(document, "creationTime")
            data = {
                "user_id": user_id,
                "email": text(document, "email"),
                "country": text(document, "country"),
                "account_created": _day((created or "")[:10]),
            }
        except Malformed as problem:
            yield rejected(PROFILE, problem, file.path, _where(file, 0))
            return
        message = self._emit(PROFILE, user_id, data)
        if message is not None:
            yield message

    def _extended(self, entry: Mapping[str, Any]) -> Message | None:
        """Extended history: `ts` (UTC, to the second) is when the listen ended, as in the Web
        API. An entry is a track, an episode or an audiobook chapter by which names it has."""
        ended = moment(entry, "ts", parse_iso)
        ts = entry["ts"]
        common = {
            # Spotify writes `ts` as UTC to the second: its rendering is then a suffix away
            "played_at": ts[:19] + ".000Z" if _UTC_SECOND.fullmatch(ts) else iso(ended),
            "played_at_precision": "second",
            "ms_played": field(entry, "ms_played", int),
            "platform": text(entry, "platform"),
            "skipped": field(entry, "skipped", bool),
            "reason_start": text(entry, "reason_start"),
            "reason_end": text(entry, "reason_end"),
        }
        shuffle = field(entry, "shuffle", bool)
        track = text(entry, "master_metadata_track_name")
        episode, episode_uri = text(entry, "episode_name"), text(entry, "spotify_episode_uri")
        book, book_uri = text(entry, "audiobook_title"), text(entry, "audiobook_uri")
        chapter, chapter_uri = (
            text(entry, "audiobook_chapter_title"),
            text(entry, "audiobook_chapter_uri"),
        )
        own: dict[str, Any]
        if track is not None:
            artist = required_text(entry, "master_metadata_album_artist_name")
            stream, names = LISTENING_HISTORY, (artist, track)
            own = {
                "track_name": track,
                "artist_name": artist,
                "album_name": text(entry, "master_metadata_album_album_name"),
                "track_uri": text(entry, "spotify_track_uri"),
                "shuffle": shuffle,
            }
        elif episode is not None or episode_uri is not None:
            episode = required_text(entry, "episode_name")
            show = required_text(entry, "episode_show_name")
            stream, names = PODCAST_LISTENING, (show, episode)
            own = {
                "episode_name": episode,
                "show_name": show,
                "episode_uri": episode_uri,
                "shuffle": shuffle,
            }
        elif book is not None or book_uri is not None or chapter_uri is not None:
            book = required_text(entry, "audiobook_title")
            stream, names = AUDIOBOOK_LISTENING, (book, chapter or chapter_uri or "")
            own = {
                "audiobook_title": book,
                "chapter_title": chapter,
                "audiobook_uri": book_uri,
                "chapter_uri": chapter_uri,
            }
        else:
            return omit("content_without_metadata")
        key = listen_key(ended, "second", *names)
        return self._emit(stream, key, {"play_id": key, **common, **own})

    def _minute_listens(
        self, stream: str, first: tuple[str, str], second: tuple[str, str]
    ) -> Callable[[Mapping[str, Any]], Message | None]:
        """Entries of a basic history (`endTime`, UTC to the minute, two names, `msPlayed`):
        music (artist, track) or podcasts (show, episode). Each (source field, record field)
        pair names one of the two names a listen is keyed by."""

        def parse(entry: Mapping[str, Any]) -> Message | None:
            ended = moment(entry, "endTime", _basic_time)
            names = (required_text(entry, first[0]), required_text(entry, second[0]))
            precision: Precision = "minute"
            first_key = listen_key(ended, precision, *names)
            ordinal = self._ordinal(f"{stream}|{first_key}")
            key = (
                first_key if ordinal == 1 else listen_key(ended, precision, *names, ordinal=ordinal)
            )
            data = {
                "play_id": key,
                "played_at": iso(ended),
                "played_at_precision": precision,
                first[1]: names[0],
                second[1]: names[1],
                "ms_played": field(entry, "msPlayed", int),
            }
            return self._emit(stream, key, data)

        return parse

    def _videos(self, file: _File, document: Iterable[Any]) -> Iterator[Message]:
        count = sum(1 for _ in document)
        if count:
            yield omit("video_not_modelled", count)

    def _library(self, file: _File, document: Any) -> Iterator[Message]:
        """YourLibrary.json: its tracks are Liked Songs; its other sections are counted."""
        yield from self._entries(self._liked_track)(file, document.get("tracks", []))
        for section in sorted(document):
            value = document[section]
            if section != "tracks" and isinstance(value, list) and value:
                yield omit(f"library_{_snake(section)}_not_modelled", len(value))

    def _liked_track(self, entry: Mapping[str, Any]) -> Message | None:
        uri = required_text(entry, "uri")
        data = {
            "track_uri": uri,
            "track_name": required_text(entry, "track"),
            "artist_name": required_text(entry, "artist"),
            "album_name": text(entry, "album"),
        }
        return self._emit(SAVED_TRACKS, uri, data)

    def _playlists(self, file: _File, document: Any) -> Iterator[Message]:
        for index, playlist in enumerate(document.get("playlists", [])):
            try:
                playlist = entry_object(playlist, "the playlist")
                name = required_text(playlist, "name")
                description = text(playlist, "description")
                raw_items = playlist.get("items")
                raw_items = raw_items if isinstance(raw_items, list) else []
            except Malformed as problem:
                yield rejected(
                    PLAYLISTS, problem, f"{file.path} playlist {index}", _where(file, index)
                )
                continue
            # The archive has no playlist ids; a repeated name is told apart by archive order.
            seen = self.playlist_names.get(name, 0) + 1
            self.playlist_names[name] = seen
            playlist_key = f"name:{name}" if seen == 1 else f"name:{name}#{seen}"
            items = []
            not_tracks = 0
            for position, item in enumerate(raw_items):
                track = item.get("track") if isinstance(item, dict) else None
                if isinstance(item, dict) and track is None:
                    not_tracks += 1  # an episode, an audiobook or a local file
                    continue
                try:
                    track = entry_object(track, "the item's track")
                    items.append(
                        {
                            "track_name": required_text(track, "trackName"),
                            "artist_name": required_text(track, "artistName"),
                            "album_name": text(track, "albumName"),
                            "track_uri": text(track, "trackUri"),
                            "added_at": _day(item.get("addedDate")),
                        }
                    )
                except Malformed as problem:
                    yield rejected(
                        PLAYLISTS,
                        problem,
                        f"{file.path} playlist {name!r} item {position}",
                        f"{_where(file, index)}/{position}",
                    )
            if not_tracks:
                yield omit("playlist_item_not_a_track", not_tracks)
            data = {
                "playlist_id": playlist_key,
                "name": name,
                "description": description,
                "last_modified": _day(playlist.get("lastModifiedDate")),
                "item_count": len(raw_items),
                "items": [compact(item) for item in items],
            }
            message = self._emit(PLAYLISTS, playlist_key, data)
            if message is not None:
                yield message


def _not_modelled(what: str) -> Message:
    return skip(
        None,
        "file_not_modelled",
        f"{what} is not imported",
        recovery_action="not_retriable",
        retryable=False,
    )


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

    # Survey: read every recognized file and find the account, before emitting anything.
    usernames: set[str] = set()
    bad: dict[str, _BadFile] = {}
    for file in recognized:
        try:
            usernames |= _usernames(tree, file)
        except _BadFile as problem:
            bad[file.path] = problem
    if len(bad) == len(recognized):
        raise _corrupt(f"no Spotify file in the archive could be read: {next(iter(bad.values()))}")
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
        streams = [s for s in _KIND_STREAMS[file.kind or ""] if start.wants(s)]
        if not streams:
            continue
        yield progress(f"reading {file.path}", stream=streams[0], count=index, total=total)
        unreadable = bad.get(file.path)
        if unreadable is not None:
            yield reject(None, unreadable.reason, str(unreadable), key=_base_name(file.path))
            continue
        try:
            yield from importer.records(file, _document(tree, file))
        except _BadFile:  # the survey read it through: it broke since
            raise _changed(file) from None
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
