"""The owner's writes into a connection's records, each audited: pushed records (the
connection-scoped ingest), the push path's sync state, and deleting one record.

Pushes and deletes are stages of the owner's own paths (`ownstream/runtime/owner_writes.py`),
so they are fenced, published whole and visible in provenance; the audit names the stream,
the connection and the run, never record contents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ownstream.errors import InvalidArgument, RunFailed
from ownstream.home import Home
from ownstream.owner.audit import audited
from ownstream.owner.records import owner_scope
from ownstream.reads.records import find_record
from ownstream.runtime.owner_writes import OWNER_PUSH, delete_record, push_records
from ownstream.runtime.session import RunOutcome

MAX_STATE_BYTES = 64 * 1024


@dataclass
class WriteOperations:
    home: Home
    actor_kind: str = "owner"

    def push(self, connection_id: str, stream: str, lines: Iterable[bytes | None]) -> RunOutcome:
        """Records of one stream pushed into one connection (validated against the shared
        definition, published as one stage of the `owner-push` path)."""
        with audited(
            self.home.store, self.actor_kind, "push", connection_id, {"stream": stream}
        ) as summary:
            outcome = push_records(self.home.runtime(), connection_id, stream, lines)
            summary.update(run_id=outcome.run_id, status=outcome.status,
                           counts=outcome.tally.to_dict())
            if outcome.status != "succeeded":
                raise RunFailed(
                    f"the push failed, nothing was kept: {(outcome.error or {}).get('message')}",
                    connector_error=outcome.error,
                )
        return outcome

    def delete_record(
        self, stream: str, record_key: str, connection_id: str | None = None
    ) -> dict[str, Any]:
        """Tombstone one live record as the owner (authoritative over every path that
        evidences it); a key held by several connections needs `connection_id`."""
        with audited(
            self.home.store, self.actor_kind, "record_delete", connection_id, {"stream": stream}
        ) as summary:
            scope = owner_scope(self.home, stream, connection_id)
            record, _ = find_record(self.home, scope, record_key)
            summary["connection_id"] = record.connection_id
            outcome = delete_record(
                self.home.runtime(), record.connection_id, scope.stream, record_key
            )
            summary.update(run_id=outcome.run_id, status=outcome.status)
            if outcome.status != "succeeded":
                raise RunFailed(
                    f"the delete failed: {(outcome.error or {}).get('message')}",
                    connector_error=outcome.error,
                )
        return {
            "deleted": True,
            "stream": stream,
            "id": record_key,
            "connection_id": record.connection_id,
            "run_id": outcome.run_id,
        }

    def push_state(self, connection_id: str) -> dict[str, Any]:
        """The push path's sync state of a connection (what its client saved)."""
        self.home.store.connection(connection_id)
        return self.home.store.connection_state(connection_id, OWNER_PUSH)

    def put_push_state(self, connection_id: str, state: Any) -> dict[str, Any]:
        """Replace the push path's sync state: `{stream: cursor}`, any JSON, at most 64 KiB."""
        with audited(
            self.home.store, self.actor_kind, "push_state", connection_id, {}
        ) as summary:
            if not isinstance(state, dict):
                raise InvalidArgument("state must be an object of stream: cursor", param="state")
            for stream in state:
                self.home.catalog.definition(stream)
            if len(orjson.dumps(state)) > MAX_STATE_BYTES:
                raise InvalidArgument(
                    f"state is larger than {MAX_STATE_BYTES} bytes", param="state"
                )
            self.home.store.put_connection_state(connection_id, OWNER_PUSH, state)
            summary["streams"] = sorted(state)
        return self.push_state(connection_id)
