"""One raw message as a `messages` record, with the standard library's `email` (policy.default).

Everything that could differ between paths for the same message is normalized here: line ends
(an IMAP server sends CRLF, an mbox file holds LF) in bodies, sizes and attachment hashes, the
spelling of INBOX, the order of sets. A message is untrusted input: a header the `email`
package cannot parse degrades to its raw text, and only a message that has no header at all,
no usable date, or a pathological structure is rejected, with a reason.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from ownstream.clock import iso
from ownstream.connectors.mail.keys import Headers, first, message_ids, normalize_message_id

MAX_MESSAGE_BYTES = 50 * 1024**2
"""A larger message is rejected: the `email` package parses a message whole and briefly needs
about eight times its size, so this bounds a connector's memory at a few hundred MiB."""
MAX_BODY_CHARS = 100_000
"""body_text and html_text are cut here (body_truncated): records stay small to read and index."""
MAX_PARTS = 1000
"""More MIME parts than this is not mail a person wrote; such a message is rejected."""
MAX_REFERENCES = 50
_BASE64_CHUNK = 1 << 20
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")
_PARSER = BytesParser(policy=policy.default)
_CANONICAL = policy.default.clone(linesep="\r\n")
_IDENTIFYING = ("from", "to", "subject", "date", "message-id")
_BODY_TYPES = ("text/plain", "text/html")


BlobSink = Callable[[Iterable[bytes], str], dict[str, Any] | None]
"""Stores an attachment's decoded content (chunks, and its media type) as a blob and answers
its `blob_ref`, or None when the content is not stored."""


class Rejected(Exception):
    """This message cannot become a record. `reason` is a short code counted per import."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def crlf_size(raw: bytes) -> int:
    """The message's size with CRLF line ends, as IMAP's RFC822.SIZE counts it."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def normalize_folder(name: str) -> str:
    """INBOX is case-insensitive in IMAP; spell it one way so paths agree."""
    return "INBOX" if name.casefold() == "inbox" else name


def header_date(value: str | None) -> datetime | None:
    """A Date header as an aware moment, or None when it is missing or not a plausible date."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC, origin unknown
        moment = moment.replace(tzinfo=UTC)
    return moment if moment.year >= 1970 else None


def is_message(headers: Headers) -> bool:
    """Whether a header block names anything a message has; text without one is not mail."""
    return any(name in headers for name in _IDENTIFYING)


def build_record(
    raw: bytes,
    key: str,
    headers: Headers,
    *,
    folders: Iterable[str],
    flags: Iterable[str],
    labels: Iterable[str] = (),
    fallback_date: datetime | None = None,
    fallback_source: str | None = None,
    blobs: BlobSink | None = None,
) -> dict[str, Any]:
    """The record of one message. `headers` is its parsed header block (keys.parse_headers);
    `fallback_date` (with its `fallback_source`) stands in for a missing or unusable Date;
    `blobs`, when given, stores each attachment's content (its `blob_ref`)."""
    if not is_message(headers):
        raise Rejected("not_a_message", "no From, To, Subject, Date or Message-ID header")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Rejected("too_large", f"{len(raw)} bytes, over the {MAX_MESSAGE_BYTES} limit")
    moment, source = header_date(first(headers, "date")), "header"
    if moment is None:
        moment, source = fallback_date, fallback_source or "header"
    if moment is None:
        raise Rejected("undated", "no usable Date header and no date from the mailbox")
    message = _PARSER.parsebytes(raw)
    header_id = normalize_message_id(first(headers, "message-id"))
    references = message_ids(first(headers, "references"))
    in_reply_to = message_ids(first(headers, "in-reply-to"))
    body = _Body(blobs)
    for part in _leaves(message):
        body.add(part)
    senders = _addresses(message, headers, "from")
    record: dict[str, Any] = {
        "message_id": key,
        "header_message_id": header_id,
        "thread_id": (references or in_reply_to or [header_id or key])[0],
        "in_reply_to": in_reply_to[0] if in_reply_to else None,
        "references": references[:MAX_REFERENCES] or None,
        "gmail_thread_id": first(headers, "x-gm-thrid"),
        "date": iso(moment),
        "date_source": source,
        "from": senders[0] if senders else None,
        "sender": next(iter(_addresses(message, headers, "sender")), None),
        "reply_to": _addresses(message, headers, "reply-to") or None,
        "to": _addresses(message, headers, "to") or None,
        "cc": _addresses(message, headers, "cc") or None,
        "bcc": _addresses(message, headers, "bcc") or None,
        "subject": _header_text(message, headers, "subject"),
        "body_text": body.text.value,
        "html_text": body.html.value,
        "body_truncated": (body.text.truncated or body.html.truncated) or None,
        "size": crlf_size(raw),
        "folders": sorted({normalize_folder(f) for f in folders}),
        "labels": sorted(set(labels)) or None,
        "flags": sorted(set(flags)),
        "attachments": body.attachments or None,
    }
    return {k: v for k, v in record.items() if v is not None and v != ""}


def _leaves(message: Message) -> Iterator[Message]:
    """The leaf parts in document order; an attached message (message/rfc822) is one leaf."""
    stack = [message]
    seen = 0
    while stack:
        part = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            raise Rejected("too_many_parts", f"more than {MAX_PARTS} MIME parts")
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list) and (
            part is message or part.get_content_type() != "message/rfc822"
        ):
            stack.extend(c for c in reversed(children) if isinstance(c, Message))
        else:
            yield part


