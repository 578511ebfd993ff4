"""The Python connector SDK: a connector is a plain generator of protocol messages.

    def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
        yield identity("spotify_user_id", me["id"])
        yield record("profile", me["id"], {...})
        yield credentials(access_token=new_token)  # after a refresh, for the next runs
        yield state("listening_history", {"after": 123})

`drive` runs such a generator in-process; `python -m ownstream.runtime.sdk module:function`
runs the same generator as a subprocess speaking JSON lines, with identical semantics: the SDK
appends DONE (succeeded, or failed with the error a `ConnectorError` carries).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ownstream.clock import now_iso

Message = dict[str, Any]
Collect = Callable[["Start", Mapping[str, str]], Iterable[Message]]


@dataclass(frozen=True)
class StreamScope:
    name: str
    fields: tuple[str, ...] | None = None
    since: str | None = None
    until: str | None = None


@dataclass(frozen=True)
class Start:
    """What the runtime asks of this run. `state` is this connection's own checkpoints."""

    run_id: str
    collection_mode: str  # full_refresh | incremental | identify
    streams: tuple[StreamScope, ...]
    state: Mapping[str, Any]
    artifact: Mapping[str, Any] | None = None

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
        return cls(
            run_id=message["run_id"],
            collection_mode=message["collection_mode"],
            streams=tuple(streams),
            state=message.get("state") or {},
            artifact=message.get("artifact"),
        )

    def wants(self, stream: str) -> bool:
        return any(s.name == stream for s in self.streams)

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
