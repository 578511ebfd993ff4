"""The Store interface: semantic operations, so another backend is a second implementation.

Callers never see tables. Writes are per acquisition (a run or an import batch); reads take a
`ReadScope` that the store applies in its queries, so no caller can forget a grant filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ownstream.model import (
    Acquisition,
    Connection,
    ConnectionIdentity,
    Grant,
    ReadScope,
    RecordWrite,
    StreamDefinition,
)
from ownstream.search import Term
from ownstream.store.auth import AuthStore


@dataclass
class WriteStats:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    delete_deferred: int = 0
    window_start: str | None = None  # the consent-time window the written records cover
    window_end: str | None = None

    def widen(self, start: str | None, end: str | None) -> None:
        if start is not None:
            self.window_start = min(start, self.window_start or start)
        if end is not None:
            self.window_end = max(end, self.window_end or end)


@dataclass(frozen=True)
class RecordPosition:
    """Where a page ended, in the merged (cursor value, connection, key) order."""

    cursor_value: str
    connection_id: str
    record_key: str


@dataclass(frozen=True)
class StoredRecord:
    connection_id: str
    stream: str
    record_key: str
    data: dict[str, Any]
    emitted_at: str
    cursor_value: str


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    connection_id: str
    connector_key: str
    acquisition_method: str
    trigger: str
    collection_mode: str
    status: str
    started_at: str
    ended_at: str | None
    counts: dict[str, Any] = field(default_factory=dict)
    known_gaps: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class BatchReceipt:
    """An import's receipt: what one artifact contributed to one connection."""

    batch_id: str
    run_id: str
    connection_id: str
    connector_key: str
    acquisition_method: str
    parser_version: str
    artifact_sha256: str
    artifact_name: str
    artifact_size: int
    status: str
    counts: dict[str, int]
    window_start: str | None
    window_end: str | None
    warnings: list[str]
    created_at: str


@dataclass(frozen=True)
class ChangedRecord:
    connection_id: str
    stream: str
    record_key: str
    data: dict[str, Any] | None  # None for a tombstone
    emitted_at: str
    deleted: bool
    deleted_at: str | None
    seq: int


@dataclass(frozen=True)
class SearchHit:
    rowid: int
    connection_id: str
    stream: str
    record_key: str
    data: dict[str, Any]  # grant-projected: only what matched_fields/snippets may draw on
    emitted_at: str



@dataclass(frozen=True)
class Schedule:
    connection_id: str
    enabled: bool
    paused: bool
    interval_seconds: int
    jitter_seconds: int
    next_due_at: str | None
    consecutive_failures: int
    backoff_until: str | None
    last_run_at: str | None
    origin: str
    updated_at: str


