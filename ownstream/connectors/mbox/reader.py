"""Stream the messages of one mbox file: From_ separators, mboxrd unquoting, no whole-file reads.

A message is collected line by line and handed over once its next separator (or the end of
the file) is reached, so memory holds one message at a time; a message over the size limit is
not even collected, only reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import IO

from ownstream.connectors.mail import MAX_MESSAGE_BYTES

_FROM = b"From "
# "From sender Wed Jun  5 10:00:00 2024", optionally with a zone before the year (Takeout).
_FROM_LINE = re.compile(
    rb"^From \S*\s+(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    rb"Nov|Dec)\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(?:([+-]\d{4})\s+)?(\d{4})\s*$"
)
_MONTHS = {
    m: i for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)
}


@dataclass(frozen=True)
class RawMessage:
    """One mbox entry: its bytes (None when it was over the size limit), where it started."""

    raw: bytes | None
    size: int
    line: int  # 1-based line of its From_ separator
    received: datetime | None  # the From_ line's date


def from_line_date(line: bytes) -> datetime | None:
    """The date of a From_ line (UTC unless it names a zone), or None."""
    found = _FROM_LINE.match(line.rstrip(b"\r\n"))
    if found is None:
        return None
    month, day, hour, minute, second, zone, year = found.groups()
    offset = UTC if zone is None else _zone(zone)
    try:
        return datetime(
            int(year),
            _MONTHS[month],
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            tzinfo=offset,
        ).astimezone(UTC)
    except ValueError:
        return None


def _zone(text: bytes) -> timezone:
    sign = -1 if text[:1] == b"-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[3:5])))


def is_mbox(head: bytes) -> bool:
    """Whether a file starting with these bytes is an mbox (its first line a From_ line)."""
    return head.startswith(_FROM)


def read_messages(handle: IO[bytes]) -> Iterator[RawMessage]:
    """Every message of an mbox, in file order.

    A separator is a line starting with "From " that follows an empty line (or opens the
    file), or any line that has the full From_ shape. Lines reading ">From ", ">>From "... lose
    one ">" (mboxrd); in an mboxo file, where ">From " in a body was never quoted, that
    removes a ">" the sender wrote, which no reader can tell apart.
    """
    lines: list[bytes] = []
    size = 0
    start_line = 0
    received: datetime | None = None
    previous_blank = True
    in_message = False
    for number, line in enumerate(handle, 1):
        if line.startswith(_FROM) and (previous_blank or _FROM_LINE.match(line.rstrip())):
            if in_message:
                yield _finish(lines, size, start_line, received)
            lines, size, start_line = [], 0, number
            received = from_line_date(line)
            in_message, previous_blank = True, False
            continue
        previous_blank = line in (b"\n", b"\r\n")
        if not in_message:
            continue  # bytes before the first separator belong to no message
        size += len(line)
        if size > MAX_MESSAGE_BYTES:
            lines = []  # too large: count it, never hold it
            continue
        if line.startswith(b">") and line.lstrip(b">").startswith(_FROM):
            line = line[1:]
        lines.append(line)
    if in_message:
        yield _finish(lines, size, start_line, received)


def _finish(lines: list[bytes], size: int, line: int, received: datetime | None) -> RawMessage:
    if size > MAX_MESSAGE_BYTES:
        return RawMessage(None, size, line, received)
    # The empty line before the next separator belongs to the mbox format, not the message.
    if len(lines) > 1 and lines[-1] in (b"\n", b"\r\n"):
        lines.pop()
    raw = b"".join(lines)
    return RawMessage(raw, len(raw), line, received)