class _Capped:
    """Text gathered up to MAX_BODY_CHARS."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.truncated = False

    def add(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        room = MAX_BODY_CHARS - self.length
        if len(text) > room:
            text, self.truncated = text[:room], True
        self.parts.append(text)
        self.length += len(text) + 2

    @property
    def value(self) -> str | None:
        return "\n\n".join(self.parts)[:MAX_BODY_CHARS] or None


class _Body:
    def __init__(self, blobs: BlobSink | None) -> None:
        self.text = _Capped()
        self.html = _Capped()
        self.attachments: list[dict[str, Any]] = []
        self.blobs = blobs

    def add(self, part: Message) -> None:
        content_type = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if content_type in _BODY_TYPES and disposition != "attachment" and filename is None:
            text = _decoded_text(part)
            if content_type == "text/plain":
                self.text.add(text)
            else:
                self.html.add(html_to_text(text))
            return
        stored = None if self.blobs is None else self.blobs(_content(part), content_type)
        if stored is not None:
            size, digest = stored["size_bytes"], stored["sha256"]
        else:
            size, digest = _digest(_content(part))
        content_id = str(part.get("content-id") or "").strip().strip("<>").strip()
        attachment = {
            "filename": filename,
            "content_type": content_type,
            "size": size,
            "sha256": digest,
            "content_id": content_id or None,
            "disposition": disposition,
            "blob_ref": stored,
        }
        self.attachments.append({k: v for k, v in attachment.items() if v is not None})


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # an undecodable RFC 2231 parameter: the part simply has no usable name
        return None
    return name.strip() or None if isinstance(name, str) else None


def _decoded_text(part: Message) -> str:
    """A text part's content as text, line ends as LF, whatever charset it declares."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except LookupError:  # a charset Python does not know: UTF-8 is the likeliest
        text = payload.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _content(part: Message) -> Iterator[bytes]:
    """A part's decoded content, a chunk at a time.

    Base64 (all large attachments) is decoded a chunk at a time, so the decoded content is
    never held whole. Other encodings carry text, whose line ends are made CRLF (its
    canonical form) so that an IMAP copy and an mbox copy hash alike.
    """
    if part.get_content_type() == "message/rfc822" and part.is_multipart():
        inner = part.get_payload(0)
        assert isinstance(inner, Message)
        yield inner.as_bytes(policy=_CANONICAL)
        return
    encoding = str(part.get("content-transfer-encoding") or "").strip().lower()
    # The stored text itself: get_payload() first encodes all of it to look for surrogates,
    # a transient copy as large as the attachment.
    payload = getattr(part, "_payload", None)
    if encoding == "base64" and isinstance(payload, str):
        yield from _base64_chunks(payload)
        return
    data = part.get_payload(decode=True)
    content = data if isinstance(data, bytes) else b""
    yield content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _digest(chunks: Iterable[bytes]) -> tuple[int, str]:
    """Size and sha256 of content, hashed as it is decoded."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _base64_chunks(encoded: str) -> Iterator[bytes]:
    carry = ""
    for start in range(0, len(encoded), _BASE64_CHUNK):
        text = carry + _NOT_BASE64.sub("", encoded[start : start + _BASE64_CHUNK])
        usable = len(text) - len(text) % 4
        yield _a2b(text[:usable])
        carry = text[usable:]
    if carry.rstrip("="):
        yield _a2b(carry + "=" * (-len(carry) % 4))


def _a2b(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:  # broken base64: this chunk has no content to count
        return b""


def _header_text(message: Message, headers: Headers, name: str) -> str | None:
    """A header's decoded text (RFC 2047), or its raw text when the `email` package fails."""
    try:
        value = message[name]
        text = None if value is None else str(value)
    except Exception:  # malformed input the header registry cannot parse
        text = decode_raw_header(first(headers, name))
    return " ".join(text.split()) if text else None


def decode_raw_header(value: str | None) -> str | None:
    """A raw header value with its RFC 2047 encoded words decoded, as far as they decode."""
    if value is None:
        return None
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # not even RFC 2047 decodable: the raw text is what there is
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _addresses(message: Message, headers: Headers, name: str) -> list[dict[str, str]]:
    try:
        value = message[name]
        pairs = (
            []
            if value is None
            else [(a.display_name, a.addr_spec) for a in getattr(value, "addresses", ())]
        )
    except Exception:  # malformed input the header registry cannot parse: read it loosely
        pairs = getaddresses([decode_raw_header(v) or "" for v in headers.get(name, [])])
    found = []
    for display, spec in pairs:
        spec = spec.strip()
        if not spec or spec == "<>":
            continue
        entry = {"name": " ".join(display.split()), "address": spec}
        found.append({k: v for k, v in entry.items() if v})
    return found


_BLOCK_TAGS = (
    "address article aside blockquote br dd div dl dt footer h1 h2 h3 h4 h5 h6 header hr "
    "li ol p pre section table td th tr ul"
)


class _HtmlText(HTMLParser):
    """Visible text of an HTML body: scripts and styles dropped, blocks on their own lines."""

    BLOCKS = frozenset(_BLOCK_TAGS.split())
    HIDDEN = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


_TAG = re.compile(r"<[^>]*>")


def html_to_text(html: str) -> str:
    """A plain-text rendering of an HTML body: one line per block, spaces collapsed."""
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # html.parser gives up on some malformed markup: strip tags instead
        text = _TAG.sub(" ", html)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)
