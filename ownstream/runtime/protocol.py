"""The connector → runtime wire protocol: parse and validate every message, in order.

Two kinds of failure, kept apart on purpose:
- a *record* that breaks its stream's contract (key ≠ primary key of data, schema mismatch,
  delete on an append-only stream) is rejected with a reason and counted; the run goes on;
- a *protocol violation* (bad JSON, unknown type, out-of-scope stream, IDENTITY after a record,
  anything after DONE, a wrong count in DONE) fails the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import orjson

from ownstream.clock import now_iso
from ownstream.errors import ProtocolViolation
from ownstream.model import ConnectorManifest, IdentityEvidence, RecordWrite, StreamDefinition
from ownstream.records import canonical_key, message_key

MESSAGE_TYPES = frozenset({"IDENTITY", "RECORD", "STATE", "SKIP_RESULT", "PROGRESS", "DONE", "LOG"})
DONE_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Rejection:
    stream: str
    record_key: str | None
    reason: str
    detail: str


@dataclass(frozen=True)
class Done:
    status: str
    records_emitted: int
    error: dict[str, Any] | None


@dataclass(frozen=True)
class Parsed:
    """One validated message, classified for the runner."""

    kind: str
    record: RecordWrite | None = None
    rejection: Rejection | None = None
    evidence: IdentityEvidence | None = None
    state: tuple[str, Any] | None = None
    gap: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    done: Done | None = None


@dataclass
class MessageValidator:
    """Validates one run's message sequence against its manifest and scope."""

    manifest: ConnectorManifest
    scope: tuple[str, ...]
    identify_only: bool = False
    records_seen: int = 0
    saw_data: bool = False
    saw_identity: bool = False
    finished: bool = False
    rejected: Counter[str] = field(default_factory=Counter)
    _validators: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    def definition(self, stream: str) -> StreamDefinition:
        found = self.manifest.stream(stream)
        if found is None or stream not in self.scope:
            raise ProtocolViolation(f"stream {stream!r} is not in this run's scope", param=stream)
        return found

    def _schema_check(self, definition: StreamDefinition) -> Callable[[Any], Any]:
        check = self._validators.get(definition.name)
        if check is None:
            check = fastjsonschema.compile(definition.schema)
            self._validators[definition.name] = check
        return check

    def parse_line(self, line: bytes) -> Parsed:
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolViolation(f"a message is larger than {MAX_LINE_BYTES} bytes")
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolation(f"not a JSON message: {line[:80]!r} ({exc})") from exc
        if not isinstance(message, dict):
            raise ProtocolViolation("a message must be a JSON object")
        return self.parse(message)

    def parse(self, message: Mapping[str, Any]) -> Parsed:
        kind = message.get("type")
        if self.finished:
            raise ProtocolViolation(f"{kind} after DONE: DONE must be the last message")
        if kind not in MESSAGE_TYPES:
            raise ProtocolViolation(f"unknown message type {kind!r}")
        if self.identify_only and kind in ("RECORD", "STATE"):
            raise ProtocolViolation(f"{kind} in an identify run: only IDENTITY and DONE belong")
        handler = getattr(self, f"_on_{str(kind).lower()}")
        result: Parsed = handler(message)
        return result

    def _on_identity(self, message: Mapping[str, Any]) -> Parsed:
        if self.saw_data:
            raise ProtocolViolation("IDENTITY after a RECORD or STATE: identity comes first")
        if self.saw_identity:
            raise ProtocolViolation("a second IDENTITY")
        claim, value = message.get("claim"), message.get("value")
        if self.manifest.identity_claim is None:
            raise ProtocolViolation(
                f"connector {self.manifest.connector_key!r} declares no identity claim"
            )
        if claim != self.manifest.identity_claim:
            raise ProtocolViolation(
                f"IDENTITY claim {claim!r} is not the declared {self.manifest.identity_claim!r}"
            )
        if not isinstance(value, str) or not value:
            raise ProtocolViolation("IDENTITY value must be a non-empty string")
        self.saw_identity = True
        evidence = IdentityEvidence(claim, value, self.manifest.connector_key)
        return Parsed("identity", evidence=evidence)

    def _on_record(self, message: Mapping[str, Any]) -> Parsed:
        self.saw_data = True
        self.records_seen += 1
        stream = message.get("stream")
        if not isinstance(stream, str):
            raise ProtocolViolation("RECORD without a stream name")
        definition = self.definition(stream)
        data = message.get("data")
        if not isinstance(data, dict):
            raise ProtocolViolation(f"RECORD in {stream!r} without a data object")
        key = message_key(message.get("key"))
        op = message.get("op", "upsert")
        emitted_at = message.get("emitted_at")

        def reject(reason: str, detail: str) -> Parsed:
            self.rejected[reason] += 1
            return Parsed("rejected", rejection=Rejection(stream, key, reason, detail))

        if key is None:
            return reject("invalid_key", "key must be a string or a list of strings")
        if op not in ("upsert", "delete"):
            return reject("invalid_op", f"op {op!r} is not upsert or delete")
        if op == "delete" and definition.semantics != "mutable_state":
            return reject("delete_on_append_only", f"{stream!r} is append-only")
        expected = canonical_key(definition, data)
        if expected != key:
            return reject(
                "key_mismatch",
                f"key {key!r} is not the primary key {list(definition.primary_key)} of data "
                f"({expected!r})",
            )
        if op == "upsert":
            try:
                self._schema_check(definition)(data)
            except fastjsonschema.JsonSchemaValueException as exc:
                return reject("schema_mismatch", exc.message)
        return Parsed(
            "record",
            record=RecordWrite(
                stream=stream,
                record_key=key,
                data=data,
                emitted_at=emitted_at if isinstance(emitted_at, str) else now_iso(),
                op=op,
            ),
        )

    def _on_state(self, message: Mapping[str, Any]) -> Parsed:
        self.saw_data = True
        stream = message.get("stream")
        if not isinstance(stream, str):
            raise ProtocolViolation("STATE without a stream name")
        self.definition(stream)
        if "cursor" not in message:
            raise ProtocolViolation(f"STATE for {stream!r} without a cursor")
        return Parsed("state", state=(stream, message["cursor"]))

    def _on_skip_result(self, message: Mapping[str, Any]) -> Parsed:
        stream = message.get("stream")
        if stream is not None:
            if not isinstance(stream, str):
                raise ProtocolViolation("SKIP_RESULT stream must be a string or null")
            self.definition(stream)
        hint = message.get("recovery_hint")
        action = hint.get("action") if isinstance(hint, dict) else hint
        return Parsed(
            "gap",
            gap={
                "stream": stream,
                "reason": str(message.get("reason") or "skipped"),
                "message": str(message.get("message") or ""),
                "recovery_action": str(action or "unknown"),
                "retryable": bool(hint.get("retryable", False))
                if isinstance(hint, dict)
                else False,
            },
        )

    def _on_progress(self, message: Mapping[str, Any]) -> Parsed:
        return Parsed(
            "progress",
            progress={k: message.get(k) for k in ("message", "stream", "count", "total")},
        )

    def _on_log(self, message: Mapping[str, Any]) -> Parsed:
        return Parsed("progress", progress={"message": str(message.get("message", ""))})

    def _on_done(self, message: Mapping[str, Any]) -> Parsed:
        self.finished = True
        status = message.get("status")
        if status not in DONE_STATUSES:
            raise ProtocolViolation(f"DONE status {status!r} is not one of {sorted(DONE_STATUSES)}")
        emitted = message.get("records_emitted")
        if emitted != self.records_seen:
            raise ProtocolViolation(
                f"DONE says {emitted} records were emitted but {self.records_seen} arrived"
            )
        error = message.get("error")
        return Parsed(
            "done",
            done=Done(str(status), self.records_seen, error if isinstance(error, dict) else None),
        )
