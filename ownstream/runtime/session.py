"""One run or import: consume a connector's messages, stage its records, end its stage.

Commit rules (docs/protocol.md):
- records are staged in batches as the run goes, each batch one short transaction; a STATE
  flushes its stream's records first; nothing staged is visible until the stage is published;
- a run that ends (succeeded, or failed as the connector or the protocol says) publishes what
  it staged; its STATE checkpoints are saved only when it succeeded, in the same transaction;
- an import publishes only when it succeeded: anything else abandons its stage, and the
  connection it would have created is never created;
- a crash, an interruption or an internal error abandons the stage; a run whose lease was
  taken over writes nothing more;
- CREDENTIALS a run hands back are sealed and stored for its connection at once, in their own
  transaction fenced by the lease: they stay whatever the run's outcome (a refreshed token is
  valid regardless, and a rotated refresh token would otherwise be lost);
- BLOB content is copied from the run's blob area into the blob store as it arrives, checked
  against the hash and size the connector gave, held by the stage and then placed; a record may
  reference only a blob its run handed over or its connection already has.
While the connector works, a heartbeat renews the lease; a killed process stops renewing it,
so its stage is reclaimed within about a minute.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ownstream.credentials import fingerprint
from ownstream.errors import (
    BlobTooLarge,
    IdentityMismatch,
    OwnstreamError,
    ProtocolViolation,
    RunLeaseLost,
)
from ownstream.model import (
    Acquisition,
    ArtifactInfo,
    Connection,
    ConnectorManifest,
    IdentityEvidence,
    KnownGap,
    RecordWrite,
    Tally,
)
from ownstream.records import blob_refs
from ownstream.runtime.process import Transport, open_transport
from ownstream.runtime.protocol import (
    BlobFile,
    Credentials,
    Done,
    Gap,
    Identity,
    Message,
    MessageValidator,
    Omitted,
    Progress,
    Record,
    Rejected,
    State,
)
from ownstream.store.base import Binding, Publication, RunStatus, Store, StreamBatch
from ownstream.store.planner import BatchStats

if TYPE_CHECKING:
    from ownstream.runtime.runner import Runtime

log = logging.getLogger(__name__)

DONE_GRACE_SECONDS = 10.0  # how long a connector may take to exit after DONE


@dataclass
class RunOutcome:
    """What one run or import did; rendered by the CLI, the owner API and the console."""

    run_id: str | None
    connection_id: str | None
    connector_key: str
    acquisition_method: str
    status: str
    collection_mode: str
    trigger: str
    tally: Tally = field(default_factory=Tally)
    known_gaps: list[KnownGap] = field(default_factory=list)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    identity: IdentityEvidence | None = None
    created_connection: bool = False
    binding: Binding | None = None
    window: tuple[str, str] | tuple[None, None] = (None, None)
    credentials_stored: list[str] = field(default_factory=list)  # names only, never values

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "connection_id": self.connection_id,
            "connector_key": self.connector_key,
            "acquisition_method": self.acquisition_method,
            "status": self.status,
            "collection_mode": self.collection_mode,
            "trigger": self.trigger,
            "counts": self.tally.to_dict(),
            "known_gaps": [g.to_dict() for g in self.known_gaps],
            "checkpoint": self.checkpoint,
            "error": self.error,
        }


def stored_credential_names(outcomes: list[RunOutcome]) -> list[str]:
    """Which secrets these runs refreshed and stored: names for an audit summary, no values."""
    return sorted({name for outcome in outcomes for name in outcome.credentials_stored})


def public_error(error: dict[str, Any]) -> dict[str, Any]:
    return {k: error[k] for k in ("code", "message", "retryable", "recovery_hint") if k in error}


def expect_end(transport: Transport, items: Iterator[Any], validator: MessageValidator) -> None:
    """DONE is the last message: read the rest of the output and fail on anything in it.

    A connector that keeps its output open after DONE is stopped after a grace period.
    """
    timer = threading.Timer(DONE_GRACE_SECONDS, transport.kill)
    timer.daemon = True
    timer.start()
    try:
        for item in items:
            validator.read(item)  # the validator has seen DONE: any message violates
    finally:
        timer.cancel()


class Heartbeat:
    """Renews a stage's lease while its connector works; notes a lost lease and stops it."""

    def __init__(
        self, store: Store, acquisition: Acquisition, interval: float, on_lost: Callable[[], None]
    ) -> None:
        self._store = store
        self._acquisition = acquisition
        self._interval = interval
        self._on_lost = on_lost
        self._stop = threading.Event()
        self.lost: RunLeaseLost | None = None
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{acquisition.run_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._store.renew_lease(self._acquisition)
            except RunLeaseLost as exc:
                self.lost = exc
                self._on_lost()
                return
            except Exception:
                # a busy or failing database must not kill the heartbeat: try again next beat
                log.exception("renewing the lease of run %s failed", self._acquisition.run_id)


class Session(ABC):
    """Consumes one transport's messages: validation, batching, the tally and known gaps.
    Subclasses say where records go (`_stage`) and how the stage ends (`_end`, `_stop`)."""

    def __init__(
        self,
        runtime: Runtime,
        manifest: ConnectorManifest,
        mode: str,
        trigger: str,
        connection: Connection | None,
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.manifest = manifest
        self.connection = connection
        self.acquisition: Acquisition | None = None
        self.validator = MessageValidator(manifest, tuple(s.name for s in manifest.streams))
        self.pending: dict[str, list[RecordWrite]] = {}
        self.pending_count = 0
        self.staged_states: dict[str, Any] = {}
        self.evidence: IdentityEvidence | None = None
        self.window: tuple[str, str] | None = None
        self.heartbeat: Heartbeat | None = None
        self.ambiguous = 0  # coarse entries a record rule could not pair: kept apart
        self.transport: Transport | None = None
        self.blob_area: Path | None = None  # where the connector writes blob content
        self.held: dict[str, int] = {}  # blobs the stage holds, with their sizes
        self.outcome = RunOutcome(
            run_id=None,
            connection_id=connection.connection_id if connection else None,
            connector_key=manifest.connector_key,
            acquisition_method=manifest.acquisition_method,
            status="running",
            collection_mode=mode,
            trigger=trigger,
        )

    # the message loop -------------------------------------------------------------------------
    def execute(self, start: dict[str, Any], env: dict[str, str]) -> RunOutcome:
        with ExitStack() as stack:
            stack.callback(self._stop_heartbeat)
            if self.blob_area is not None:
                stack.callback(self.runtime.blobs.remove_area, self.blob_area)
            try:
                transport = self.transport = self._transport(start, env)
            except OwnstreamError as exc:
                return self._stop(exc.code, exc.message, publish=False)
            stack.callback(transport.close)
            try:
                done = None
                items = iter(transport.messages())
                for item in items:
                    self._check_lease()
                    message = self.validator.read(item)
                    if isinstance(message, Done):
                        done = message
                        break
                    self._handle(message)
                if done is None:
                    transport.close()
                    self._check_lease()
                    raise ProtocolViolation(
                        f"the connector exited (code {transport.exit_code}) before DONE",
                        stderr=transport.stderr_tail,
                    )
                expect_end(transport, items, self.validator)
                self._check_lease()
                return self._end(done)
            except RunLeaseLost as exc:
                # Another run owns the connection now (or it was deleted): write nothing more.
                self.outcome.status = "failed"
                self.outcome.error = {"code": exc.code, "message": exc.message}
                return self.outcome
            except (KeyboardInterrupt, SystemExit):
                with suppress(Exception):
                    self._stop("cancelled", "the run was interrupted", status="cancelled")
                raise
            except (IdentityMismatch, ProtocolViolation) as exc:
                return self._refused(exc)
            except Exception as exc:
                log.exception("run %s of %s failed unexpectedly", self.outcome.run_id,
                              self.manifest.connector_key)
                with suppress(Exception):
                    self._stop("internal_error", f"{type(exc).__name__}: {exc}", publish=False)
                raise

    def _transport(self, start: dict[str, Any], env: dict[str, str]) -> Transport:
        """Where the messages come from: the manifest's connector."""
        return open_transport(self.manifest, start, env)

    def _check_lease(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost is not None:
            raise self.heartbeat.lost

    def _handle(self, message: Message) -> None:
        tally = self.outcome.tally
        match message:
            case Identity(evidence=evidence):
                self.evidence = self.outcome.identity = evidence
                self._check_identity()
            case Record(write=write):
                self._before_data()
                tally.parsed += 1
                problem = self._blob_problem(write)
                if problem is not None:
                    tally.reject(
                        problem[0],
                        {"stream": write.stream, "key": write.record_key, "detail": problem[1]},
                    )
                    return
                tally.accepted += 1
                self.pending.setdefault(write.stream, []).append(write)
                self.pending_count += 1
                if self.pending_count >= self.runtime.batch_size:
                    self._flush()
            case BlobFile() as blob:
                self._before_data()
                self._take_blob(blob)
            case Rejected(rejection=rejection):
                self._before_data()
                tally.parsed += 1
                tally.reject(
                    rejection.reason,
                    {
                        "stream": rejection.stream,
                        "key": rejection.record_key,
                        "detail": rejection.detail,
                    },
                )
            case Omitted(reason=reason, count=count):
                tally.omit(reason, count)
            case State(stream=stream, cursor=cursor):
                self._before_data()
                self._flush()
                self.staged_states[stream] = cursor
            case Gap() as gap:
                informational = gap.recovery_action == "not_retriable" and gap.stream is None
                self.outcome.known_gaps.append(
                    KnownGap(
                        kind="skip_result",
                        reason=gap.reason,
                        message=gap.message,
                        connector_key=self.manifest.connector_key,
                        acquisition_method=self.manifest.acquisition_method,
                        stream=gap.stream,
                        severity="informational" if informational else "recoverable",
                        recovery_action=gap.recovery_action,
                    )
                )
            case Credentials() as handed_back:
                self._store_credentials(handed_back)
            case Progress() as progress:
                self.runtime.progress(
                    {
                        "run_id": self.outcome.run_id,
                        "message": progress.message,
                        "stream": progress.stream,
                        "count": progress.count,
                        "total": progress.total,
                        "connector_key": self.manifest.connector_key,
                        "records": tally.parsed,
                    }
                )

    def _take_blob(self, blob: BlobFile) -> None:
        """Copy handed-over content into the blob store, checked against the hash and size the
        connector gave; the stage holds the blob before its file is placed."""
        if self.blob_area is None:
            raise ProtocolViolation(
                "BLOB in a run without a blob area: none of its streams has a blob_ref field"
            )
        source = self.blob_area / blob.file
        blobs = self.runtime.blobs
        try:
            received = blobs.receive_file(source)
        except FileNotFoundError as exc:
            raise ProtocolViolation(f"BLOB names no file of the run's blob area: {exc}") from exc
        except BlobTooLarge:
            self.outcome.tally.omit("blob_too_large", 1)  # the SDK never hands one over
            return
        finally:
            source.unlink(missing_ok=True)
        if (received.sha256, received.size) != (blob.sha256, blob.size):
            blobs.discard(received)
            raise ProtocolViolation(
                f"BLOB {blob.file}: the file holds {received.size} bytes with sha256 "
                f"{received.sha256}, not the {blob.size} bytes and sha256 the message gives"
            )
        try:
            self.store.hold_blobs(self._stage(), [received.blob_id])
        except BaseException:
            blobs.discard(received)
            raise
        blobs.place(received)
        self.held[received.blob_id] = received.size

    def _blob_problem(self, write: RecordWrite) -> tuple[str, str] | None:
        """Why a record's blob references cannot stand (a rejection reason and detail), or
        None: each must name a blob this run handed over or its connection already has, with
        that blob's size."""
        definition = self.manifest.stream(write.stream)
        if write.op != "upsert" or definition is None or not definition.blob_fields:
            return None
        refs = [ref for _, ref in blob_refs(definition, write.data)]
        unknown = sorted({ref["blob_id"] for ref in refs} - self.held.keys())
        if unknown:
            for blob_id in self.store.hold_known_blobs(self._stage(), unknown):
                size = self.runtime.blobs.size(blob_id)
                if size is not None:
                    self.held[blob_id] = size
        for ref in refs:
            size = self.held.get(ref["blob_id"])
            if size is None:
                return (
                    "unknown_blob",
                    f"{ref['blob_id']} was not handed over in this run, and no record of "
                    "this connection has it",
                )
            if size != ref["size_bytes"]:
                return ("blob_size_mismatch", f"{ref['blob_id']} holds {size} bytes")
        return None

    @abstractmethod
    def _store_credentials(self, handed_back: Credentials) -> None:
        """Seal and store refreshed secrets for this run's connection, before anything else."""

    def _check_identity(self) -> None:
        """A run of a known connection must prove the same identity before any record."""
        connection, evidence = self.connection, self.evidence
        if connection is None or evidence is None or connection.identity is None:
            return
        if (connection.identity.claim, connection.identity.value) != (
            evidence.claim,
            evidence.value,
        ):
            raise IdentityMismatch(
                f"the {self.manifest.connector_key} credentials of connection "
                f"{connection.connection_id} now belong to another account; nothing was written",
                connection_id=connection.connection_id,
            )

    def _before_data(self) -> None:
        connection = self.connection
        if (
            self.evidence is None
            and connection is not None
            and connection.identity is not None
            and self.manifest.identity_claim is not None
        ):
            raise ProtocolViolation(
                f"{self.manifest.connector_key} sent data before proving its "
                f"{self.manifest.identity_claim} (IDENTITY comes first)"
            )
        self._stage()

    # batches ----------------------------------------------------------------------------------
    def _writes(self) -> list[StreamBatch]:
        writes = []
        for stream, records in self.pending.items():
            definition = self.manifest.stream(stream)
            assert definition is not None
            writes.append(
                StreamBatch(definition, records, self.runtime.catalog.record_rule(stream))
            )
        self.pending, self.pending_count = {}, 0
        return writes

    def _count(self, stats: BatchStats) -> None:
        tally = self.outcome.tally
        tally.new += stats.new
        tally.updated += stats.updated
        tally.duplicate += stats.duplicate
        tally.deleted += stats.deleted
        tally.skipped += stats.skipped
        tally.merged_with_existing += stats.merged_with_existing
        self.ambiguous += stats.ambiguous
        if stats.window_start is not None and stats.window_end is not None:
            low, high = stats.window_start, stats.window_end
            if self.window is not None:
                low, high = min(low, self.window[0]), max(high, self.window[1])
            self.window = (low, high)

    def _flush(self) -> None:
        if not self.pending_count:
            return
        acquisition = self._stage()
        self._count(self.store.commit_batch(acquisition, self._writes()))

    # the stage ----------------------------------------------------------------------------------
    @abstractmethod
    def _stage(self) -> Acquisition:
        """The stage records go to, started on first need."""

    def _begin(self, binding: Binding, batch_id: str | None = None) -> Acquisition:
        acquisition = self.store.start_stage(
            binding,
            connector_key=self.manifest.connector_key,
            acquisition_method=self.manifest.acquisition_method,
            trigger=self.outcome.trigger,
            collection_mode=self.outcome.collection_mode,
            holder=self.runtime.holder,
            run_id=self.outcome.run_id or self.runtime.new_run_id(),
            batch_id=batch_id,
        )
        self.acquisition = acquisition
        self.outcome.run_id = acquisition.run_id
        self.outcome.connection_id = acquisition.connection_id
        self.outcome.binding = binding
        self.heartbeat = Heartbeat(
            self.store, acquisition, self.runtime.heartbeat_seconds, self._lease_lost
        )
        self.heartbeat.start()
        log.info(
            "%s %s of %s (%s) started",
            self.outcome.trigger,
            acquisition.run_id,
            acquisition.connection_id,
            acquisition.connector_key,
        )
        return acquisition

    def _ended(self, published: bool) -> None:
        if any(s.blob_fields for s in self.manifest.streams):
            try:
                self.runtime.blobs.collect(self.store)
            except Exception:
                # the files stay until a worker pass collects them; the run's outcome stands
                log.exception("collecting blobs after %s failed", self.outcome.run_id)
        tally = self.outcome.tally
        log.log(
            logging.INFO if self.outcome.status == "succeeded" else logging.WARNING,
            "%s %s of %s %s (%s): new %d, updated %d, duplicate %d, deleted %d, rejected %d",
            self.outcome.trigger,
            self.outcome.run_id,
            self.outcome.connection_id,
            self.outcome.status,
            "published" if published else "nothing kept",
            tally.new,
            tally.updated,
            tally.duplicate,
            tally.deleted,
            tally.rejected,
        )

    def _lease_lost(self) -> None:
        if self.transport is not None:
            self.transport.kill()

    def _stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()

    @abstractmethod
    def _end(self, done: Done) -> RunOutcome:
        """End the stage as DONE says."""

    def _refused(self, exc: IdentityMismatch | ProtocolViolation) -> RunOutcome:
        return self._stop(exc.code, exc.message)

    def _failure_gap(self, code: str, message: str, action: str) -> None:
        self.outcome.known_gaps.append(
            KnownGap(
                kind="run_failed",
                reason=code,
                message=message,
                connector_key=self.manifest.connector_key,
                acquisition_method=self.manifest.acquisition_method,
                severity="actionable",
                recovery_action=action,
            )
        )

    def _checkpoint(self, committed: bool) -> dict[str, Any]:
        staged = sorted(self.staged_states)
        return {
            "commit_status": "committed" if committed else "not_committed",
            "state_streams_staged": staged,
            "state_streams_committed": staged if committed else [],
        }

    def _publication(self, status: RunStatus, *, succeeded: bool, **extra: Any) -> Publication:
        outcome = self.outcome
        if self.ambiguous:
            outcome.known_gaps.append(
                KnownGap(
                    kind="ambiguous_match",
                    reason="ambiguous_match",
                    message=f"{self.ambiguous} coarse records could be the same event as "
                    "several precise ones; each was kept as a record of its own",
                    connector_key=self.manifest.connector_key,
                    acquisition_method=self.manifest.acquisition_method,
                    severity="informational",
                    recovery_action="not_retriable",
                )
            )
        return Publication(
            status=status,
            counts=outcome.tally.to_dict(),
            known_gaps=[g.to_dict() for g in outcome.known_gaps],
            checkpoint=outcome.checkpoint,
            error=outcome.error,
            states=self.staged_states if succeeded else None,
            **extra,
        )

    def _stop(
        self,
        code: str,
        message: str,
        *,
        status: RunStatus = "failed",
        publish: bool = True,
        action: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> RunOutcome:
        """End the stage early: publish what was flushed (a run), or abandon it."""
        outcome = self.outcome
        outcome.status = status
        outcome.error = error or {"code": code, "message": message}
        if action is None:
            upgrade = code == "protocol_violation"
            action = "retry_on_connector_upgrade" if upgrade else "manual_action_required"
        self._failure_gap(code, message, action)
        outcome.checkpoint = self._checkpoint(False)
        self.pending, self.pending_count = {}, 0
        if self.acquisition is not None:
            if publish:
                self.store.publish(self.acquisition, self._publication(status, succeeded=False))
            else:
                self.store.abandon(self.acquisition, outcome.error)
            self._ended(publish)
        return outcome


class RunSession(Session):
    """A run of an existing connection's API path: its stage starts before the connector."""

    def begin(self, run_id: str) -> None:
        assert self.connection is not None
        self.outcome.run_id = run_id
        self._begin(Binding(self.connection.connection_id))

    def _stage(self) -> Acquisition:
        assert self.acquisition is not None
        return self.acquisition

    def _store_credentials(self, handed_back: Credentials) -> None:
        acquisition, vault = self._stage(), self.runtime.vault
        self.store.save_run_credentials(
            acquisition,
            {
                name: (
                    vault.seal(acquisition.connection_id, acquisition.connector_key, name, value),
                    fingerprint(value),
                )
                for name, value in handed_back.secrets.items()
            },
        )
        self.outcome.credentials_stored = sorted(
            {*self.outcome.credentials_stored, *handed_back.names}
        )

    def _end(self, done: Done) -> RunOutcome:
        outcome = self.outcome
        acquisition = self._stage()
        succeeded = done.status == "succeeded"
        if not succeeded:
            error = done.error or {}
            hint = error.get("recovery_hint")
            action = hint.get("action") if isinstance(hint, dict) else hint
            outcome.error = public_error(error) or {"message": f"the connector {done.status}"}
            self._failure_gap(
                str(error.get("code") or "run_failed"),
                str(error.get("message") or f"the run {done.status}"),
                str(action or "unknown"),
            )
            self.pending, self.pending_count = {}, 0
        status = _run_status(done.status)
        outcome.status = status
        outcome.checkpoint = self._checkpoint(succeeded)
        if succeeded:
            self._flush()  # the last batch; nothing is visible until the publication below
        self.store.publish(acquisition, self._publication(status, succeeded=succeeded))
        outcome.window = self.window or (None, None)
        self._ended(True)
        return outcome


class ImportSession(Session):
    """An import: the connection is resolved at the first data message (from the archive's
    IDENTITY, or its absence), and the stage is published only if the import succeeds."""

    def __init__(
        self,
        runtime: Runtime,
        manifest: ConnectorManifest,
        *,
        artifact: ArtifactInfo,
        batch_id: str,
        requested_connection_id: str | None,
        allow_recreate: bool,
    ) -> None:
        super().__init__(runtime, manifest, "full_refresh", "import", None)
        self.artifact = artifact
        self.batch_id = batch_id
        self.requested_connection_id = requested_connection_id
        self.allow_recreate = allow_recreate

    def _stage(self) -> Acquisition:
        if self.acquisition is not None:
            return self.acquisition
        resolver = self.runtime.resolver
        resolution = resolver.resolve(
            self.manifest, self.evidence, self.requested_connection_id, self.allow_recreate
        )
        binding = resolver.binding(
            self.manifest, resolution, display_name=None, seed=self.artifact.sha256
        )
        self.outcome.created_connection = binding.create is not None
        return self._begin(binding, self.batch_id)

    def _store_credentials(self, handed_back: Credentials) -> None:
        raise ProtocolViolation(
            f"CREDENTIALS in an import: {self.manifest.connector_key} has no connection "
            "credentials to update"
        )

    def _refused(self, exc: IdentityMismatch | ProtocolViolation) -> RunOutcome:
        if isinstance(exc, IdentityMismatch):
            raise exc  # refused before anything is stored: the typed error
        return self._stop(exc.code, exc.message, publish=False)

    def _end(self, done: Done) -> RunOutcome:
        outcome = self.outcome
        if done.status != "succeeded":
            error = done.error or {}
            hint = error.get("recovery_hint")
            action = hint.get("action") if isinstance(hint, dict) else hint
            return self._stop(
                str(error.get("code") or "run_failed"),
                str(error.get("message") or f"the import {done.status}"),
                status=_run_status(done.status),
                publish=False,
                action=str(action or "unknown"),
                error=public_error(error) or None,
            )
        acquisition = self._stage()
        outcome.status = "succeeded"
        outcome.checkpoint = self._checkpoint(True)
        # the last batch goes first, so the receipt's counts and window include it
        self._flush()
        outcome.window = self.window or (None, None)
        receipt = self.runtime.receipt(self, acquisition)
        publication = self._publication(
            "succeeded", succeeded=True, receipt=receipt, binding=outcome.binding
        )
        self.store.publish(acquisition, publication)
        self._ended(True)
        return outcome


def _run_status(status: str) -> RunStatus:
    if status == "succeeded":
        return "succeeded"
    return "cancelled" if status == "cancelled" else "failed"
