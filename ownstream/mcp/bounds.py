"""What keeps one tool result small enough for an assistant's context.

Pages are bounded by the read surface's page sizes. Within a record, a long top-level text
value is cut to its first window (the field-window function, from offset 0) and a long
top-level list to its first items; each cut is listed in `windows`, a text cut with the
`read_record_field` arguments that read on from where it stopped. Everything else is the REST
body unchanged.
"""

from __future__ import annotations

from typing import Any

from ownstream.mcp.handles import RecordHandle
from ownstream.reads.field_window import DEFAULT_CHARS, Selector, window

LIST_TEXT_CHARS = 1000  # per text value in a page of records
RECORD_TEXT_CHARS = DEFAULT_CHARS  # per text value of one fetched record (a field window)
MAX_ITEMS = 50  # per list value


def bound_record(record: dict[str, Any], text_chars: int) -> tuple[dict[str, Any], list[Any]]:
    """A record body with its long values cut, and what was cut (a tombstone has no data)."""
    data = record.get("data")
    if not isinstance(data, dict):
        return record, []
    handle = RecordHandle(record["stream"], record["id"], record["connection_id"])
    shown: dict[str, Any] = {}
    cuts: list[Any] = []
    for name, value in data.items():
        if isinstance(value, str) and len(value) > text_chars:
            piece = window(value, Selector(offset=0, limit=text_chars))
            shown[name] = piece["text"]
            cuts.append(
                {
                    "id": handle.id,
                    "field": name,
                    "total_chars": piece["total_chars"],
                    "shown_chars": piece["end_chars"],
                    "read_more": {
                        "tool": "read_record_field",
                        "arguments": {
                            "id": handle.id,
                            "field_path": name,
                            "offset_chars": piece["next_offset_chars"],
                        },
                    },
                }
            )
        elif isinstance(value, list) and len(value) > MAX_ITEMS:
            shown[name] = value[:MAX_ITEMS]
            cuts.append(
                {"id": handle.id, "field": name, "total_items": len(value),
                 "shown_items": MAX_ITEMS}
            )
        else:
            shown[name] = value
    return {**record, "data": shown}, cuts


def bound_page(body: dict[str, Any], text_chars: int) -> tuple[dict[str, Any], list[Any]]:
    """A list body whose records are each bounded, and every cut made."""
    records, cuts = [], []
    for record in body["data"]:
        shown, cut = bound_record(record, text_chars)
        records.append(shown)
        cuts.extend(cut)
    return {**body, "data": records}, cuts
