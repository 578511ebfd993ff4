"""The owner's own writes into one connection: pushed records and record deletes.

Each is a stage like any run, on an acquisition path of its own, so it is fenced by the
connection's lease, published at once at its end, and visible in provenance:
- a **push** (`owner-push`, method `owner_push`) feeds records of one stream from NDJSON lines
  `{"key", "data", "emitted_at"}`; they go through the connector validator (the same schema
  and key checks, the same receipt) and the same multi-path rules as any path's records;
- a **delete** (`owner`, method `owner_edit`) tombstones one record whatever paths evidence it
  (the planner's authoritative owner delete, docs/identity.md).
A connection that does not exist (or was deleted) is `connection_not_found`; nothing is ever
written anywhere but the connection named.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import orjson

from ownstream.errors import ConnectionNotWritable, InvalidRequest, ProtocolViolation
from ownstream.model import Connection, ConnectorManifest, RecordWrite, StreamDefinition
from ownstream.records import normalize_time
from ownstream.registry import Catalog
from ownstream.runtime.process import InProcessTransport
from ownstream.runtime.protocol import MAX_LINE_BYTES, Credentials
from ownstream.runtime.runner import Runtime
from ownstream.runtime.session import RunOutcome, RunSession
from ownstream.store.base import Store
from ownstream.store.planner import OWNER_EDITOR

OWNER_PUSH = "owner-push"
OWNER_PATHS = (OWNER_PUSH, OWNER_EDITOR)
PUSH_MEMBERS = frozenset({"key", "data", "emitted_at"})


def owner_manifest(
    connector_key: str, connection: Connection, definition: StreamDefinition
) -> ConnectorManifest:
    """One of the owner's paths as the runtime sees a connector: one stream, nothing to run."""
    push = connector_key == OWNER_PUSH
    return ConnectorManifest(
        connector_key=connector_key,
        version="1",
        display_name="Owner push" if push else "The owner",
        source=connection.source,
        acquisition_method="owner_push" if push else "owner_edit",
        streams=(definition,),
    )


def bounded_lines(handle: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """A file's lines, none read longer than `limit` bytes: a longer one is None (and the
    rest of it is skipped), so one huge line never sits in memory."""
    while line := handle.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = handle.readline(limit + 1)
            yield None
        else:
            yield line


def push_messages(stream: str, lines: Iterable[bytes | None]) -> Iterator[Mapping[str, Any]]:
    """A push's lines as connector messages: a RECORD for each well-formed line, a REJECT
    naming each line that is not one (the push goes on), then DONE."""
    emitted = 0
    for number, line in enumerate(lines, 1):
        if line is not None and not line.strip():
            continue
        problem, entry = _push_line(line)
        if entry is None:
            yield {"type": "REJECT", "stream": stream, "reason": "invalid_line",
                   "detail": problem, "key": f"line {number}"}
            continue
        emitted += 1
        yield {"type": "RECORD", "stream": stream, **entry}
    yield {"type": "DONE", "status": "succeeded", "records_emitted": emitted}


def _push_line(line: bytes | None) -> tuple[str, dict[str, Any] | None]:
    """One NDJSON line as a RECORD's members, or why it is not one."""
    if line is None:
        return f"a line is longer than {MAX_LINE_BYTES} bytes", None
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({exc})", None
    if not isinstance(entry, dict):
        return "a line must be a JSON object {key, data, emitted_at}", None
    extra = sorted(set(entry) - PUSH_MEMBERS)
    if extra:
        return f"a line has only key, data and emitted_at, not {extra}", None
    if "key" not in entry or not isinstance(entry.get("data"), dict):
        return "a line needs a key and a data object", None
    if "emitted_at" in entry:
        moment = normalize_time(entry["emitted_at"])
        if moment is None:
            return "emitted_at must be an ISO 8601 date-time", None
        entry["emitted_at"] = moment
    return "", entry


class OwnerSession(RunSession):
    """A push or an edit: its stage starts before anything is read, its messages come from
    the pushed lines (none for an edit), and an edit's one write is staged at the end with
    whatever else is pending."""

    def __init__(
        self,
        runtime: Runtime,
        manifest: ConnectorManifest,
        connection: Connection,
        lines: Iterable[bytes | None],
        edit: RecordWrite | None = None,
    ) -> None:
        super().__init__(runtime, manifest, "push" if edit is None else "edit", "owner",
                         connection)
        self._lines = lines
        if edit is not None:
            self.pending = {edit.stream: [edit]}
            self.pending_count = 1
            self.outcome.tally.parsed = self.outcome.tally.accepted = 1

    def _transport(self, start: dict[str, Any], env: dict[str, str]) -> InProcessTransport:
        return InProcessTransport(push_messages(self.manifest.streams[0].name, self._lines))

    def _store_credentials(self, handed_back: Credentials) -> None:
        raise ProtocolViolation("the owner's writes carry no credentials")


def _session(runtime: Runtime, session: OwnerSession) -> RunOutcome:
    session.begin(runtime.new_run_id())
    return session.execute({}, {})


def pushable(
    store: Store, catalog: Catalog, connection_id: str, stream: str
) -> tuple[Connection, StreamDefinition]:
    """The connection and definition a push writes, once it may: the connection exists (a
    deleted one does not), is not revoked, and has a path that emits the stream (otherwise
    no read would ever show what was pushed)."""
    connection = store.connection(connection_id)
    if connection.status == "revoked":
        raise ConnectionNotWritable(
            f"connection {connection_id} is revoked; reactivate it to push records",
            connection_id=connection_id,
        )
    definition = catalog.definition(stream)
    emitters = set(catalog.emitters(stream))
    if not any(path.connector_key in emitters for path in connection.paths):
        raise InvalidRequest(
            f"connection {connection_id} has no path that emits {stream}", param="stream"
        )
    return connection, definition


def push_records(
    runtime: Runtime, connection_id: str, stream: str, lines: Iterable[bytes | None]
) -> RunOutcome:
    """Stage, validate and publish pushed records of one stream of one connection."""
    connection, definition = pushable(runtime.store, runtime.catalog, connection_id, stream)
    manifest = owner_manifest(OWNER_PUSH, connection, definition)
    return _session(runtime, OwnerSession(runtime, manifest, connection, lines))


def delete_record(
    runtime: Runtime, connection_id: str, definition: StreamDefinition, record_key: str
) -> RunOutcome:
    """Tombstone one record of one connection as the owner, in a stage of its own."""
    connection = runtime.store.connection(connection_id)
    manifest = owner_manifest(OWNER_EDITOR, connection, definition)
    write = RecordWrite(definition.name, record_key, {}, "", op="delete")
    return _session(runtime, OwnerSession(runtime, manifest, connection, [], write))
