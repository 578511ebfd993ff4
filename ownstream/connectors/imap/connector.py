"""IMAP connector: every folder (or the chosen ones) of one mailbox, incrementally.

A run first plans, then fetches:
1. For each folder: its UIDVALIDITY, the UIDs it holds now, the flags that changed (CONDSTORE
   `CHANGEDSINCE` where the server offers it, else every known UID's flags), and for UIDs not
   seen before only the header block and the first body bytes, enough for the record key.
   A changed UIDVALIDITY makes the folder's old UIDs meaningless: all of its UIDs are new.
2. Every message (by key) whose set of folders or flags changed, or that is new, is fetched
   whole once, from one of its copies, and emitted with all its folders. A message gone from
   every folder is a delete; the runtime applies it only if no other path evidences it.
So a UIDVALIDITY reset, or the same message in three folders, costs header fetches but no
duplicate records and no repeated downloads.

The checkpoint (STATE `messages`) holds, per folder, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ,
and every copy's UID, key and flags (zlib-compressed): the connector must know which message a
vanished UID was to delete or update it. Connection problems fail the run (no state is
committed, the next run starts from the last good checkpoint); a folder that cannot be read is
a known gap and keeps its old checkpoint.
"""

from __future__ import annotations

import base64
import ssl
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

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
from ownstream.connectors.mail.keys import BODY_HEAD_FETCH, parse_headers, split_message
from ownstream.runtime.sdk import ConnectorError, Message, Start, identity, progress, record, skip
from ownstream.runtime.sdk import state as state_message

STATE_VERSION = 1
TIMEOUT_SECONDS = 60.0
HEADER_BATCH = 500
"""UIDs per FETCH of header blocks (and per FETCH of flags)."""
BODY_BATCH_BYTES = 8 * 1024**2
"""Whole messages are fetched in batches of about this many bytes (a larger one alone)."""
_HEADER = b"BODY[HEADER]"
_TEXT_HEAD = b"BODY[TEXT]<0>"
_IGNORED_FLAGS = frozenset({"\\Recent"})
_UNSELECTABLE = frozenset({b"\\Noselect", b"\\NonExistent"})
_SPECIAL_USE = frozenset(
    {b"\\All", b"\\Archive", b"\\Drafts", b"\\Flagged", b"\\Junk", b"\\Sent", b"\\Trash"}
)


# settings and the connection -----------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    username: str
    password: str
    address: str | None
    folders: tuple[str, ...] | None  # None: every folder
    starttls: bool
    ca_file: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def setting(name: str) -> str:
            return env.get(name, "").strip()

        host, username = setting("IMAP_HOST"), setting("IMAP_USERNAME")
        password = env.get("IMAP_PASSWORD", "")
        if not host or not username:
            raise _config_error("host and username must be set")
        if not password:
            raise ConnectorError(
                "no IMAP password is configured",
                code="credentials_missing",
                recovery_action="refresh_credentials",
            )
        tls = setting("IMAP_TLS").lower() or "implicit"
        if tls not in ("implicit", "starttls"):
            raise _config_error(f"tls must be 'implicit' or 'starttls', not {tls!r}")
        try:
            port = int(setting("IMAP_PORT") or (993 if tls == "implicit" else 143))
        except ValueError:
            raise _config_error("port must be a number") from None
        address = (setting("IMAP_ADDRESS") or (username if "@" in username else "")).lower()
        chosen = tuple(normalize_folder(f.strip()) for f in setting("IMAP_FOLDERS").split(","))
        return cls(
            host=host,
            port=port,
            username=username,
            password=password,
            address=address or None,
            folders=tuple(f for f in chosen if f) or None,
            starttls=tls == "starttls",
            ca_file=setting("IMAP_CA_FILE") or None,
        )


def _config_error(message: str) -> ConnectorError:
    return ConnectorError(
        f"the IMAP connection is misconfigured: {message}",
        code="invalid_configuration",
        recovery_action="manual_action_required",
    )


def _unavailable(settings: Settings, exc: BaseException) -> ConnectorError:
    return ConnectorError(
        f"the IMAP server {settings.host}:{settings.port} could not be reached or dropped the "
        f"connection ({type(exc).__name__}: {exc})",
        code="upstream_unavailable",
        retryable=True,
        recovery_action="retry_by_runtime",
    )


