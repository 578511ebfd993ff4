"""Opaque cursors and change tokens, sealed with AES-GCM under the server's key.

They carry positions, never authority (every request is re-scoped from its bearer). Sealing
matters all the same: a page position holds the cursor field's value, which a grant may hide,
and a forged position could probe it; a change token holds the server-wide sequence."""

from __future__ import annotations

from typing import Any

import orjson

from ownstream.credentials import Vault
from ownstream.errors import InvalidCursor
from ownstream.store.base import RecordPosition, SearchHit, StoredRecord

PREFIXES = {"page": "pg1", "changes": "ch1", "since": "cs1", "search": "sr1"}


class ForeignCursor(InvalidCursor):
    """Shaped like one of ours but sealed under another key: another server or database."""


def encode(vault: Vault, kind: str, payload: dict[str, Any]) -> str:
    return f"{PREFIXES[kind]}.{vault.seal_token(kind, orjson.dumps(payload))}"


def decode(vault: Vault, kind: str, token: str, param: str = "cursor") -> dict[str, Any]:
    prefix, _, sealed = token.partition(".")
    if prefix != PREFIXES[kind] or not sealed:
        raise InvalidCursor(f"{param} is not a {kind} cursor this server issued", param=param)
    raw = vault.open_token(kind, sealed)
    if raw is None:
        raise ForeignCursor(f"{param} was not issued by this server", param=param)
    payload = orjson.loads(raw)
    if not isinstance(payload, dict):
        raise InvalidCursor(f"{param} is not a cursor this server issued", param=param)
    return payload


def values(payload: dict[str, Any], param: str, **kinds: type) -> list[Any]:
    """The named values of a decoded cursor, each of the expected type; anything else is a
    cursor this server did not issue (400 invalid_cursor), never a server error."""
    found = []
    for name, kind in kinds.items():
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidCursor(f"{param} is not a cursor this server issued", param=param)
        found.append(value)
    return found


def page_position(
    vault: Vault, cursor: str | None, stream: str, order: str, shape: str | None = None
) -> RecordPosition | None:
    """Where a page cursor of `stream` in `order` (and, with the owner's filters, of their
    `shape`) left off (None: from the start)."""
    if cursor is None:
        return None
    position = decode(vault, "page", cursor)
    if (position.get("s"), position.get("o"), position.get("f")) != (stream, order, shape):
        raise InvalidCursor("cursor belongs to another stream, order or filter", param="cursor")
    return RecordPosition(*values(position, "cursor", v=str, c=str, r=str))


def page_cursor(
    vault: Vault, stream: str, order: str, last: StoredRecord, shape: str | None = None
) -> str:
    """The cursor that continues a page after `last`."""
    position = {"s": stream, "o": order, "v": last.cursor_value, "c": last.connection_id,
                "r": last.record_key}
    return encode(vault, "page", position if shape is None else {**position, "f": shape})


def search_position(vault: Vault, cursor: str | None, q: str) -> int | None:
    """Where a search cursor for `q` left off (None: from the newest)."""
    if cursor is None:
        return None
    position = decode(vault, "search", cursor)
    if position.get("q") != q:
        raise InvalidCursor("cursor belongs to another query", param="cursor")
    (before,) = values(position, "cursor", before=int)
    before_id: int = before
    return before_id


def search_cursor(vault: Vault, q: str, last: SearchHit) -> str:
    return encode(vault, "search", {"q": q, "before": last.record_id})
