"""The connector → runtime wire protocol: parse and validate every message, in order.

Each message becomes one small dataclass (`Identity`, `Record`, `BlobFile`, `Rejected`,
`Omitted`, `State`, `Gap`, `Progress`, `Credentials`, `Done`); the runtime `match`es on them.
Two kinds of failure, kept apart on purpose:
- a *record* that breaks its stream's contract (key ≠ primary key of data, schema mismatch,
  delete on an append-only stream), and an input entry the connector itself could not read
  (REJECT), are rejected with a reason and counted; the run goes on;
- a *protocol violation* (bad JSON, unknown type, out-of-scope stream, IDENTITY after a record,
  anything after DONE, a wrong count in DONE) fails the run.

Subprocess connectors arrive as JSON lines (`parse_line`); in-process ones hand over their
message dicts directly (`parse`), with exactly the same checks: a record's data is serialized
once here, which both proves it is JSON and gives the store the bytes it writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ownstream.clock import now_iso
from ownstream.errors import ProtocolViolation
from ownstream.model import ConnectorManifest, IdentityEvidence, RecordWrite, StreamDefinition
from ownstream.records import blob_ref_problem, blob_refs, canonical_key, message_key
from ownstream.registry.definitions import record_validator

DONE_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_REASON_CHARS = 80
MAX_DETAIL_CHARS = 500
BLOB_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Rejection:
    """An entry that did not become a record, with why."""

    stream: str | None
    record_key: str | None
    reason: str
    detail: str


@dataclass(frozen=True)
class Identity:
    evidence: IdentityEvidence


@dataclass(frozen=True)
class Record:
    write: RecordWrite


@dataclass(frozen=True)
class BlobFile:
    """Content the connector wrote into its run's blob area (a file name there), with the
    sha256 and size it computed; the runtime copies it into the blob store and checks both."""

    file: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Rejected:
    rejection: Rejection
    counted_as_record: bool  # a RECORD the runtime refused (it counts toward records_emitted)


@dataclass(frozen=True)
class Omitted:
    """Entries the connector deliberately leaves out (not modelled), counted by reason."""

    reason: str
    count: int


@dataclass(frozen=True)
class State:
    stream: str
    cursor: Any


@dataclass(frozen=True)
class Gap:
    stream: str | None
    reason: str
    message: str
    recovery_action: str
    retryable: bool


@dataclass(frozen=True)
class Progress:
    message: str
    stream: str | None = None
    count: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Credentials:
    """Refreshed or rotated secrets for this run's connection; their values are never shown."""

    secrets: dict[str, str] = field(repr=False)

    @property
    def names(self) -> list[str]:
        return sorted(self.secrets)


@dataclass(frozen=True)
class Done:
    status: str
    records_emitted: int
    error: dict[str, Any] | None


Message = (
    Identity
    | Record
    | BlobFile
    | Rejected
    | Omitted
    | State
    | Gap
    | Progress
    | Credentials
    | Done
)