def _untrusted(settings: Settings, exc: ssl.SSLCertVerificationError) -> ConnectorError:
    return ConnectorError(
        f"the certificate of {settings.host} is not trusted ({exc.verify_message}); if the "
        "server uses a self-signed certificate you trust, set ca_file to that certificate",
        code="tls_certificate_untrusted",
        recovery_action="manual_action_required",
    )


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificate and hostname verification always; `ca_file` replaces the system's roots."""
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise _config_error(
            f"ca_file {settings.ca_file!r} is not a readable PEM file ({exc})"
        ) from None


def _connect(settings: Settings) -> IMAPClient:
    context = _tls_context(settings)
    try:
        client = IMAPClient(
            settings.host,
            port=settings.port,
            ssl=not settings.starttls,
            ssl_context=context,
            timeout=TIMEOUT_SECONDS,
        )
        client.normalise_times = False  # keep INTERNALDATE's zone
        if settings.starttls:
            client.starttls(context)
    except ssl.SSLCertVerificationError as exc:
        raise _untrusted(settings, exc) from None
    except (OSError, IMAPClientError) as exc:
        raise _unavailable(settings, exc) from None
    try:
        client.login(settings.username, settings.password)
    except LoginError as exc:
        client.shutdown()
        raise ConnectorError(
            f"the IMAP server refused the login of {settings.username} ({exc}); update the "
            "password (an app password, if the account uses two-step verification)",
            code="credentials_invalid",
            recovery_action="refresh_credentials",
        ) from None
    except (OSError, IMAPClientError) as exc:
        client.shutdown()
        raise _unavailable(settings, exc) from None
    return client


# the checkpoint ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Copy:
    """One message in one folder."""

    uid: int
    key: str
    fingerprint: str
    flags: tuple[str, ...]


@dataclass
class FolderState:
    uidvalidity: int
    uidnext: int = 0
    modseq: int | None = None
    copies: dict[int, Copy] = field(default_factory=dict)


def load_state(cursor: Any) -> dict[str, FolderState]:
    """The checkpoint this connector wrote last; anything else (none, another version) is
    an empty one, which makes the run a full scan."""
    if not isinstance(cursor, dict) or cursor.get("version") != STATE_VERSION:
        return {}
    copies = orjson.loads(zlib.decompress(base64.b64decode(cursor["copies"])))
    folders: dict[str, FolderState] = {}
    for name, meta in cursor["folders"].items():
        folder = FolderState(meta["uidvalidity"], meta["uidnext"], meta.get("modseq"))
        for uid, key, fingerprint, *flags in copies.get(name, []):
            folder.copies[uid] = Copy(uid, key, fingerprint, tuple(flags))
        folders[name] = folder
    return folders


def dump_state(folders: Mapping[str, FolderState]) -> dict[str, Any]:
    copies = {
        name: [[c.uid, c.key, c.fingerprint, *c.flags] for c in folder.copies.values()]
        for name, folder in folders.items()
    }
    return {
        "version": STATE_VERSION,
        "folders": {
            name: {"uidvalidity": f.uidvalidity, "uidnext": f.uidnext, "modseq": f.modseq}
            for name, f in folders.items()
        },
        "copies": base64.b64encode(zlib.compress(orjson.dumps(copies), 6)).decode("ascii"),
    }


# planning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """What a record says about where a message is: its folders and its flags."""

    folders: tuple[str, ...]
    flags: tuple[str, ...]