class Store(AuthStore, Protocol):
    def transaction(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...

    def meta(self, key: str) -> str | None: ...

    # registrations
    def registrations(self, kind: str) -> list[tuple[dict[str, Any], str | None]]: ...

    def save_registration(
        self, kind: str, key: str, document: dict[str, Any], base_dir: str | None
    ) -> None: ...

    # connections
    def create_connection(
        self,
        *,
        owner_id: str,
        source: str,
        display_name: str,
        display_name_is_placeholder: bool,
        identity: ConnectionIdentity | None,
        seed: str,
    ) -> Connection: ...

    def attach_path(
        self,
        connection_id: str,
        *,
        connector_key: str,
        acquisition_method: str,
        proved_identity: bool,
        rule_id: str | None,
    ) -> None: ...

    def connection(self, connection_id: str) -> Connection: ...

    def connections(
        self,
        *,
        source: str | None = None,
        connector_key: str | None = None,
        connection_ids: Sequence[str] | None = None,
    ) -> list[Connection]: ...

    def rename_connection(self, connection_id: str, display_name: str) -> Connection: ...

    def identity_tombstoned(
        self, owner_id: str, source: str, claim: str, value: str, connector_keys: Sequence[str]
    ) -> bool: ...

    def save_connection_config(
        self,
        connection_id: str,
        connector_key: str,
        settings: dict[str, str],
        sealed_secrets: dict[str, tuple[bytes, str]],
    ) -> None: ...

    def connection_config(
        self, connection_id: str, connector_key: str
    ) -> tuple[dict[str, str], dict[str, bytes]]: ...

    # runs and writes
    def start_run(
        self,
        *,
        connection_id: str,
        connector_key: str,
        acquisition_method: str,
        trigger: str,
        collection_mode: str,
        holder: str = "local",
        batch_id: str | None = None,
        run_id: str | None = None,
    ) -> Acquisition: ...

    def commit_batch(
        self,
        acquisition: Acquisition,
        writes: Sequence[tuple[StreamDefinition, Sequence[RecordWrite]]],
    ) -> WriteStats: ...

    def finish_run(
        self,
        acquisition: Acquisition,
        *,
        status: str,
        counts: dict[str, int],
        known_gaps: list[dict[str, Any]],
        checkpoint: dict[str, Any],
        error: dict[str, Any] | None,
        states: dict[str, Any] | None,
        last_writes: Sequence[tuple[StreamDefinition, Sequence[RecordWrite]]] = (),
    ) -> WriteStats: ...

    def connection_state(self, connection_id: str, connector_key: str) -> dict[str, Any]: ...

    def runs(self, connection_id: str | None = None, limit: int = 100) -> list[RunRecord]: ...

    def save_batch(self, receipt: BatchReceipt) -> None: ...

    def batches(
        self,
        *,
        connection_id: str | None = None,
        connector_key: str | None = None,
        artifact_sha256: str | None = None,
    ) -> list[BatchReceipt]: ...

    def coverage(self, connection_id: str) -> list[dict[str, Any]]: ...

    def record_provenance(
        self, connection_id: str, stream: str, record_key: str
    ) -> list[dict[str, Any]]: ...

    # reads
    def records_page(
        self,
        scope: ReadScope,
        *,
        limit: int,
        order: str = "desc",
        after: RecordPosition | None = None,
    ) -> tuple[list[StoredRecord], bool]: ...

    def record(self, scope: ReadScope, record_key: str) -> list[StoredRecord]: ...

    def stream_counts(
        self, connection_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]: ...

    def scoped_count(self, scope: ReadScope) -> dict[str, tuple[int, str | None]]: ...

    def visible_last_change(self, scope: ReadScope) -> dict[str, str]: ...

    def change_horizon(self) -> int: ...

    def change_floor(self) -> int: ...

    def changes_page(
        self, scope: ReadScope, *, since: int, upto: int, after: int, limit: int
    ) -> tuple[list[ChangedRecord], bool]: ...

    def search(
        self,
        scopes: Sequence[ReadScope],
        terms: tuple[Term, ...],
        *,
        limit: int,
        before_rowid: int | None,
    ) -> tuple[list[SearchHit], bool]: ...

    # grants and tokens
    def save_grant(self, grant: Grant) -> None: ...

    def grant(self, grant_id: str) -> Grant: ...

    def grants(self) -> list[Grant]: ...

    def revoke_grant(self, grant_id: str) -> Grant: ...

    def save_token(
        self,
        *,
        token_hash: str,
        token_id: str,
        kind: str,
        grant_id: str | None,
        expires_at: str | None,
    ) -> None: ...

    def token(self, token_hash: str) -> dict[str, Any] | None: ...

    def revoke_token(self, token_id: str) -> None: ...

    # owner operations
    def set_connection_status(self, connection_id: str, status: str) -> Connection: ...

    def active_lease(self, connection_id: str) -> dict[str, Any] | None: ...

    def schedule(self, connection_id: str) -> Schedule | None: ...

    def put_schedule(
        self,
        connection_id: str,
        *,
        enabled: bool,
        interval_seconds: int,
        jitter_seconds: int,
        next_due_at: str | None,
        origin: str,
    ) -> Schedule: ...

    def set_schedule_paused(self, connection_id: str, paused: bool) -> Schedule | None: ...

    def due_schedules(self, now: str) -> list[Schedule]: ...

    def claim_schedule(self, connection_id: str, expected_due: str, next_due_at: str) -> bool: ...

    def record_schedule_outcome(
        self, connection_id: str, *, succeeded: bool, backoff_until: str | None
    ) -> None: ...

    def append_audit(
        self,
        *,
        actor_kind: str,
        connection_id: str | None,
        operation: str,
        outcome: str,
        summary: dict[str, Any],
    ) -> None: ...

    def audit_events(
        self, connection_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]: ...

    def delete_connection(self, connection_id: str, owner_id: str) -> dict[str, Any]: ...

    def purge_search_rows(self) -> int: ...

    def credential_metadata(self, connection_id: str) -> list[dict[str, Any]]: ...