def _short(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    _validators: dict[str, Callable[[Any], str | None]] = field(default_factory=dict)
    _in_scope: dict[str, StreamDefinition] = field(default_factory=dict)

    def definition(self, stream: str) -> StreamDefinition:
        found = self._in_scope.get(stream)
        if found is None:
            found = self.manifest.stream(stream)
            if found is None or stream not in self.scope:
                raise ProtocolViolation(
                    f"stream {stream!r} is not in this run's scope", param=stream
                )
            self._in_scope[stream] = found  # asked once per record: looked up once per stream
        return found

    def _schema_check(self, definition: StreamDefinition) -> Callable[[Any], str | None]:
        check = self._validators.get(definition.name)
        if check is None:
            check = record_validator(definition)
            self._validators[definition.name] = check
        return check

    def read(self, item: bytes | Mapping[str, Any]) -> Message:
        """A JSON line from a subprocess, or a message dict from an in-process connector."""
        return self.parse_line(item) if isinstance(item, bytes) else self.parse(item)

    def parse_line(self, line: bytes) -> Message:
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolViolation(f"a message is larger than {MAX_LINE_BYTES} bytes")
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # a broken CREDENTIALS line holds secrets: say what it was, never quote it
            shown = "a CREDENTIALS line" if b"CREDENTIALS" in line else repr(line[:80])
            raise ProtocolViolation(f"not a JSON message: {shown} ({exc})") from exc
        return self.parse(message)

    def parse(self, message: Any) -> Message:
        # a dict is settled before the (much slower) check against the Mapping ABC
        if type(message) is not dict and not isinstance(message, Mapping):
            raise ProtocolViolation("a message must be a JSON object")
        kind = message.get("type")
        if self.finished:
            raise ProtocolViolation(f"{kind} after DONE: DONE must be the last message")
        if self.identify_only and kind in ("RECORD", "BLOB", "STATE", "REJECT", "OMIT"):
            raise ProtocolViolation(f"{kind} in an identify run: only IDENTITY and DONE belong")
        match kind:
            case "IDENTITY":
                return self._identity(message)
            case "RECORD":
                return self._record(message)
            case "BLOB":
                return self._blob(message)
            case "REJECT":
                return self._reject(message)
            case "OMIT":
                return self._omit(message)
            case "STATE":
                return self._state(message)
            case "SKIP_RESULT":
                return self._skip_result(message)
            case "PROGRESS":
                return Progress(
                    message=str(message.get("message") or ""),
                    stream=_optional_str(message.get("stream")),
                    count=_optional_int(message.get("count")),
                    total=_optional_int(message.get("total")),
                )
            case "LOG":
                return Progress(message=str(message.get("message", "")))
            case "CREDENTIALS":
                return self._credentials(message)
            case "DONE":
                return self._done(message)
        raise ProtocolViolation(f"unknown message type {kind!r}")

    def _identity(self, message: Mapping[str, Any]) -> Identity:
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
        return Identity(IdentityEvidence(claim, value, self.manifest.connector_key))

    def _record(self, message: Mapping[str, Any]) -> Record | Rejected:
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

        if key is None:
            return _refused(stream, key, "invalid_key", "key must be a string or a list of strings")
        if op not in ("upsert", "delete"):
            return _refused(stream, key, "invalid_op", f"op {op!r} is not upsert or delete")
        if op == "delete" and definition.semantics != "mutable_state":
            return _refused(stream, key, "delete_on_append_only", f"{stream!r} is append-only")
        expected = canonical_key(definition, data)
        if expected != key:
            return _refused(
                stream,
                key,
                "key_mismatch",
                f"key {key!r} is not the primary key {list(definition.primary_key)} of data "
                f"({expected!r})",
            )
        try:
            # a copy of its exact length: orjson's result keeps its whole (~4 KiB) output
            # buffer, and a batch holds thousands of these until it is written
            encoded = bytes(memoryview(orjson.dumps(data)))
        except TypeError as exc:
            return _refused(stream, key, "not_json", f"data is not JSON: {exc}")
        if op == "upsert":
            problem = self._schema_check(definition)(data)
            if problem is not None:
                return _refused(stream, key, "schema_mismatch", problem)
            for name, ref in blob_refs(definition, data) if definition.blob_fields else ():
                problem = blob_ref_problem(ref)
                if problem is not None:
                    return _refused(stream, key, "invalid_blob_ref", f"{name}: {problem}")
        return Record(
            RecordWrite(
                stream=stream,
                record_key=key,
                data=data,
                emitted_at=emitted_at if isinstance(emitted_at, str) else now_iso(),
                op=op,
                encoded=encoded,
            )
        )

    def _blob(self, message: Mapping[str, Any]) -> BlobFile:
        self.saw_data = True
        name, sha, size = message.get("file"), message.get("sha256"), message.get("size_bytes")
        if not isinstance(name, str) or not BLOB_FILE_NAME.fullmatch(name):
            raise ProtocolViolation("BLOB file must be a plain file name in the run's blob area")
        if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
            raise ProtocolViolation("BLOB sha256 must be 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolViolation("BLOB size_bytes must be a non-negative integer")
        return BlobFile(name, sha, size)

    def _reject(self, message: Mapping[str, Any]) -> Rejected:
        stream = message.get("stream")
        if stream is not None:
            if not isinstance(stream, str):
                raise ProtocolViolation("REJECT stream must be a string or null")
            self.definition(stream)
        reason = message.get("reason")
        if not isinstance(reason, str) or not reason:
            raise ProtocolViolation("REJECT needs a reason")
        key = message.get("key")
        return Rejected(
            Rejection(
                stream,
                _short(key, MAX_REASON_CHARS) if isinstance(key, str) else None,
                _short(reason, MAX_REASON_CHARS),
                _short(message.get("detail") or "", MAX_DETAIL_CHARS),
            ),
            counted_as_record=False,
        )

    def _omit(self, message: Mapping[str, Any]) -> Omitted:
        reason = message.get("reason")
        count = message.get("count", 1)
        if not isinstance(reason, str) or not reason:
            raise ProtocolViolation("OMIT needs a reason")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ProtocolViolation("OMIT count must be a non-negative integer")
        return Omitted(_short(reason, MAX_REASON_CHARS), count)

    def _state(self, message: Mapping[str, Any]) -> State:
        self.saw_data = True
        stream = message.get("stream")
        if not isinstance(stream, str):
            raise ProtocolViolation("STATE without a stream name")
        self.definition(stream)
        if "cursor" not in message:
            raise ProtocolViolation(f"STATE for {stream!r} without a cursor")
        return State(stream, message["cursor"])

    def _skip_result(self, message: Mapping[str, Any]) -> Gap:
        stream = message.get("stream")
        if stream is not None:
            if not isinstance(stream, str):
                raise ProtocolViolation("SKIP_RESULT stream must be a string or null")
            self.definition(stream)
        hint = message.get("recovery_hint")
        action = hint.get("action") if isinstance(hint, dict) else hint
        return Gap(
            stream=stream,
            reason=str(message.get("reason") or "skipped"),
            message=str(message.get("message") or ""),
            recovery_action=str(action or "unknown"),
            retryable=bool(hint.get("retryable", False)) if isinstance(hint, dict) else False,
        )

    def _credentials(self, message: Mapping[str, Any]) -> Credentials:
        """Names are checked against the manifest; errors name the secret, never its value."""
        secrets = message.get("secrets")
        if not isinstance(secrets, Mapping) or not secrets:
            raise ProtocolViolation("CREDENTIALS needs a non-empty secrets object")
        declared = {s.name for s in self.manifest.secrets}
        for name, value in secrets.items():
            if name not in declared:
                raise ProtocolViolation(
                    f"CREDENTIALS names {_short(name, MAX_REASON_CHARS)!r}, which "
                    f"{self.manifest.connector_key} does not declare as a secret",
                    param="secrets",
                )
            if not isinstance(value, str) or not value:
                raise ProtocolViolation(
                    f"CREDENTIALS secret {name!r} must be a non-empty string", param="secrets"
                )
        return Credentials(dict(secrets))

    def _done(self, message: Mapping[str, Any]) -> Done:
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
        return Done(str(status), self.records_seen, error if isinstance(error, dict) else None)


def _refused(stream: str, key: str | None, reason: str, detail: str) -> Rejected:
    """A RECORD the runtime refuses: counted toward records_emitted, and rejected."""
    return Rejected(Rejection(stream, key, reason, detail), counted_as_record=True)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
