"""The Store interface: semantic operations with typed results, so a backend is an implementation.

Callers never see tables, rows or index slots, and never open transactions: each mutating
method owns its transaction. Writes happen in *stages* (one run, import or push): batches are
committed in short transactions as the stage goes, invisible to readers, and `publish` makes the
whole stage visible at once. Reads take a `ReadScope` that the store applies in its queries, so
no caller can forget a grant filter. Every time the store records comes from its injected
`clock`, so tests move time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from ownstream.model import (
    Acquisition,
    Connection,
    ConnectionIdentity,
    ConnectionStatus,
    Grant,
    ReadScope,
    RecordRule,
    RecordWrite,
    StreamDefinition,
)
from ownstream.search import Term
from ownstream.store.auth import AuthStore
from ownstream.store.planner import BatchStats

RunStatus = Literal["running", "succeeded", "failed", "cancelled"]
AuthorizationStatus = Literal["pending", "completing", "connected", "refused", "expired"]
TokenKind = Literal["owner", "client"]
Rekey = Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None]
"""A record's new key and data, computed from its data alone; None leaves it as it is."""


@dataclass(frozen=True)
class StreamBatch:
    """Records of one stream for one batch, with the stream's record rule if it has one."""

    definition: StreamDefinition
    records: Sequence[RecordWrite]
    rule: RecordRule | None = None


Writes = Sequence[StreamBatch]


@dataclass(frozen=True)
class StoreCapabilities:
    """What a backend can do, for the layers above that must adapt to it."""

    backend: Literal["sqlite", "postgresql"]
    concurrent_writers: bool  # several processes may write at once
    max_searchable_fields: int


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
    data: dict[str, Any]  # grant-projected
    emitted_at: str
    cursor_value: str


@dataclass(frozen=True)
class ChangedRecord:
    connection_id: str
    stream: str
    record_key: str
    data: dict[str, Any] | None  # grant-projected; None for a tombstone
    emitted_at: str
    deleted: bool
    deleted_at: str | None
    position: tuple[int, int]  # (publish sequence, change sequence): the feed's order


@dataclass(frozen=True)
class SearchHit:
    record_id: int  # newest-collected first: the feed order of search results
    connection_id: str
    stream: str
    record_key: str
    data: dict[str, Any]  # grant-projected: only what matched_fields/snippets may draw on
    emitted_at: str


AggregateMetric = Literal["count", "sum", "min", "max", "count_distinct"]
Granularity = Literal["minute", "hour", "day", "week", "month", "quarter", "year"]
GroupKey = str | int | float | bool | None


@dataclass(frozen=True)
class TimeGrouping:
    """Calendar buckets of a date or date-time field: `granularity` in the IANA `time_zone`
    (weeks start on Monday). A `date` field holds calendar days already and is never shifted."""

    field: str
    granularity: Granularity
    time_zone: str = "UTC"
    date_only: bool = False


@dataclass(frozen=True)
class AggregateSpec:
    """One validated aggregation: a metric, or a count grouped by at most one dimension.
    Callers validate it against the definition and the grant; the store only computes."""

    metric: AggregateMetric
    field: str | None = None  # the metric's input (None for count)
    group_by: str | None = None
    group_by_time: TimeGrouping | None = None
    limit: int = 10  # groups returned; the rest are summed into `other_count`


@dataclass(frozen=True)
class AggregateGroup:
    key: GroupKey  # a field value, or a bucket start (`YYYY-MM-DD`, `…THH:00`, `…THH:MM`)
    count: int


@dataclass(frozen=True)
class AggregateResult:
    record_count: int  # the records aggregated: every one the scope can see
    value: GroupKey = None  # an ungrouped metric
    groups: tuple[AggregateGroup, ...] = ()
    other_count: int = 0  # records in groups past `limit`


@dataclass(frozen=True)
class BlobAccess:
    """A record through which a bearer reaches a blob: its stream and connection (for the
    access log), and the media type it gives the blob."""

    mime_type: str
    stream: str
    connection_id: str


@dataclass(frozen=True)
class StreamCount:
    connection_id: str
    stream: str
    record_count: int
    last_updated: str


