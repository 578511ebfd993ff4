"""The Python connector SDK: a connector is a plain generator of protocol messages.

    def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
        yield identity("spotify_user_id", me["id"])
        yield record("profile", me["id"], {...})
        yield credentials(access_token=new_token)  # after a refresh, for the next runs
        yield state("listening_history", {"after": 123})

Content (a photo, an attachment) is written with `store_blob`, streamed into the run's blob
area, and handed over with the BLOB message it returns, before the record that carries its
`blob_ref`.

`drive` runs such a generator in-process; `python -m ownstream.runtime.sdk module:function`
runs the same generator as a subprocess speaking JSON lines, with identical semantics: the SDK
appends DONE (succeeded, or failed with the error a `ConnectorError` carries).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import orjson

from ownstream.clock import now_iso
from ownstream.records import MEDIA_TYPE, blob_id_for

Message = dict[str, Any]
CHUNK_BYTES = 1 << 20
Collect = Callable[["Start", Mapping[str, str]], Iterable[Message]]


@dataclass(frozen=True)
class StreamScope:
    name: str
    fields: tuple[str, ...] | None = None
    since: str | None = None
    until: str | None = None


@dataclass(frozen=True)
class BlobArea:
    """Where this run writes blob content (a private folder) and how large one may be."""

    directory: Path
    max_bytes: int


@dataclass(frozen=True)
class Start:
    """What the runtime asks of this run. `state` is this connection's own checkpoints;
    `blobs` is None when none of its streams has a `blob_ref` field."""

    run_id: str
    collection_mode: str  # full_refresh | incremental | identify
    streams: tuple[StreamScope, ...]
    state: Mapping[str, Any]
    artifact: Mapping[str, Any] | None = None
    blobs: BlobArea | None = None

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Start:
        scope = message.get("scope") or {}
        streams = []
        for entry in scope.get("streams", []):
            time_range = entry.get("time_range") or {}
            fields = entry.get("fields")
            streams.append(
                StreamScope(
                    name=entry["name"],
                    fields=tuple(fields) if fields else None,
                    since=time_range.get("since"),
                    until=time_range.get("until"),
                )
            )
        blobs = message.get("blobs")
        return cls(
            run_id=message["run_id"],
            collection_mode=message["collection_mode"],
            streams=tuple(streams),
            state=message.get("state") or {},
            artifact=message.get("artifact"),
            blobs=BlobArea(Path(blobs["dir"]), int(blobs["max_bytes"])) if blobs else None,
        )

    def wants(self, stream: str) -> bool:
        return stream in self._scopes

    def scope(self, stream: str) -> StreamScope | None:
        """The run's scope of `stream` (its first, should it be listed twice), or None."""
        return self._scopes.get(stream)

    @cached_property
    def _scopes(self) -> dict[str, StreamScope]:
        scopes: dict[str, StreamScope] = {}
        for scope in self.streams:
            scopes.setdefault(scope.name, scope)
        return scopes

    @property
    def identify_only(self) -> bool:
        return self.collection_mode == "identify"


class ConnectorError(Exception):
    """A failure the connector understands; it becomes DONE failed with this error."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "connector_error",
        retryable: bool = False,
        recovery_action: str = "unknown",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.recovery_action = recovery_action

    def to_error(self) -> dict[str, Any]:
        return {
            "message": str(self),
            "code": self.code,
            "retryable": self.retryable,
            "recovery_hint": {"action": self.recovery_action},
        }


class ReconnectRequired(ConnectorError):
    """The provider refused the stored authorization (its refresh token expired or the owner
    revoked the app there): only the owner can fix it, by connecting again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="authorization_rejected", recovery_action="reconnect")


def identity(claim: str, value: str) -> Message:
    return {"type": "IDENTITY", "claim": claim, "value": value}


def record(
    stream: str,
    key: str | list[str],
    data: Mapping[str, Any],
    *,
    op: str | None = None,
    emitted_at: str | None = None,
) -> Message:
    message: Message = {
        "type": "RECORD",
        "stream": stream,
        "key": key,
        "data": dict(data),
        "emitted_at": emitted_at or now_iso(),
    }
    if op is not None:
        message["op"] = op
    return message


@dataclass(frozen=True)
class StoredBlob:
    """Content written to the run's blob area: yield `message` (BLOB) before the record whose
    `blob_ref` field holds `ref`."""

    message: Message
    ref: dict[str, Any]

    @property
    def sha256(self) -> str:
        return str(self.ref["sha256"])

    @property
    def size(self) -> int:
        return int(self.ref["size_bytes"])


