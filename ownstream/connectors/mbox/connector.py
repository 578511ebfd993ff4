"""Import mail exports: a plain mbox file, a Google Takeout ZIP, or a Thunderbird profile folder.

Two passes over the export, both streamed one message at a time (a 20 GB mbox never sits in
memory). The first reads only header blocks: it finds the account (IDENTITY must precede every
RECORD), gives every message its key, and gathers the folders, labels and flags of a message
stored more than once (Thunderbird keeps a copy per folder). The second parses each message
once and emits one record per key, with everything the first pass gathered. A broken message
is rejected with a reason and counted; it never stops the import.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, cast

from ownstream.connectors.mail import (
    CLAIM,
    MAIL_FOLDERS,
    MESSAGES,
    KeyAssigner,
    KeyBasis,
    Rejected,
    Rejections,
    build_record,
    normalize_folder,
)
from ownstream.connectors.mail.attachments import Attachments
from ownstream.connectors.mail.keys import Headers, address_of, first, parse_headers, split_message
from ownstream.connectors.mail.message import decode_raw_header, is_message
from ownstream.connectors.mbox.reader import RawMessage, is_mbox, read_messages
from ownstream.runtime.sdk import (
    ConnectorError,
    Message,
    Start,
    identity,
    progress,
    record,
    skip,
)

MAX_COMPRESSION_RATIO = 200
"""Refuse a ZIP member that claims to expand more than this many times (a decompression bomb);
mbox text compresses about 4 to 10 times."""
PROGRESS_EVERY = 1000
READ_BUFFER = 1 << 20
# Headers an exporter adds to each message; they are read for flags and labels, then removed,
# so the record describes the message as it was delivered, byte for byte what IMAP serves.
EXPORT_HEADERS = frozenset(
    {"x-gm-thrid", "x-gmail-labels", "x-mozilla-status", "x-mozilla-status2", "x-mozilla-keys"}
    | {"status", "x-status"}
)
_MOZILLA_FLAGS = ((0x1, "\\Seen"), (0x2, "\\Answered"), (0x4, "\\Flagged"))
_MOZILLA_EXPUNGED = 0x8
_X_STATUS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}
_GMAIL_FLAGS = {"Opened": "\\Seen", "Starred": "\\Flagged"}
_GMAIL_STATE_LABELS = frozenset({"Opened", "Unread"})
# Thunderbird keeps each account's folders under Mail/<account>/ or ImapMail/<server>/.
_PROFILE_ROOTS = frozenset({"Mail", "ImapMail"})
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)


def _unsafe(message: str) -> ConnectorError:
    return ConnectorError(message, code="unsafe_archive", recovery_action="manual_action_required")


def _corrupt(message: str) -> ConnectorError:
    return ConnectorError(message, code="corrupt_archive", recovery_action="manual_action_required")


# sources -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _MboxFile:
    """One mbox inside the export, and the folder its messages are in."""

    name: str  # as shown to the owner
    folder: str | None
    open: Callable[[], IO[bytes]]


def _folder_of(relative: str) -> str:
    """A Thunderbird file's folder: `Mail/Local Folders/Work.sbd/Projects` → `Work/Projects`."""
    parts = list(PurePosixPath(relative).parts)
    if len(parts) > 2 and parts[0] in _PROFILE_ROOTS:
        parts = parts[2:]
    parts = [p.removesuffix(".sbd") for p in parts[:-1]] + [parts[-1].removesuffix(".mbox")]
    return normalize_folder("/".join(parts))


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(5)


def _folder_files(root: Path) -> tuple[list[_MboxFile], list[str]]:
    """The mbox files of a folder (sniffed by their first bytes), and every other file."""
    found: list[_MboxFile] = []
    others: list[str] = []
    for directory, subdirs, names in os.walk(root, followlinks=False):
        subdirs.sort()
        for name in [*subdirs, *names]:
            if Path(directory, name).is_symlink():
                raise _unsafe(f"{Path(directory, name).relative_to(root).as_posix()} is a link")
        for name in sorted(names):
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if _JUNK.search(relative):
                continue
            if path.stat().st_size and is_mbox(_head(path)):
                found.append(_MboxFile(relative, _folder_of(relative), _opener(path)))
            else:
                others.append(relative)
    return found, others


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    def open_file() -> IO[bytes]:
        return path.open("rb", buffering=READ_BUFFER)

    return open_file


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise _unsafe(f"the archive member {name!r} points outside the archive")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _unsafe(f"the archive member {name!r} is a symbolic link")
    if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1024):
        raise _unsafe(f"the archive member {name!r} expands suspiciously (a decompression bomb)")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2):
        raise _corrupt(f"the archive member {name!r} uses a compression method zip cannot read")