@dataclass(frozen=True)
class DailyCount:
    """How many live records one connection holds for one day (UTC, of their consent time)."""

    connection_id: str
    day: str  # YYYY-MM-DD
    records: int


@dataclass(frozen=True)
class Coverage:
    """Which consent-time window one acquisition path has covered for one stream."""

    connection_id: str
    stream: str
    connector_key: str
    acquisition_method: str
    window_start: str | None
    window_end: str | None
    last_run_id: str
    last_batch_id: str | None
    last_at: str
    records_seen: int


@dataclass(frozen=True)
class Evidence:
    """One run or import batch (and so one acquisition path) that evidenced a record."""

    run_id: str
    batch_id: str | None
    connector_key: str
    acquisition_method: str
    at: str


@dataclass(frozen=True)
class Lease:
    connection_id: str
    run_id: str
    holder: str
    acquired_at: str
    renewed_at: str
    expires_at: str

    def stale(self, now: str) -> bool:
        return self.expires_at <= now


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    connection_id: str
    connector_key: str
    acquisition_method: str
    trigger: str
    collection_mode: str
    status: RunStatus
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
    counts: dict[str, Any]  # `Tally.to_dict()`
    window_start: str | None
    window_end: str | None
    warnings: list[str]
    created_at: str


@dataclass
class RekeyReport:
    """What one re-key upgrade did to a stream's records: `rekeyed` got a new key or data;
    `unchanged` were left as they were (the function returned None, or nothing differed);
    `conflicts` kept their key because another record of their connection holds the new one;
    `deferred` belong to a connection a run was writing, and wait for the next start."""

    upgrade: str
    stream: str
    rekeyed: int = 0
    unchanged: int = 0
    conflicts: int = 0
    deferred: int = 0


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


@dataclass(frozen=True)
class CredentialInfo:
    """What the owner may know of a stored secret: never the secret."""

    connector_key: str
    name: str
    fingerprint: str
    created_at: str
    rotated_at: str | None


@dataclass(frozen=True)
class ConnectionConfig:
    settings: dict[str, str]
    sealed_secrets: dict[str, bytes]


@dataclass(frozen=True)
class NewConnection:
    owner_id: str
    source: str
    display_name: str
    display_name_is_placeholder: bool
    identity: ConnectionIdentity | None
    seed: str  # names a connection without identity (its first artifact, say)


@dataclass(frozen=True)
class PathAttachment:
    connector_key: str
    acquisition_method: str
    proved_identity: bool
    rule_id: str | None


@dataclass(frozen=True)
class Binding:
    """Where a stage's records go: an existing connection, or one created at publication
    (with the path attached then), so a failed import leaves no connection behind."""

    connection_id: str
    create: NewConnection | None = None
    attach: PathAttachment | None = None


@dataclass(frozen=True)
class Publication:
    """How a stage ends. Its staged versions become visible at once (the session commits its
    last batch first); states are saved only for a succeeded run; a receipt marks an import
    batch."""

    status: RunStatus
    counts: dict[str, Any]
    known_gaps: list[dict[str, Any]]
    checkpoint: dict[str, Any]
    error: dict[str, Any] | None
    states: dict[str, Any] | None
    receipt: BatchReceipt | None = None
    binding: Binding | None = None  # a connection to create, or a path to attach, on publish


@dataclass(frozen=True)
class ProviderAuthorization:
    """An OAuth authorization the owner started at a provider, until its callback ends it.

    It lives in the database because the process that starts it (the CLI, the console's
    server) is not necessarily the `serve` process the provider redirects to. The state is
    kept only as a hash (by the store, beside this); the PKCE verifier and a client secret are
    sealed, and dropped when the authorization ends.
    """

    authorization_id: str
    connector_key: str
    status: AuthorizationStatus
    redirect_uri: str
    client_id: str
    settings: dict[str, str]
    display_name: str | None
    connection_id: str | None  # the connection to re-authorize, then the one connected
    allow_recreate: bool
    created_at: str
    expires_at: str
    sealed_verifier: bytes | None = field(default=None, repr=False)
    sealed_client_secret: bytes | None = field(default=None, repr=False)
    finished_at: str | None = None
    outcome: dict[str, Any] | None = None  # connected: created, identity; else code, message


