"""Connector tests: run connectors in-process with `drive` and check what they emit.

Shared helpers live here so every test validates records against the shipped definitions.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import ownstream
from ownstream.registry.definitions import parse_definition, record_validator
from ownstream.runtime.sdk import Collect, Message, drive

BUILTIN = Path(ownstream.__file__).parent / "registry" / "builtin"
CONNECTORS = Path(ownstream.__file__).parent / "connectors"
ALL_STREAMS = ("profile", "listening_history", "saved_tracks", "playlists")


@functools.cache
def definition_documents() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text("utf-8"))
        for path in sorted((BUILTIN / "definitions").glob("*.json"))
    }


@functools.cache
def _validator(stream: str) -> Callable[[Any], str | None]:
    return record_validator(parse_definition(definition_documents()[stream]))


def start_message(
    *,
    mode: str = "full_refresh",
    streams: Iterable[str] = ALL_STREAMS,
    state: Mapping[str, Any] | None = None,
    artifact: str | Path | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "START",
        "run_id": "run_test",
        "collection_mode": mode,
        "scope": {"streams": [{"name": name} for name in streams]},
        "state": dict(state) if state is not None else None,
    }
    if artifact is not None:
        message["artifact"] = {"path": str(artifact), "name": Path(artifact).name, "sha256": ""}
    return message


def run(collect: Collect, start: Mapping[str, Any], env: Mapping[str, str]) -> list[Message]:
    """Drive a connector to DONE and check the protocol invariants every run must keep."""
    messages = list(drive(collect, start, env))
    assert messages[-1]["type"] == "DONE"
    assert all(m["type"] != "DONE" for m in messages[:-1])
    types = [m["type"] for m in messages]
    if "IDENTITY" in types:
        first = types.index("IDENTITY")
        assert all(t not in ("RECORD", "STATE") for t in types[:first]), "IDENTITY came late"
        assert types.count("IDENTITY") == 1
    wanted = {s["name"] for s in start["scope"]["streams"]}
    for message in messages:
        if message["type"] in ("RECORD", "STATE"):
            assert message["stream"] in wanted, f"{message['stream']} is out of scope"
    assert_records_valid(messages)
    return messages


def assert_records_valid(messages: Iterable[Message]) -> None:
    """Every RECORD validates against its shipped schema and carries its primary key as key."""
    for message in messages:
        if message["type"] != "RECORD":
            continue
        document = definition_documents()[message["stream"]]
        data = message["data"]
        problem = _validator(message["stream"])(data)
        assert problem is None, (message["stream"], problem, data)
        (key_field,) = document["primary_key"]
        assert message["key"] == data[key_field]
        assert None not in data.values(), f"null field in {data}"


def records(messages: Iterable[Message], stream: str) -> list[dict[str, Any]]:
    return [m["data"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]


def of_type(messages: Iterable[Message], kind: str) -> list[Message]:
    return [m for m in messages if m["type"] == kind]


def done(messages: list[Message]) -> Message:
    return messages[-1]
