"""Small typed models shared by every layer.

They say what a thing is; the store persists them, the runtime produces them, the API renders
them. Nothing here touches SQL, HTTP or a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

Semantics = Literal["append_only", "mutable_state"]
# `owner_push` and `owner_edit` are the owner's own paths (pushed records, record deletes),
# never a manifest's
AcquisitionMethod = Literal[
    "provider_api", "owner_artifact", "browser_polyfill", "device_sync", "owner_push", "owner_edit"
]
ACQUISITION_METHODS: tuple[str, ...] = (  # what a manifest may declare
    "provider_api",
    "owner_artifact",
    "browser_polyfill",
    "device_sync",
)
ConnectionStatus = Literal["active", "paused", "revoked"]


@dataclass(frozen=True)
class Aggregations:
    """Which aggregations a definition allows, over which fields (the PDPP
    `query.aggregations` declaration). Only these are ever computed."""

    count: bool = False
    sum: tuple[str, ...] = ()
    min: tuple[str, ...] = ()
    max: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    group_by_time: tuple[str, ...] = ()
    count_distinct: tuple[str, ...] = ()

    def fields_for(self, kind: str) -> tuple[str, ...]:
        """The fields declared for one of `sum`, `min`, `max`, `group_by`, `group_by_time`,
        `count_distinct`."""
        found: tuple[str, ...] = getattr(self, kind)
        return found

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"count": True} if self.count else {}
        for kind in AGGREGATION_KINDS:
            if self.fields_for(kind):
                body[kind] = list(self.fields_for(kind))
        return body


AGGREGATION_KINDS = ("sum", "min", "max", "group_by", "group_by_time", "count_distinct")
RangeOp = Literal["gte", "gt", "lte", "lt"]
RANGE_OPS: tuple[RangeOp, ...] = ("gte", "gt", "lte", "lt")
FilterOp = Literal["eq", "gte", "gt", "lte", "lt"]
Cardinality = Literal["has_one", "has_many"]


@dataclass(frozen=True)
class Relationship:
    """A relation a definition declares: records of `stream` whose `foreign_key` equals this
    record's key, in the same connection. `expandable` (with its limits) when the definition
    also declares it under `expand`; otherwise it is descriptive only."""

    name: str
    stream: str
    foreign_key: str
    cardinality: Cardinality
    expandable: bool = False
    default_limit: int = 10
    max_limit: int = 50

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stream": self.stream,
            "foreign_key": self.foreign_key,
            "cardinality": self.cardinality,
        }


@dataclass(frozen=True)
class View:
    """A named projection of a definition's fields (the owner's `view=`)."""

    id: str
    fields: tuple[str, ...]
    label: str = ""


@dataclass(frozen=True)
class StreamDefinition:
    """A normalized stream: its semantics, key and record shape. Shared across connectors."""

    name: str
    version: int
    semantics: Semantics
    primary_key: tuple[str, ...]
    schema: dict[str, Any]
    description: str = ""
    cursor_field: str | None = None
    consent_time_field: str | None = None
    searchable_fields: tuple[str, ...] = ()
    union_fields: tuple[str, ...] = ()  # array fields merged as a set union across paths
    aggregations: Aggregations | None = None  # None: the stream offers no aggregation
    # paths of `blob_ref` fields: `photo`, `attachments[].blob_ref` (one level inside a field)
    blob_fields: tuple[str, ...] = ()
    range_filters: tuple[tuple[str, tuple[RangeOp, ...]], ...] = ()  # (field, operators)
    relationships: tuple[Relationship, ...] = ()
    views: tuple[View, ...] = ()
    shared: bool = True

    @property
    def fields(self) -> tuple[str, ...]:
        """Top-level fields, the unit of grant projection."""
        return tuple(self.schema.get("properties", {}))

    def range_ops(self, name: str) -> tuple[RangeOp, ...]:
        """The range operators declared for a field (none when it is not range-filterable)."""
        return next((ops for field_name, ops in self.range_filters if field_name == name), ())

    def relationship(self, name: str) -> Relationship | None:
        return next((r for r in self.relationships if r.name == name), None)

    def view(self, view_id: str) -> View | None:
        return next((v for v in self.views if v.id == view_id), None)


@dataclass(frozen=True)
class SetupField:
    name: str
    env: str
    default: str | None = None
    required: bool = True


@dataclass(frozen=True)
class OAuthProvider:
    """The OAuth 2 provider a connector's account is authorized at (authorization code + PKCE).

    The runtime runs the authorization itself; the connector refreshes tokens during its runs
    and hands new ones back with CREDENTIALS. `client_id` is the app registered at the provider
    when the manifest ships one; otherwise the owner names it at connect time.
    """

    authorization_url: str
    token_url: str
    scopes: tuple[str, ...]
    rotates_refresh_tokens: bool  # a refresh may answer a new refresh token (keep the newest)
    client_id: str | None = None
    client_secret_required: bool = False
    pkce: Literal["S256"] = "S256"


@dataclass(frozen=True)
class RefreshPolicy:
    recommended_mode: Literal["automatic", "manual", "paused"] = "manual"
    recommended_interval_seconds: int | None = None
    maximum_staleness_seconds: int | None = None
    background_safe: bool = False


@dataclass(frozen=True)
class ConnectorManifest:
    """A connector type: how it runs and which streams it emits. Never a connection."""

    connector_key: str
    version: str
    display_name: str
    source: str
    acquisition_method: AcquisitionMethod
    streams: tuple[StreamDefinition, ...]
    secrets: tuple[SetupField, ...] = ()
    settings: tuple[SetupField, ...] = ()
    refresh_policy: RefreshPolicy = RefreshPolicy()
    identity_claim: str | None = None
    oauth: OAuthProvider | None = None
    command: tuple[str, ...] | None = None
    python_entry: str | None = None
    base_dir: str | None = None
    manifest_uri: str | None = None
    builtin: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def stream(self, name: str) -> StreamDefinition | None:
        return self._streams_by_name.get(name)

    @cached_property
    def _streams_by_name(self) -> dict[str, StreamDefinition]:
        # looked up for every record a run writes
        return {s.name: s for s in reversed(self.streams)}

    @property
    def path(self) -> AcquisitionPath:
        return AcquisitionPath(self.connector_key, self.acquisition_method)


@dataclass(frozen=True)
class AcquisitionPath:
    """How records reach a connection: a connector key and its acquisition method. Provenance."""

    connector_key: str
    acquisition_method: str


@dataclass(frozen=True)
class IdentityRule:
    """Declares that connections of these connectors proving equal `claim` values are one source."""

    rule_id: str
    version: int
    source: str
    claim: str
    connector_keys: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class RecordRule:
    """Declares when two records of one stream and connection are one real-world event seen at
    different precisions (a play the basic archive dates to the minute, the API to the
    millisecond): equal `match_fields` and times in the same `window_seconds` window, one of
    them coarse. Records are otherwise never merged across keys."""

    rule_id: str
    version: int
    stream: str
    time_field: str
    window_seconds: int
    match_fields: tuple[str, ...]
    coarse_field: str  # the field that says a record's precision…
    coarse_values: tuple[str, ...]  # …and the values that make it coarse
    description: str = ""
    # values of `coarse_field`, coarsest first: a write never coarsens a record's time
    precision_order: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentityEvidence:
    """What a connector proved about the account it reads, via an IDENTITY message."""

    claim: str
    value: str
    connector_key: str


@dataclass(frozen=True)
class ConnectionIdentity:
    claim: str
    value: str
    proven_by: str
    rule_id: str | None = None
    proven_at: str | None = None


@dataclass(frozen=True)
class AttachedPath:
    connector_key: str
    acquisition_method: str
    attached_at: str
    proved_identity: bool
    rule_id: str | None = None


@dataclass(frozen=True)
class Connection:
    connection_id: str
    owner_id: str
    source: str
    display_name: str
    display_name_is_placeholder: bool
    status: ConnectionStatus
    created_at: str
    updated_at: str
    identity: ConnectionIdentity | None = None
    paths: tuple[AttachedPath, ...] = ()
    revoked_at: str | None = None

    def has_path(self, connector_key: str) -> bool:
        return any(p.connector_key == connector_key for p in self.paths)

    @property
    def client_display_name(self) -> str | None:
        """The label clients may see: only a meaningful, owner-given one."""
        return None if self.display_name_is_placeholder else self.display_name


@dataclass(frozen=True)
class RecordWrite:
    """One validated RECORD, ready for the store."""

    stream: str
    record_key: str
    data: dict[str, Any]
    emitted_at: str
    op: Literal["upsert", "delete"] = "upsert"
    encoded: bytes | None = field(default=None, compare=False, repr=False)  # `data` as JSON


@dataclass(frozen=True)
class KnownGap:
    """Something a run could not collect, with the path that produced it and what to do."""

    kind: str
    reason: str
    message: str
    connector_key: str
    acquisition_method: str
    stream: str | None = None
    severity: str = "actionable"
    recovery_action: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "message": self.message,
            "stream": self.stream,
            "severity": self.severity,
            "recovery_hint": {"action": self.recovery_action},
            "connector_key": self.connector_key,
            "acquisition_method": self.acquisition_method,
        }


MAX_REJECTION_EXAMPLES = 3


@dataclass
class Tally:
    """What one import, run or push did, in the one receipt shape every surface renders.

    `parsed` counts every entry the connector reported (records and rejected entries);
    `accepted` the records that passed validation; `new`, `updated`, `duplicate` (already held,
    unchanged), `deleted` and `skipped` (a delete another path's evidence defers) what they did;
    `merged_with_existing` how many landed on a record another acquisition path already held;
    `rejected` (also `failed`, its older name) the entries refused, by reason in `rejections`;
    `omitted` what the connector left out on purpose, by reason.
    """

    parsed: int = 0
    accepted: int = 0
    new: int = 0
    updated: int = 0
    duplicate: int = 0
    deleted: int = 0
    skipped: int = 0
    rejected: int = 0
    merged_with_existing: int = 0
    rejections: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)
    omitted: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, example: dict[str, Any]) -> None:
        count, examples = self.rejections.get(reason, (0, []))
        if len(examples) < MAX_REJECTION_EXAMPLES:
            examples.append(example)
        self.rejections[reason] = (count + 1, examples)
        self.rejected += 1

    def omit(self, reason: str, count: int) -> None:
        self.omitted[reason] = self.omitted.get(reason, 0) + count

    def to_dict(self) -> dict[str, Any]:
        return {
            "parsed": self.parsed,
            "accepted": self.accepted,
            "new": self.new,
            "updated": self.updated,
            "duplicate": self.duplicate,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "failed": self.rejected,
            "merged_with_existing": self.merged_with_existing,
            "rejections": [
                {"reason": reason, "count": count, "examples": examples}
                for reason, (count, examples) in sorted(self.rejections.items())
            ],
            "omitted": dict(sorted(self.omitted.items())),
        }


@dataclass(frozen=True)
class Acquisition:
    """The run (and, for an import, the batch) that writes: every record it touches links here.

    `stage` names what it writes until it is published (the store's run sequence)."""

    run_id: str
    connection_id: str
    connector_key: str
    acquisition_method: str
    stage: int
    batch_id: str | None = None


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    name: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class FieldFilter:
    """One owner filter on a top-level scalar field, validated against the definition: the
    value has the field's JSON type; `moment` compares date-time values as UTC instants (the
    value is then normalized UTC ISO)."""

    field: str
    op: FilterOp
    value: str | int | float | bool
    moment: bool = False


@dataclass(frozen=True)
class ReadScope:
    """What a bearer may read from one stream; the store applies every part of it in SQL,
    request filters (the owner's `filter[...]`) included."""

    stream: StreamDefinition
    connection_ids: tuple[str, ...]
    fields: tuple[str, ...]
    since: str | None = None  # on the stream's consent time, normalized UTC
    until: str | None = None
    resources: tuple[str, ...] | None = None
    filters: tuple[FieldFilter, ...] = ()


@dataclass(frozen=True)
class StreamGrant:
    """One stream of a grant: explicit connections, the authoritative field projection, limits."""

    name: str
    instance_ids: tuple[str, ...]
    fields: tuple[str, ...]
    time_field: str | None = None
    since: str | None = None
    until: str | None = None
    resources: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "instance_ids": list(self.instance_ids),
            "fields": list(self.fields),
        }
        if self.time_field is not None:
            entry["time_constraint"] = {
                "field": self.time_field,
                **({"since": self.since} if self.since else {}),
                **({"until": self.until} if self.until else {}),
            }
        if self.resources is not None:
            entry["resources"] = list(self.resources)
        return entry


@dataclass(frozen=True)
class Grant:
    """An owner-approved, immutable permission for one client. Lifecycle lives beside it."""

    grant_id: str
    client_id: str
    purpose_code: str
    access_mode: Literal["single_use", "continuous"]
    issued_at: str
    expires_at: str | None
    streams: tuple[StreamGrant, ...]
    subject_id: str = "owner"
    client_display: str | None = None
    purpose_description: str | None = None
    revoked_at: str | None = None

    def stream(self, name: str) -> StreamGrant | None:
        return next((s for s in self.streams if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": "0.1.0",
            "grant_id": self.grant_id,
            "issued_at": self.issued_at,
            "subject": {"id": self.subject_id},
            "client": {"client_id": self.client_id, "client_display": self.client_display},
            "purpose_code": self.purpose_code,
            "purpose_description": self.purpose_description,
            "access_mode": self.access_mode,
            "streams": [s.to_dict() for s in self.streams],
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True)
class Bearer:
    """Who is asking: the owner, or a client holding one grant."""

    kind: Literal["owner", "client"]
    token_id: str
    grant: Grant | None = None