@dataclass(frozen=True)
class Token:
    token_id: str
    token_hash: str
    kind: TokenKind
    grant_id: str | None
    label: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: str
    actor_kind: str
    connection_id: str | None
    operation: str
    outcome: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class AuditVocabulary:
    """Every actor kind, operation and connection id the whole trail holds: what a filter of
    it can choose from, however old the events that used them."""

    actor_kinds: tuple[str, ...]
    operations: tuple[str, ...]
    connection_ids: tuple[str, ...]


@dataclass(frozen=True)
class DeleteCounts:
    records_per_stream: dict[str, int]

    @property
    def records(self) -> int:
        return sum(self.records_per_stream.values())


@dataclass(frozen=True)
class AccessCount:
    """How often one client read one stream of one connection on one day."""

    day: str
    client_id: str
    grant_id: str
    stream: str
    connection_id: str
    reads: int
    records: int


class Store(AuthStore, Protocol):
    capabilities: StoreCapabilities
    clock: Callable[[], datetime]
    lease_seconds: int  # a run's lease lives this long unless its heartbeat renews it

    def close(self) -> None: ...

    def epoch(self) -> str:
        """This database's identity: change tokens from another database are refused."""
        ...

    def sync_search(self, definitions: Sequence[StreamDefinition]) -> None:
        """Index every stream by its definition's searchable fields (a no-op when current)."""
        ...

    def rekey_records(
        self, stream: str, rekey: Rekey, *, upgrade: str, rule: RecordRule | None = None
    ) -> RekeyReport | None:
        """Re-key a stream's records in place, once per `upgrade` name (None when it already
        ran): each head (and tombstone) gets the key and data `rekey` computes from its data,
        and its match key under `rule`. Record ids, versions, history, evidence and paths are
        kept, and no change-log entry is written: a pure re-key renames, it does not change
        what was collected. Chunked in short transactions, so it can resume; records of a
        connection with a live stage are deferred, and the upgrade is marked done only when
        none were."""
        ...

    # registrations -------------------------------------------------------------------------
    def registrations(self, kind: str) -> list[tuple[dict[str, Any], str | None]]: ...

    def save_registration(
        self, kind: str, key: str, document: dict[str, Any], base_dir: str | None
    ) -> None: ...

    # connections ---------------------------------------------------------------------------
    def connection_id_for(self, new: NewConnection) -> str:
        """The id a new connection gets: a stable hash of its identity (or seed), never the id
        of a deleted connection."""
        ...

    def create_connection(
        self,
        new: NewConnection,
        attach: PathAttachment,
        config: tuple[str, dict[str, str], dict[str, tuple[bytes, str]]] | None = None,
    ) -> Connection: ...

    def attach_path(self, connection_id: str, attach: PathAttachment) -> Connection: ...

    def connection(self, connection_id: str) -> Connection: ...

    def connections(
        self,
        *,
        source: str | None = None,
        connector_key: str | None = None,
        connection_ids: Sequence[str] | None = None,
    ) -> list[Connection]: ...

    def rename_connection(self, connection_id: str, display_name: str) -> Connection: ...

    def set_connection_status(self, connection_id: str, status: ConnectionStatus) -> Connection: ...

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

    def connection_config(self, connection_id: str, connector_key: str) -> ConnectionConfig: ...

    def credential_metadata(self, connection_id: str) -> list[CredentialInfo]: ...

    def delete_connection(self, connection_id: str, owner_id: str) -> DeleteCounts:
        """Erase a connection and everything keyed on it: unreadable at once (one short
        transaction), its records purged in short transactions after. Refused during a run."""
        ...

    def purge_deleted(self) -> int:
        """Finish purging deleted connections (after a crash mid-purge); rows removed."""
        ...

    # provider authorizations (OAuth at a provider) ------------------------------------------
    def create_provider_authorization(
        self, authorization: ProviderAuthorization, state_hash: str
    ) -> None:
        """Store a pending authorization under the hash of its state; authorizations that
        expired lose their sealed values, and those a day past expiry are dropped."""
        ...

    def claim_provider_authorization(self, state_hash: str) -> ProviderAuthorization | None:
        """The authorization a callback's state names, moved from pending to completing: of
        several callbacks with one state exactly one claims it, the others see it completing
        or ended. A pending one past its expiry is marked expired. None for an unknown state."""
        ...

    def finish_provider_authorization(
        self,
        authorization_id: str,
        *,
        expected: AuthorizationStatus,
        status: AuthorizationStatus,
        connection_id: str | None,
        outcome: dict[str, Any],
    ) -> bool:
        """End an authorization that is still `expected` (its sealed values are dropped);
        False when it was not."""
        ...

    def provider_authorization(self, authorization_id: str) -> ProviderAuthorization: ...

    # collection ----------------------------------------------------------------------------
    def start_stage(
        self,
        binding: Binding,
        *,
        connector_key: str,
        acquisition_method: str,
        trigger: str,
        collection_mode: str,
        holder: str,
        run_id: str,
        batch_id: str | None = None,
    ) -> Acquisition:
        """Record a run and take its connection's lease (refused while another run holds a
        live one; a stale one is reclaimed, and its stage abandoned)."""
        ...

    def renew_lease(self, acquisition: Acquisition) -> None:
        """Heartbeat: extend the lease, or raise `RunLeaseLost` if the run no longer holds it."""
        ...

    def commit_batch(self, acquisition: Acquisition, writes: Writes) -> BatchStats:
        """Stage one batch in one short transaction, fenced by the lease."""
        ...

    def hold_blobs(self, acquisition: Acquisition, blob_ids: Sequence[str]) -> None:
        """The stage holds these blobs (its connector handed them over) until it is published
        or abandoned, so their files survive until the records referencing them are
        committed. Fenced by the lease. The caller places a blob's file after holding it."""
        ...

    def hold_known_blobs(self, acquisition: Acquisition, blob_ids: Sequence[str]) -> set[str]:
        """Hold, for the stage, those of these blobs that a record of its connection already
        references (any version) or the stage holds, and return them: a record may name a
        blob only if its connection has it. Fenced by the lease."""
        ...

    def save_run_credentials(
        self, acquisition: Acquisition, sealed_secrets: dict[str, tuple[bytes, str]]
    ) -> None:
        """Store secrets a run handed back (CREDENTIALS) for its own connection and connector
        only: fenced by its lease, in a transaction of their own (not staged with its records),
        so they stay whatever the run's outcome. Raises `RunLeaseLost` after a takeover."""
        ...

    def publish(self, acquisition: Acquisition, publication: Publication) -> None:
        """End a stage: its states, run row and receipt, and every version it staged made
        visible at once, in one short transaction. Fenced by the lease, which it releases."""
        ...

    def abandon(self, acquisition: Acquisition, error: dict[str, Any]) -> None:
        """End a stage without publishing: everything it staged is removed."""
        ...

    def reclaim_stalled(self) -> list[str]:
        """Fail the runs whose lease went stale (their process died) and clear their stages;
        also finish clean-ups a crash interrupted. Returns the reclaimed run ids."""
        ...

    def active_lease(self, connection_id: str) -> Lease | None: ...

    def connection_state(self, connection_id: str, connector_key: str) -> dict[str, Any]: ...

    def put_connection_state(
        self, connection_id: str, connector_key: str, states: dict[str, Any]
    ) -> None:
        """Replace one path's checkpoints of a connection (the owner's push path keeps its
        client's sync state here, outside any stage); `ConnectionNotFound` for a connection
        that does not exist."""
        ...

    def runs(self, connection_id: str | None = None, limit: int = 100) -> list[RunRecord]: ...

    def batches(
        self,
        *,
        connection_id: str | None = None,
        connector_key: str | None = None,
        artifact_sha256: str | None = None,
    ) -> list[BatchReceipt]: ...

    def coverage(self, connection_id: str) -> list[Coverage]: ...

    def record_provenance(
        self, connection_id: str, stream: str, record_key: str
    ) -> list[Evidence]: ...

    # reads ---------------------------------------------------------------------------------
    def records_page(
        self,
        scope: ReadScope,
        *,
        limit: int,
        order: str = "desc",
        after: RecordPosition | None = None,
    ) -> tuple[list[StoredRecord], bool]: ...

    def record(self, scope: ReadScope, record_key: str) -> list[StoredRecord]: ...

    def stream_counts(self, connection_ids: Sequence[str] | None = None) -> list[StreamCount]: ...

    def scoped_count(self, scope: ReadScope) -> dict[str, tuple[int, str | None]]: ...

    def daily_counts(self, scope: ReadScope, *, since: str, until: str) -> list[DailyCount]:
        """Live, published records per (connection, UTC day of consent time) within the scope
        and [since, until): the owner's activity pictures. Days without records are absent."""
        ...

    def visible_last_change(self, scope: ReadScope) -> dict[str, str]: ...

    def change_horizon(self) -> int: ...

    def change_floor(self) -> int: ...

    def changes_page(
        self,
        scope: ReadScope,
        *,
        since: int,
        upto: int,
        after: tuple[int, int] | None,
        limit: int,
    ) -> tuple[list[ChangedRecord], bool]: ...

    def search(
        self,
        scopes: Sequence[ReadScope],
        terms: tuple[Term, ...],
        *,
        limit: int,
        before: int | None,
    ) -> tuple[list[SearchHit], bool]: ...

    def aggregate(self, scope: ReadScope, spec: AggregateSpec) -> AggregateResult:
        """One aggregation over exactly the records the scope can see (connections, window,
        resources, published versions). Groups are ordered by count descending then key
        ascending, time buckets by time; a missing value is the `None` group, ordered last."""
        ...

    def readable_blob(self, scopes: Sequence[ReadScope], blob_id: str) -> BlobAccess | None:
        """One query: a live, published record visible to one of the scopes (connections,
        window, resources, filters) that references the blob in a field of the scope (the
        first by record id); None otherwise, an unknown blob alike."""
        ...

    # blob garbage ----------------------------------------------------------------------------
    def queue_unused_blobs(self, blob_ids: Sequence[str]) -> int:
        """Queue for collection those of these blobs no record references and no stage holds
        (a sweep of the blob directory finds them); how many were queued. Dropping a
        reference or a hold queues its blob by itself."""
        ...

    def collect_blob_garbage(self, delete: Callable[[str], None]) -> int:
        """Call `delete` for every queued blob still unused, inside the transaction that
        checked it (so no stage can take a hold in between), and empty the queue; how many
        were deleted. A `delete` that raises leaves the queue as it was."""
        ...

    # grants and tokens ---------------------------------------------------------------------
    def save_grant(self, grant: Grant, token: Token | None) -> None:
        """Store an issued grant and (in the same transaction) its first token."""
        ...

    def grant(self, grant_id: str) -> Grant: ...

    def grants(self) -> list[Grant]: ...

    def revoke_grant(self, grant_id: str) -> Grant:
        """Revoke a grant and every token of it."""
        ...

    def save_token(self, token: Token) -> None: ...

    def token(self, token_hash: str) -> Token | None: ...

    def tokens(self, kind: TokenKind | None = None) -> list[Token]: ...

    def revoke_token(self, token_id: str) -> Token: ...

    def note_token_use(self, last_used: dict[str, str]) -> None:
        """Record when tokens were last used (token id → time), in one write."""
        ...

    def add_access_counts(self, counts: Sequence[AccessCount]) -> None: ...

    def access_log(
        self, *, client_id: str | None = None, since: str | None = None
    ) -> list[AccessCount]: ...

    # schedules -----------------------------------------------------------------------------
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

    def claim_schedule(self, connection_id: str, expected_due: str, next_due_at: str) -> bool:
        """Move a due schedule forward; of racing workers exactly one claim succeeds."""
        ...

    def record_schedule_outcome(
        self, connection_id: str, *, succeeded: bool, backoff_until: str | None
    ) -> None: ...

    # audit ---------------------------------------------------------------------------------
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
        self,
        *,
        connection_id: str | None = None,
        actor_kind: str | None = None,
        operation: str | None = None,
        before: int | None = None,
        limit: int = 200,
    ) -> list[AuditEvent]:
        """The newest `limit` events of the filter, newest first; with `before`, only the
        events numbered (`seq`) below it: the next page of the trail."""
        ...

    def audit_vocabulary(self) -> AuditVocabulary: ...
