"""Field windows: a bounded slice of one long text field of one record, by offset or centred
on a match, within the grant (stream, connections, window, resources and the field itself).

The record is read through a scope narrowed to the one field, so nothing else of it leaves the
store; the selector rules and the response object follow the PDPP reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from ownstream.errors import (
    FieldNotFound,
    FieldNotGranted,
    FieldNotText,
    InvalidRequest,
    InvalidWindow,
    QueryNotFound,
    UnknownField,
)
from ownstream.home import Home
from ownstream.model import Bearer, ReadScope
from ownstream.reads.common import Warnings, attribution, clamped, note_read
from ownstream.reads.records import find_record

DEFAULT_CHARS = 4096
MAX_CHARS = 16_384
MAX_CONTEXT_CHARS = 8192
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Selector:
    """Where the window starts (`offset`) and how long it is; `query` for a match window."""

    offset: int
    limit: int
    query: str | None = None
    before: int = 0


def _count(raw: str | None, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text.lstrip("-").isascii() or not text.lstrip("-").isdigit() or len(text) > 12:
        raise InvalidWindow(f"{name} must be an integer", param=name)
    value = int(text)
    if value < minimum:
        raise InvalidWindow(f"{name} must be an integer of at least {minimum}", param=name)
    if maximum is not None and value > maximum:
        raise InvalidWindow(f"{name} must be at most {maximum}", param=name)
    return value


def parse_selector(
    *,
    offset_chars: str | None,
    limit_chars: str | None,
    q: str | None,
    before_chars: str | None,
    after_chars: str | None,
    warnings: Warnings,
) -> Selector:
    """Offset windows by default; `q` asks for a window around its first (ASCII
    case-insensitive) occurrence, with `before_chars`/`after_chars` of context."""
    offset = _count(offset_chars, "offset_chars", minimum=0)
    limit = _count(limit_chars, "limit_chars", minimum=1)
    before = _count(before_chars, "before_chars", minimum=0, maximum=MAX_CONTEXT_CHARS)
    after = _count(after_chars, "after_chars", minimum=0, maximum=MAX_CONTEXT_CHARS)
    if q is None and (before is not None or after is not None):
        raise InvalidWindow("before_chars and after_chars require q", param="q")
    if q is not None and offset is not None:
        raise InvalidWindow("q is exclusive with offset_chars", param="offset_chars")
    if q is not None and not q:
        raise InvalidWindow("q must be a non-empty string", param="q")
    if limit is None:
        context = before is not None or after is not None
        limit = (before or 0) + len(q) + (after or 0) if q is not None and context else (
            DEFAULT_CHARS
        )
    limit = clamped(limit, MAX_CHARS, "limit_chars", warnings)
    return Selector(offset=offset or 0, limit=limit, query=q, before=before or 0)


def window(text: str, selector: Selector) -> dict[str, Any]:
    """The `window` object of a field window over `text`."""
    match_start = match_end = None
    offset = selector.offset
    if selector.query is not None:
        found = text.translate(ASCII_LOWER).find(selector.query.translate(ASCII_LOWER))
        if found < 0:
            raise QueryNotFound("q does not occur in the field", param="q")
        match_start, match_end = found, found + len(selector.query)
        offset = max(0, found - selector.before)
    total = len(text)
    start = min(offset, total)
    piece = text[start : start + selector.limit]
    end = start + len(piece)
    return {
        "text": piece,
        "total_chars": total,
        "start_chars": start,
        "end_chars": end,
        "limit_chars": selector.limit,
        "complete": start == 0 and end >= total,
        "has_more": end < total,
        "match_start_chars": match_start,
        "match_end_chars": match_end,
        "next_offset_chars": end if end < total else None,
        "previous_offset_chars": max(0, start - selector.limit) if start > 0 else None,
    }


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def field_window(
    home: Home,
    who: Bearer,
    scope: ReadScope,
    record_id: str,
    field: str | None,
    selector: Selector,
    warnings: Warnings,
) -> dict[str, Any]:
    """`GET /v1/streams/{stream}/records/{id}/field-window`."""
    if not field:
        raise InvalidRequest("field is required", param="field")
    if field not in scope.stream.fields:
        raise UnknownField(f"{scope.stream.name} has no field {field!r}", param="field")
    if field not in scope.fields:
        raise FieldNotGranted(f"the grant does not include field {field!r}", param="field")
    record, labels = find_record(home, replace(scope, fields=(field,)), record_id)
    if field not in record.data:
        raise FieldNotFound(f"field {field!r} is not present on this record", param="field")
    value = record.data[field]
    if not isinstance(value, str):
        raise FieldNotText(
            f"field {field!r} holds {_json_type(value)}, not text", param="field"
        )
    note_read(home, who, scope.stream.name, [record.connection_id])
    return {
        "object": "field_window",
        "stream": scope.stream.name,
        "record_id": record.record_key,
        **attribution(record.connection_id, labels),
        "field": {"path": field, "type": "string"},
        "url": f"/v1/streams/{scope.stream.name}/records/"
        f"{quote(record.record_key, safe='')}/field-window",
        "window": window(value, selector),
        "meta": {"warnings": warnings},
    }