def file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """A binary file read a chunk at a time (never by lines, which may be any length)."""
    return iter(lambda: handle.read(CHUNK_BYTES), b"")


def store_blob(start: Start, chunks: Iterable[bytes], mime_type: str) -> StoredBlob | None:
    """Write content into the run's blob area chunk by chunk (`file_chunks` reads a file),
    hashing it as it goes, so it is never held whole. None when the run has no blob area or
    the content is over its size limit: reading stops at the limit (a decompression bomb
    costs no more than the limit) and nothing is kept."""
    area = start.blobs
    if area is None:
        return None
    descriptor, name = tempfile.mkstemp(prefix="blob-", dir=area.directory)
    digest, size, kept = hashlib.sha256(), 0, False
    try:
        with os.fdopen(descriptor, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > area.max_bytes:
                    return None
                digest.update(chunk)
                out.write(chunk)
        kept = True
    finally:
        if not kept:
            os.unlink(name)
    sha = digest.hexdigest()
    return StoredBlob(
        {"type": "BLOB", "file": Path(name).name, "sha256": sha, "size_bytes": size},
        {
            "blob_id": blob_id_for(sha),
            "mime_type": mime_type if MEDIA_TYPE.fullmatch(mime_type) else DEFAULT_MEDIA_TYPE,
            "size_bytes": size,
            "sha256": sha,
        },
    )


DEFAULT_MEDIA_TYPE = "application/octet-stream"


def state(stream: str, cursor: Any) -> Message:
    return {"type": "STATE", "stream": stream, "cursor": cursor}


def skip(
    stream: str | None,
    reason: str,
    message: str,
    *,
    recovery_action: str = "retry_by_runtime",
    retryable: bool = True,
) -> Message:
    """A known gap: something in scope this run could not collect."""
    return {
        "type": "SKIP_RESULT",
        "stream": stream,
        "reason": reason,
        "message": message,
        "recovery_hint": {"action": recovery_action, "retryable": retryable},
    }


def credentials(**secrets: str) -> Message:
    """Hand refreshed or rotated secrets to the runtime, which stores them for this connection
    at once: send it right after a refresh, before anything else."""
    return {"type": "CREDENTIALS", "secrets": secrets}


def reject(stream: str | None, reason: str, detail: str, *, key: str | None = None) -> Message:
    """An input entry that could not become a record (a malformed line, say): counted in the
    receipt under `reason`, with `key` (where it was) among a few examples. The run goes on."""
    message: Message = {"type": "REJECT", "stream": stream, "reason": reason, "detail": detail}
    if key is not None:
        message["key"] = key
    return message


def omit(reason: str, count: int = 1) -> Message:
    """Entries left out on purpose (a kind of content not modelled): counted under `reason`."""
    return {"type": "OMIT", "reason": reason, "count": count}


def progress(
    message: str, *, stream: str | None = None, count: int | None = None, total: int | None = None
) -> Message:
    return {
        "type": "PROGRESS",
        "message": message,
        "stream": stream,
        "count": count,
        "total": total,
    }


def drive(
    collect: Collect, start_message: Mapping[str, Any], env: Mapping[str, str]
) -> Iterator[Message]:
    """Run a generator connector and yield its messages, ending with DONE."""
    emitted = 0
    try:
        for message in collect(Start.from_message(start_message), env):
            if message.get("type") == "RECORD":
                emitted += 1
            yield message
    except ConnectorError as exc:
        yield {
            "type": "DONE",
            "status": "failed",
            "records_emitted": emitted,
            "error": exc.to_error(),
        }
        return
    except Exception as exc:
        yield {
            "type": "DONE",
            "status": "failed",
            "records_emitted": emitted,
            "error": {
                "message": f"{type(exc).__name__}: {exc}",
                "code": "connector_crashed",
                "retryable": False,
                "detail": traceback.format_exc(limit=5),
            },
        }
        return
    yield {"type": "DONE", "status": "succeeded", "records_emitted": emitted}


def load_entry(entry: str) -> Collect:
    module_name, _, function = entry.partition(":")
    collect: Collect = getattr(importlib.import_module(module_name), function)
    return collect


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry: START on stdin, JSON lines on stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ownstream.runtime.sdk module:function", file=sys.stderr)
        return 2
    line = sys.stdin.buffer.readline()
    start = orjson.loads(line)
    out = sys.stdout.buffer
    status = "failed"
    for message in drive(load_entry(args[0]), start, dict(os.environ)):
        out.write(orjson.dumps(message) + b"\n")
        if message["type"] == "DONE":
            status = message["status"]
    out.flush()
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
