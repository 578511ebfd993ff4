"""Builders for the protocol messages test scripts say (what a connector would print)."""

from __future__ import annotations

from typing import Any


def identity_msg(value: str, claim: str = "account_id") -> dict[str, Any]:
    return {"type": "IDENTITY", "claim": claim, "value": value}


def item(key: str, **data: Any) -> dict[str, Any]:
    """A RECORD of the scripted connector's `items` stream."""
    return record("items", key, {"id": key, **data})


def record(stream: str, key: Any, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "RECORD",
        "stream": stream,
        "key": key,
        "data": data,
        "emitted_at": "2024-03-01T00:00:00Z",
        **extra,
    }


def state_msg(stream: str, cursor: Any) -> dict[str, Any]:
    return {"type": "STATE", "stream": stream, "cursor": cursor}


def done(
    count: int, status: str = "succeeded", error: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "DONE", "status": status, "records_emitted": count}
    if error is not None:
        message["error"] = error
    return message


def entry(key: str, written_at: str = "2024-01-01T08:00:00Z", **data: Any) -> dict[str, Any]:
    """A RECORD of the shared `journal_entries` stream."""
    return record("journal_entries", key, {"entry_id": key, "written_at": written_at, **data})


def journal_identity(value: str) -> dict[str, Any]:
    return identity_msg(value, claim="journal_user")