@contextmanager
def _zip_files(path: Path) -> Iterator[tuple[list[_MboxFile], list[str]]]:
    """The `.mbox` members of a ZIP (a Google Takeout archive), checked before any is read."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _corrupt(f"the archive is not a readable ZIP file ({exc})") from None
    with archive:
        found: list[_MboxFile] = []
        others: list[str] = []
        for info in archive.infolist():
            _check_member(info)
            if info.is_dir() or _JUNK.search(info.filename):
                continue
            if info.filename.lower().endswith(".mbox"):
                folder = normalize_folder(PurePosixPath(info.filename).stem)
                found.append(_MboxFile(info.filename, folder, _member_opener(archive, info)))
            else:
                others.append(info.filename)
        yield found, others


def _member_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        # BufferedReader needs only readinto(), which a ZIP member has; it reads lines about
        # twice as fast as the member's own readline().
        member = cast(io.RawIOBase, archive.open(info))
        return io.BufferedReader(member, buffer_size=READ_BUFFER)

    return open_member


# what one entry says about itself ------------------------------------------------------------
@dataclass
class _Placement:
    """Where a message is and how it is marked, unioned over its copies in the export."""

    folders: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)

    def add(self, other: _Placement) -> None:
        self.folders |= other.folders
        self.labels |= other.labels
        self.flags |= other.flags


def _gmail_labels(value: str) -> list[str]:
    """X-Gmail-Labels: comma-separated, a label with a comma quoted, non-ASCII RFC 2047."""
    text = decode_raw_header(value) or ""
    return [label.strip() for label in next(csv.reader([text], skipinitialspace=True), [])]


def _placement(headers: Headers, folder: str | None) -> _Placement:
    placement = _Placement()
    labels = headers.get("x-gmail-labels")
    if labels:
        for label in _gmail_labels(labels[0]):
            if label in _GMAIL_FLAGS:
                placement.flags.add(_GMAIL_FLAGS[label])
            if label and label not in _GMAIL_STATE_LABELS:
                placement.labels.add(label)
    elif folder:
        placement.folders.add(folder)
    mozilla = _hex(first(headers, "x-mozilla-status"))
    placement.flags.update(flag for bit, flag in _MOZILLA_FLAGS if mozilla & bit)
    placement.flags.update((first(headers, "x-mozilla-keys") or "").split())
    if "R" in (first(headers, "status") or ""):
        placement.flags.add("\\Seen")
    placement.flags.update(_X_STATUS[c] for c in first(headers, "x-status") or "" if c in _X_STATUS)
    return placement


def _hex(value: str | None) -> int:
    try:
        return int(value or "0", 16)
    except ValueError:
        return 0


def _without_export_headers(block: bytes) -> bytes:
    """The header block without the lines (and continuations) an exporter added."""
    kept: list[bytes] = []
    dropping = False
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        dropping = name.decode("ascii", "replace") in EXPORT_HEADERS
        if not dropping:
            kept.append(line)
    return b"".join(kept)


@dataclass(frozen=True)
class _Entry:
    """One readable message of the export, as both passes see it."""

    raw: bytes
    headers: Headers
    key: str
    placement: _Placement
    entry: RawMessage
    where: str

    @property
    def expunged(self) -> bool:
        """Deleted in Thunderbird but not yet compacted away: not a message the owner has."""
        return bool(_hex(first(self.headers, "x-mozilla-status")) & _MOZILLA_EXPUNGED)


# the import ----------------------------------------------------------------------------------
class _Import:
    def __init__(self, start: Start, files: list[_MboxFile]) -> None:
        self.start = start
        self.files = files
        self.keys = KeyAssigner()
        self.rejections = Rejections()
        self.total = 0
        self.delivered_to: set[str] = set()
        self.undelivered_from: set[str] = set()
        self.repeated: dict[str, _Placement] = {}
        self.folder_counts: Counter[tuple[str, str]] = Counter()

    def entries(self, rejections: Rejections | None) -> Iterator[_Entry]:
        """Every readable message, in export order; rejections are recorded when given."""
        for file in self.files:
            try:
                with file.open() as handle:
                    for entry in read_messages(handle):
                        where = f"{file.name} line {entry.line}"
                        if entry.raw is None:
                            if rejections is not None:
                                rejections.reject("too_large", f"{entry.size} bytes", where)
                            continue
                        block, body = split_message(entry.raw)
                        headers = parse_headers(block)
                        if not is_message(headers):
                            if rejections is not None:
                                rejections.reject("not_a_message", "no header fields", where)
                            continue
                        key = self.keys.key(KeyBasis.of(headers, body))
                        raw = entry.raw
                        if EXPORT_HEADERS.intersection(headers):
                            raw = _without_export_headers(block) + entry.raw[len(block) :]
                        placement = _placement(headers, file.folder)
                        yield _Entry(raw, headers, key, placement, entry, where)
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _corrupt(f"{file.name} could not be read ({exc})") from None

    def survey(self) -> Iterator[Message]:
        """Pass one: keys, the account, folders, and the copies of repeated messages."""
        seen: dict[str, _Placement] = {}
        for entry in self.entries(None):
            if entry.expunged:
                continue
            self.total += 1
            delivered = address_of(first(entry.headers, "delivered-to"))
            if delivered:
                self.delivered_to.add(delivered)
            elif len(self.undelivered_from) < 2:
                self.undelivered_from.add(address_of(first(entry.headers, "from")))
            for name in entry.placement.folders:
                self.folder_counts["folder", name] += 1
            for name in entry.placement.labels:
                self.folder_counts["label", name] += 1
            earlier = seen.get(entry.key)
            if earlier is None:
                seen[entry.key] = entry.placement
            else:
                merged = self.repeated.setdefault(entry.key, _Placement())
                merged.add(earlier)
                merged.add(entry.placement)
            if self.total % PROGRESS_EVERY == 0:
                yield progress("surveying the export", stream=MESSAGES, count=self.total)

    @property
    def account(self) -> str | None:
        """The one address every message was delivered to or sent from, if there is one."""
        if len(self.delivered_to) != 1:
            return None
        address = next(iter(self.delivered_to))
        return address if self.undelivered_from <= {address} else None

    def folders(self) -> Iterator[Message]:
        for (kind, name), count in sorted(self.folder_counts.items()):
            data = {"name": name, "kind": kind, "message_count": count}
            yield record(MAIL_FOLDERS, [kind, name], data)

    def messages(self) -> Iterator[Message]:
        """Pass two: one record per key, each message parsed once."""
        emitted: set[str] = set()
        duplicates = expunged = done = 0
        attachments = Attachments(self.start)
        for entry in self.entries(self.rejections):
            if entry.expunged:
                expunged += 1
                continue
            done += 1
            if done % PROGRESS_EVERY == 0:
                yield progress("importing", stream=MESSAGES, count=done, total=self.total)
            if entry.key in emitted:
                duplicates += 1
                continue
            placement = self.repeated.pop(entry.key, entry.placement)
            try:
                data = build_record(
                    entry.raw,
                    entry.key,
                    entry.headers,
                    folders=placement.folders,
                    flags=placement.flags,
                    labels=placement.labels,
                    fallback_date=entry.entry.received,
                    fallback_source="mbox_from_line",
                    blobs=attachments,
                )
            except Rejected as exc:
                attachments.discard()
                self.rejections.reject(exc.reason, exc.detail, entry.where)
                continue
            emitted.add(entry.key)
            yield from attachments.handed_over()
            yield record(MESSAGES, entry.key, data)
        if duplicates:
            yield progress(
                f"{duplicates} further copies of messages (another folder, or the same message "
                "twice) were merged into their first record",
                stream=MESSAGES,
                count=duplicates,
            )
        if expunged:
            yield progress(
                f"{expunged} messages Thunderbird marks as deleted were left out",
                stream=MESSAGES,
                count=expunged,
            )
        yield from attachments.report()
        yield from self.rejections.report(MESSAGES)


def _not_modelled(others: list[str]) -> Iterator[Message]:
    if not others:
        return
    shown = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
    yield skip(
        None,
        "file_not_modelled",
        f"{len(others)} files that are not mbox files were not imported: {shown}",
        recovery_action="not_retriable",
        retryable=False,
    )


def _run(start: Start, files: list[_MboxFile], others: list[str]) -> Iterator[Message]:
    if not files:
        raise ConnectorError(
            "no mbox file was found in the export (expected an .mbox file, a Google Takeout "
            "archive or a Thunderbird profile folder)",
            code="unrecognized_archive",
            recovery_action="manual_action_required",
        )
    job = _Import(start, files)
    yield from job.survey()
    if job.account is not None:
        yield identity(CLAIM, job.account)
    if start.identify_only:
        return
    if start.wants(MAIL_FOLDERS):
        yield from job.folders()
    if start.wants(MESSAGES):
        yield from job.messages()
    yield from _not_modelled(others)


def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
    """Read the export named by START's artifact; the environment carries nothing we need."""
    artifact = start.artifact or {}
    location = artifact.get("path")
    if not isinstance(location, str) or not location:
        raise ConnectorError(
            "no export was supplied to import",
            code="artifact_missing",
            recovery_action="manual_action_required",
        )
    path = Path(location)
    if path.is_dir():
        yield from _run(start, *_folder_files(path))
    elif not path.is_file():
        raise ConnectorError(
            "the supplied export could not be found",
            code="artifact_missing",
            recovery_action="manual_action_required",
        )
    elif zipfile.is_zipfile(path):
        with _zip_files(path) as (files, others):
            yield from _run(start, files, others)
    elif is_mbox(_head(path)):
        yield from _run(start, [_MboxFile(path.name, _folder_of(path.name), _opener(path))], [])
    else:
        raise _corrupt(f"{path.name} is neither an mbox file nor a ZIP archive")
