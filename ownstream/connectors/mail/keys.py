"""Record keys: the normalized Message-ID, the fallback without one, and reused Message-IDs.

Keys are computed from the raw header block and the first bytes of the raw body, which every
path has byte for byte (an IMAP server and an mbox file differ only in line ends and From_
quoting, both undone here), so the same message gets the same key on every path. Parsing the
header block by hand keeps the first pass of an import cheap: no MIME parse is needed for it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.utils import parseaddr

_MESSAGE_ID = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(rb"\s+")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(rb"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 ftext)
BODY_HEAD_BYTES = 256
"""How much of the body (whitespace collapsed) goes into the key of a message without an id."""
BODY_HEAD_FETCH = 2048
"""Raw body bytes to read for it: enough that collapsing whitespace still leaves the head."""
FALLBACK_PREFIX = "nomsgid:"

Headers = dict[str, list[str]]


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """The header block and the body, split at the first empty line."""
    found = _BLANK_LINE.search(raw)
    if found is None:
        return raw, b""
    return raw[: found.start()], raw[found.end() :]


def parse_headers(block: bytes) -> Headers:
    """Header fields by lowercase name, each value unfolded, in the order they appear.

    Bytes are decoded as UTF-8 with surrogate escapes, so 8-bit headers survive unchanged.
    Lines that are neither a field nor a continuation are ignored.
    """
    fields: Headers = {}
    name: str | None = None
    parts: list[bytes] = []

    def close() -> None:
        if name is not None:
            value = b" ".join(parts).decode("utf-8", "surrogateescape").strip()
            fields.setdefault(name, []).append(value)

    for line in block.splitlines():
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                parts.append(line.strip())
            continue
        field, colon, value = line.partition(b":")
        close()
        name, parts = None, []
        if colon and _FIELD_NAME.fullmatch(field):
            name = field.decode("ascii").lower()
            parts = [value.strip()]
    close()
    return fields


def first(headers: Headers, name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def normalize_message_id(value: str | None) -> str | None:
    """`<Local@Example.ORG>` → `Local@example.org`: brackets and whitespace go, the domain
    part is lowercased (it is case-insensitive; the local part may not be)."""
    if not value:
        return None
    found = _MESSAGE_ID.search(value)
    text = "".join((found.group(1) if found else value).split())
    if not text:
        return None
    local, at, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}" if at and local else text


def message_ids(value: str | None) -> list[str]:
    """Every `<id>` of a References or In-Reply-To header, normalized, in order."""
    if not value:
        return []
    found = [normalize_message_id(f"<{m}>") for m in _MESSAGE_ID.findall(value)]
    return [m for m in found if m]


def address_of(value: str | None) -> str:
    """The bare, lowercased address of a From/Delivered-To value ('' when there is none)."""
    return parseaddr(value or "")[1].strip().lower() if value else ""


def _collapse(data: bytes) -> bytes:
    return _WHITESPACE.sub(b" ", data).strip()


def _text(value: str | None) -> bytes:
    return _collapse((value or "").encode("utf-8", "surrogateescape"))


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\n".join(parts)).hexdigest()


@dataclass(frozen=True)
class KeyBasis:
    """What a message's key is derived from."""

    message_id: str | None
    fingerprint: str  # 12 hex of (Date, From address): tells apart messages reusing an id
    fallback: str  # the key when there is no Message-ID

    @classmethod
    def of(cls, headers: Headers, body_head: bytes) -> KeyBasis:
        date, sender = _text(first(headers, "date")), first(headers, "from")
        fallback = _digest(
            date,
            _text(sender),
            _text(first(headers, "to")),
            _text(first(headers, "subject")),
            _collapse(body_head[:BODY_HEAD_FETCH])[:BODY_HEAD_BYTES],
        )
        return cls(
            message_id=normalize_message_id(first(headers, "message-id")),
            fingerprint=_digest(date, address_of(sender).encode("utf-8", "surrogateescape"))[:12],
            fallback=FALLBACK_PREFIX + fallback[:32],
        )


class KeyAssigner:
    """Gives each message of one source its record key, keeping reused Message-IDs apart.

    The first message a source meets under a Message-ID owns the plain id; another message
    under that id with a different Date or From gets `<id>#<fingerprint>`. The same message
    met again (in another folder, or a list's copy with a tagged subject) gets the same key.
    """

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}

    def remember(self, key: str, fingerprint: str) -> None:
        """Seed with a key given on an earlier run, so ownership survives across runs."""
        if not key.startswith(FALLBACK_PREFIX) and not key.endswith("#" + fingerprint):
            self._owners.setdefault(key, fingerprint)

    def key(self, basis: KeyBasis) -> str:
        if basis.message_id is None:
            return basis.fallback
        owner = self._owners.setdefault(basis.message_id, basis.fingerprint)
        if owner == basis.fingerprint:
            return basis.message_id
        return f"{basis.message_id}#{basis.fingerprint}"
