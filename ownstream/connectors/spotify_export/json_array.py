"""The items of a JSON array document, parsed one at a time from a stream of byte chunks.

orjson parses a whole document at once; a 9 MB history file then becomes about 25 MiB of
Python objects held together. Here the array is read a buffer (`READ_AHEAD` bytes) at a time:
the whole items the buffer holds are handed to orjson together, so only one buffer's items are
alive at a time and every value is exactly what orjson makes of it.

A buffer's items are the bytes from the next item to the buffer's last `}`, parsed inside
brackets: when they parse, they are whole items (a JSON value is self-delimiting, so the walk
below would find the same ones), and one orjson call per buffer is much cheaper than one per
item. When they do not (the last `}` is inside a string or a nested object of an item the buffer
cuts, or the document is damaged), the items are walked one at a time until the next buffer:
each item's byte span is found, then handed to orjson.

The walk accepts a document only if orjson would: the spans are parsed by orjson, the bytes
between them may be only JSON whitespace, one comma between two items and the closing bracket
(trailing whitespace after it), and an item is parsed inside brackets when it could be deep
enough to meet orjson's depth limit there. A document that is not an array, or breaks off, or
is not JSON at all raises `NotAnArray` (after the items before the damage): the caller decides
what to say, orjson's own message about the whole document being the one to quote.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

READ_AHEAD = 256 * 1024
"""Bytes pulled from the stream at a time (more when an item is longer than what is held)."""
ORJSON_DEPTH_LIMIT = 1024
"""orjson refuses a document nested deeper than this, the array itself counting as one level."""

_BOM = b"\xef\xbb\xbf"
_INK = re.compile(rb"[^ \t\n\r]")
# what comes before the next bracket, strings included: no match while the buffer ends first
# (inside a string, or before the bracket)
_TO_BRACKET = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+(?=[\[\]{}])', re.DOTALL)
# the rest of a string once its opening quote is read: no match while the closing quote is
# still to come (the buffer ends inside the string)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+"', re.DOTALL)
# a number or a literal runs to the next delimiter an array item can be followed by
_DELIMITER = re.compile(rb"[ \t\n\r,\]]")
_OPEN = b"[{"


class NotAnArray(Exception):
    """The document is not a JSON array of valid JSON values (or its stream ended early)."""


def _parsed(span: bytes) -> Any:
    """One item, as orjson parses it inside the array: an item at least as long as the depth
    limit needs could be nested deeply enough to be refused there, so it is parsed in brackets."""
    if len(span) < 2 * ORJSON_DEPTH_LIMIT:
        return orjson.loads(span)
    return orjson.loads(b"[" + span + b"]")[0]


def _item_at(buffer: bytes, start: int) -> tuple[Any, int] | None:
    """The item starting at `start` and the offset just past it, or None when `buffer` ends
    before the item does."""
    first = buffer[start]
    if first == 0x7B:  # "{": the first "}" closes a flat object, the usual history entry
        end = buffer.find(b"}", start) + 1
        if end:
            try:
                # a complete JSON value is no prefix of another, so a span that parses is the item
                return _parsed(buffer[start:end]), end
            except orjson.JSONDecodeError:
                pass  # a "}" inside a string or a nested object: walk the structure
    if first in _OPEN:
        depth, end = 0, start
        while True:
            run = _TO_BRACKET.match(buffer, end)
            if run is None:
                return None
            end = run.end() + 1
            if buffer[end - 1] in _OPEN:
                depth += 1
                if depth == ORJSON_DEPTH_LIMIT:  # with the array's level, deeper than orjson reads
                    raise NotAnArray
            else:
                depth -= 1
                if depth == 0:
                    break
    elif first == 0x22:
        rest = _STRING_REST.match(buffer, start + 1)
        if rest is None:
            return None
        end = rest.end()
    else:
        delimiter = _DELIMITER.search(buffer, start)
        if delimiter is None:
            return None
        end = delimiter.start()
    try:
        return _parsed(buffer[start:end]), end
    except orjson.JSONDecodeError:
        raise NotAnArray from None


def array_items(chunks: Iterator[bytes]) -> Iterator[Any]:
    """Each item of the JSON array `chunks` spell (a UTF-8 byte order mark first is allowed, as
    orjson is given the document without it), parsed when it is reached."""
    buffer, at = b"", 0
    tried = False  # whether the buffer's whole items were parsed together (or could not be)

    def pull(least: int) -> bool:
        """Keep what is unread and add at least `least` bytes; False at the end of the stream."""
        nonlocal buffer, at, tried
        parts, added = [buffer[at:]], 0
        for chunk in chunks:
            parts.append(chunk)
            added += len(chunk)
            if added >= least:
                break
        if not added:
            return False
        buffer, at, tried = b"".join(parts), 0, False
        return True

    def whole_items() -> list[Any]:
        """The items from `at` to the buffer's last `}` when they are whole items, parsed by one
        orjson call and moved past; none when they are not. Tried once a buffer."""
        nonlocal at, tried
        if tried:
            return []
        tried = True
        end = buffer.rfind(b"}", at) + 1
        if not end:
            return []
        try:
            items: list[Any] = orjson.loads(b"[" + buffer[at:end] + b"]")
        except orjson.JSONDecodeError:
            return []
        at = end
        return items

    def space() -> bool:
        """Move past whitespace; False when the document ends there."""
        nonlocal at
        while True:
            ink = _INK.search(buffer, at)
            if ink is not None:
                at = ink.start()
                return True
            at = len(buffer)
            if not pull(READ_AHEAD):
                return False

    while len(buffer) < len(_BOM) and pull(len(_BOM)):
        pass
    buffer = buffer.removeprefix(_BOM)
    if not space() or buffer[at] != 0x5B:  # "["
        raise NotAnArray
    at += 1
    if not space():
        raise NotAnArray
    if buffer[at] == 0x5D:  # "]"
        at += 1
    else:
        while True:
            items = whole_items()
            if items:
                yield from items
            else:
                while (item := _item_at(buffer, at)) is None:
                    if not pull(max(len(buffer) - at, READ_AHEAD)):  # doubles a long item's room
                        raise NotAnArray
                value, at = item
                yield value
            if not space():
                raise NotAnArray
            mark = buffer[at]
            at += 1
            if mark == 0x5D:
                break
            if mark != 0x2C or not space() or buffer[at] == 0x5D:  # "," then an item
                raise NotAnArray
    if space():
        raise NotAnArray  # something follows the array