def summarize(folders: Mapping[str, FolderState]) -> dict[str, Summary]:
    """Every key's folders and the union of its copies' flags (IMAP flags are per copy)."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for name, folder in folders.items():
        for copy in folder.copies.values():
            places, flags = found.setdefault(copy.key, (set(), set()))
            places.add(name)
            flags.update(copy.flags)
    return {k: Summary(tuple(sorted(p)), tuple(sorted(f))) for k, (p, f) in found.items()}


def _flags(raw: Iterable[bytes | str]) -> tuple[str, ...]:
    names = (f.decode("utf-8", "replace") if isinstance(f, bytes) else f for f in raw)
    return tuple(sorted({n for n in names if n not in _IGNORED_FLAGS}))


def _batches(uids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(uids), size):
        yield uids[start : start + size]


@dataclass(frozen=True)
class _Listed:
    name: str
    delimiter: str | None
    special_use: str | None


def _aware(moment: Any) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Session:
    """One run against one logged-in client: plan (step 1), then fetch and emit (step 2)."""

    def __init__(self, start: Start, client: IMAPClient, settings: Settings) -> None:
        self.start = start
        self.client = client
        self.settings = settings
        self.condstore = bool(client.has_capability("CONDSTORE"))
        if self.condstore:
            client.enable("CONDSTORE")
        self.old = load_state(start.state.get(MESSAGES))
        self.new: dict[str, FolderState] = {}
        self.listed: list[_Listed] = []
        self.counts: dict[str, int] = {}
        self.pending: list[tuple[str, int, KeyBasis]] = []  # new copies awaiting their key
        self.keys = KeyAssigner()
        self.rejections = Rejections()
        self.attachments = Attachments(start)

    # step 1 -----------------------------------------------------------------------------------
    def plan(self) -> Iterator[Message]:
        yield from self._list()
        for listed in self.listed:
            try:
                yield from self._scan(listed)
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                yield skip(
                    MESSAGES,
                    "folder_unreadable",
                    f"the folder {listed.name!r} could not be read ({exc}); it keeps its "
                    "last checkpoint",
                    recovery_action="retry_by_runtime",
                    retryable=True,
                )
                if listed.name in self.old:
                    self.new[listed.name] = self.old[listed.name]
        # Copies known before own their Message-IDs first, then new ones in folder/UID order.
        for folder in self.new.values():
            for copy in folder.copies.values():
                if copy.key:
                    self.keys.remember(copy.key, copy.fingerprint)
        for name, uid, basis in self.pending:
            copies = self.new[name].copies
            copies[uid] = replace(copies[uid], key=self.keys.key(basis))

    def _list(self) -> Iterator[Message]:
        """The selectable folders in scope, INBOX first; a chosen folder missing is a gap."""
        listed = {}
        for attributes, delimiter, name in self.client.list_folders():
            if _UNSELECTABLE.intersection(attributes):
                continue
            special = sorted(a.decode() for a in _SPECIAL_USE.intersection(attributes))
            folder = normalize_folder(name)
            listed[folder] = _Listed(
                folder,
                delimiter.decode() if isinstance(delimiter, bytes) else delimiter,
                special[0] if special else None,
            )
        wanted = self.settings.folders
        for missing in sorted(set(wanted or ()) - set(listed)):
            yield skip(
                MESSAGES,
                "folder_not_found",
                f"the folder {missing!r} does not exist on the server",
                recovery_action="manual_action_required",
                retryable=False,
            )
        self.listed = [
            listed[name]
            for name in sorted(listed, key=lambda n: (n != "INBOX", n))
            if wanted is None or name in wanted
        ]

    def _scan(self, listed: _Listed) -> Iterator[Message]:
        """What one folder holds now, its flag changes, and the key basis of what is new."""
        name = listed.name
        info = self.client.select_folder(name, readonly=True)
        modseq = info.get(b"HIGHESTMODSEQ")
        folder = FolderState(
            int(info[b"UIDVALIDITY"]), int(info.get(b"UIDNEXT", 0)), int(modseq) if modseq else None
        )
        old = self.old.get(name)
        if old is not None and old.uidvalidity != folder.uidvalidity:
            yield progress(f"{name}: UIDVALIDITY changed, scanning the folder again")
            old = None
        current = set(self.client.search("ALL"))
        self.counts[name] = len(current)
        known = sorted(current & set(old.copies)) if old is not None else []
        if old is not None:
            changed = self._flag_changes(old, known)
            for uid in known:
                copy = old.copies[uid]
                folder.copies[uid] = replace(copy, flags=changed.get(uid, copy.flags))
        fresh = sorted(current - set(known))
        for batch in _batches(fresh, HEADER_BATCH):
            fetched = self.client.fetch(
                batch, ["FLAGS", "BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{BODY_HEAD_FETCH}>"]
            )
            for uid in batch:
                data = fetched.get(uid)
                if data is None:  # expunged between SEARCH and FETCH
                    continue
                headers = parse_headers(data.get(_HEADER) or b"")
                basis = KeyBasis.of(headers, data.get(_TEXT_HEAD) or b"")
                folder.copies[uid] = Copy(uid, "", basis.fingerprint, _flags(data[b"FLAGS"]))
                self.pending.append((name, uid, basis))
        if fresh:
            yield progress(f"{name}: {len(fresh)} new messages", stream=MESSAGES, count=len(fresh))
        self.new[name] = folder

    def _flag_changes(self, old: FolderState, known: list[int]) -> dict[int, tuple[str, ...]]:
        """Current flags of the known UIDs whose flags may have changed: with CONDSTORE only
        those changed since the checkpoint's HIGHESTMODSEQ come back."""
        modifiers = (
            [f"CHANGEDSINCE {old.modseq}"] if self.condstore and old.modseq is not None else None
        )
        changes = {}
        for batch in _batches(known, HEADER_BATCH):
            for uid, data in self.client.fetch(batch, ["FLAGS"], modifiers=modifiers).items():
                changes[uid] = _flags(data[b"FLAGS"])
        return changes

    # step 2 -----------------------------------------------------------------------------------
    def emit(self) -> Iterator[Message]:
        before, after = summarize(self.old), summarize(self.new)
        changed = {key: summary for key, summary in after.items() if before.get(key) != summary}
        sources: dict[str, list[tuple[int, str]]] = {}
        chosen: set[str] = set()
        for listed in self.listed:
            folder = self.new.get(listed.name)
            for uid in sorted(folder.copies) if folder else ():
                key = folder.copies[uid].key if folder else ""
                if key in changed and key not in chosen:
                    chosen.add(key)
                    sources.setdefault(listed.name, []).append((uid, key))
        done = 0
        for name, entries in sources.items():
            self.client.select_folder(name, readonly=True)
            for batch in self._by_size(entries):
                fetched = self.client.fetch(
                    [uid for uid, _ in batch], ["BODY.PEEK[]", "INTERNALDATE"]
                )
                for uid, key in batch:
                    data = fetched.get(uid)
                    if data is None:  # gone since step 1: the next run sees where it went
                        continue
                    yield from self._record(name, uid, key, data, changed[key])
                done += len(batch)
                yield progress("fetching messages", stream=MESSAGES, count=done, total=len(chosen))
        for key in sorted(set(before) - set(after)):
            yield record(MESSAGES, key, {"message_id": key}, op="delete")
        yield from self.attachments.report()
        yield from self.rejections.report(MESSAGES)

    def _by_size(self, entries: list[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
        """Batches of about BODY_BATCH_BYTES, so a huge message travels alone."""
        sizes: dict[int, int] = {}
        for batch in _batches([uid for uid, _ in entries], HEADER_BATCH):
            for uid, data in self.client.fetch(batch, ["RFC822.SIZE"]).items():
                sizes[uid] = int(data.get(b"RFC822.SIZE", 0))
        current: list[tuple[int, str]] = []
        total = 0
        for uid, key in entries:
            size = sizes.get(uid, 0)
            if current and total + size > BODY_BATCH_BYTES:
                yield current
                current, total = [], 0
            current.append((uid, key))
            total += size
        if current:
            yield current

    def _record(
        self, folder: str, uid: int, key: str, data: Mapping[bytes, Any], summary: Summary
    ) -> list[Message]:
        """The message's record, after the BLOB messages of its attachments; nothing when it
        is rejected."""
        raw = data.get(b"BODY[]") or b""
        block, _ = split_message(raw)
        try:
            built = build_record(
                raw,
                key,
                parse_headers(block),
                folders=summary.folders,
                flags=summary.flags,
                fallback_date=_aware(data.get(b"INTERNALDATE")),
                fallback_source="internaldate",
                blobs=self.attachments,
            )
        except Rejected as exc:
            self.attachments.discard()
            self.rejections.reject(exc.reason, exc.detail, f"{folder} UID {uid}")
            return []
        return [*self.attachments.handed_over(), record(MESSAGES, key, built)]

    def folder_records(self) -> Iterator[Message]:
        for listed in self.listed:
            data = {
                "name": listed.name,
                "kind": "folder",
                "delimiter": listed.delimiter,
                "special_use": listed.special_use,
                "message_count": self.counts.get(listed.name),
            }
            yield record(
                MAIL_FOLDERS,
                ["folder", listed.name],
                {k: v for k, v in data.items() if v is not None},
            )
        for name in sorted(set(self.old) - set(self.new)):
            yield record(
                MAIL_FOLDERS, ["folder", name], {"kind": "folder", "name": name}, op="delete"
            )


def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
    """Log in, prove the account address, then plan, fetch and checkpoint."""
    settings = Settings.from_env(env)
    client = _connect(settings)
    try:
        if settings.address:
            yield identity(CLAIM, settings.address)
        if start.identify_only:
            return
        session = _Session(start, client, settings)
        yield from session.plan()
        if start.wants(MAIL_FOLDERS):
            yield from session.folder_records()
        if start.wants(MESSAGES):
            yield from session.emit()
            yield state_message(MESSAGES, dump_state(session.new))
    except (OSError, IMAPClientAbortError) as exc:
        raise _unavailable(settings, exc) from None
    finally:
        try:
            client.logout()
        except (OSError, IMAPClientError):
            client.shutdown()
