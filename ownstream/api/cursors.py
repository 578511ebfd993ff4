"""Opaque cursors and change tokens. They carry positions, never authority: every request is
re-scoped from its bearer, so a forged cursor can only move within what the grant allows."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from ownstream.errors import InvalidCursor


def encode(kind: str, payload: dict[str, Any]) -> str:
    raw = orjson.dumps({"k": kind, **payload})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, token: str, param: str = "cursor") -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidCursor(f"{param} is not a cursor this server issued", param=param) from None
    if not isinstance(payload, dict) or payload.get("k") != kind:
        raise InvalidCursor(f"{param} does not belong to this kind of request", param=param)
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
