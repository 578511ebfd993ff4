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
