"""A test importer (in-process SDK generator): the artifact is JSON `{stream: [data, ...]}`;
each entry becomes a record of that stream, keyed by the stream's primary key."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from ownstream.runtime.sdk import Message, Start, record

KEYS = {"tasks": "task_id", "steps": "step_id", "details": "detail_id"}


def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
    assert start.artifact is not None
    document = json.loads(Path(start.artifact["path"]).read_text())
    for stream, entries in document.items():
        for data in entries:
            yield record(stream, data[KEYS[stream]], data)
