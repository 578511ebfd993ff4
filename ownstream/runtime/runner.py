"""The run lifecycle: resolve the connection, validate every message, batch, commit, checkpoint.

Commit rules (see docs/protocol.md):
- records are committed in batches as the run goes; a STATE flushes its stream's records first;
- staged checkpoints are committed only at DONE succeeded, in the same transaction as the last
  batch; a failed, crashed or cancelled run commits no state and discards unflushed records;
- an import is one transaction: its connection (if new), records, run and receipt commit
  together or not at all.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ownstream.clock import now_iso, random_id, stable_id
from ownstream.credentials import Vault, fingerprint
from ownstream.errors import (
    ArtifactAlreadyImported,
    ConnectionNotWritable,
    ConnectorNotRunnable,
    CredentialUnavailable,
    IdentityMismatch,
    InvalidArtifact,
    InvalidRequest,
    OwnstreamError,
    ProtocolViolation,
    RunFailed,
    RunLeaseLost,
)
from ownstream.identity import Resolution, ResolutionContext, resolve
from ownstream.model import (
    Acquisition,
    ArtifactInfo,
    Connection,
    ConnectionIdentity,
    ConnectorManifest,
    IdentityEvidence,
    KnownGap,
    RecordWrite,
    RunCounts,
    StreamDefinition,
)
from ownstream.registry import Catalog
from ownstream.runtime.process import Transport, open_transport
from ownstream.runtime.protocol import MessageValidator, Parsed, Rejection
from ownstream.store.base import BatchReceipt, Store, WriteStats

ProgressCallback = Callable[[dict[str, Any]], None]
BATCH_SIZE = 5000
DONE_GRACE_SECONDS = 10.0  # how long a connector may take to exit after DONE
MAX_REPORTED_REJECTIONS = 20


@dataclass
class RunOutcome:
    """What one run did; rendered by the CLI and the owner API."""

    run_id: str | None
    connection_id: str | None
    connector_key: str
    acquisition_method: str
    status: str
    collection_mode: str
    trigger: str
    counts: RunCounts = field(default_factory=RunCounts)
    known_gaps: list[KnownGap] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    identity: IdentityEvidence | None = None
    created_connection: bool = False
    window: tuple[str, str] | tuple[None, None] = (None, None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "connection_id": self.connection_id,
            "connector_key": self.connector_key,
            "acquisition_method": self.acquisition_method,
            "status": self.status,
            "collection_mode": self.collection_mode,
            "trigger": self.trigger,
            "counts": self.counts.to_dict(),
            "known_gaps": [g.to_dict() for g in self.known_gaps],
            "rejections": [r.__dict__ for r in self.rejections],
            "checkpoint": self.checkpoint,
            "error": self.error,
        }


@dataclass(frozen=True)
class ImportResult:
    status: str  # committed | duplicate
    receipt: BatchReceipt
    outcome: RunOutcome | None

    def to_dict(self) -> dict[str, Any]:
        receipt = self.receipt
        return {
            "status": self.status,
            "connection_id": receipt.connection_id,
            "batch_id": receipt.batch_id,
            "run_id": receipt.run_id,
            "connector_key": receipt.connector_key,
            "acquisition_method": receipt.acquisition_method,
            "parser_version": receipt.parser_version,
            "artifact": {
                "name": receipt.artifact_name,
                "sha256": receipt.artifact_sha256,
                "size_bytes": receipt.artifact_size,
            },
            "counts": receipt.counts,
            "window": {"start": receipt.window_start, "end": receipt.window_end},
            "warnings": receipt.warnings,
            "created_at": receipt.created_at,
            "known_gaps": [g.to_dict() for g in self.outcome.known_gaps] if self.outcome else [],
            "rejections": [r.__dict__ for r in self.outcome.rejections] if self.outcome else [],
        }


@dataclass(frozen=True)
class ConnectResult:
    connection: Connection
    created: bool
    identity: IdentityEvidence | None


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def artifact_info(path: Path) -> ArtifactInfo:
    """Hash a file, or a folder's files in a stable order, without loading them."""
    if not path.exists():
        raise InvalidArtifact(f"no file or folder at {path}", param="path")
    if path.is_file():
        digest, size = sha256_file(path)
        return ArtifactInfo(str(path.resolve()), path.name, digest, size)
    tree = hashlib.sha256()
    total = 0
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        file_digest, size = sha256_file(item)
        tree.update(f"{item.relative_to(path).as_posix()}\0{file_digest}\n".encode())
        total += size
    return ArtifactInfo(str(path.resolve()), path.name, tree.hexdigest(), total)


class Runtime:
    """Runs connectors for one owner against one store and catalog."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        vault: Vault,
        *,
        owner_id: str = "owner",
        batch_size: int = BATCH_SIZE,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.vault = vault
        self.owner_id = owner_id
        self.batch_size = batch_size
        self.on_progress = on_progress

    # connect --------------------------------------------------------------------------------
    def connect(
        self,
        connector_key: str,
        *,
        secrets: dict[str, str],
        settings: dict[str, str],
        display_name: str | None = None,
        connection_id: str | None = None,
        allow_recreate: bool = False,
    ) -> ConnectResult:
        """Learn the account's identity with a probe run, then resolve or create the connection."""
        manifest = self.catalog.manifest(connector_key)
        if manifest.acquisition_method == "owner_artifact":
            raise InvalidRequest(
                f"{connector_key} imports archives; use `ownstream import {connector_key} PATH`",
                param="connector_key",
            )
        self._check_setup_names(manifest, secrets, settings)
        env = self._env(manifest, {**self._defaults(manifest), **settings}, secrets)
        start = self._start_message("probe", "identify", manifest, None)
        evidence = self._probe(manifest, start, env)
        with self.store.transaction():
            resolution = self._resolve(manifest, evidence, connection_id, allow_recreate)
            connection, created = self._materialize(
                manifest, resolution, display_name=display_name, seed=random_id("seed")
            )
            sealed = {
                name: (
                    self.vault.seal(connection.connection_id, connector_key, name, value),
                    fingerprint(value),
                )
                for name, value in secrets.items()
            }
            self.store.save_connection_config(
                connection.connection_id, connector_key, settings, sealed
            )
            if display_name and not created:
                connection = self.store.rename_connection(connection.connection_id, display_name)
        return ConnectResult(self.store.connection(connection.connection_id), created, evidence)

    def _probe(
        self, manifest: ConnectorManifest, start: dict[str, Any], env: dict[str, str]
    ) -> IdentityEvidence | None:
        validator = MessageValidator(manifest, (), identify_only=True)
        transport = open_transport(manifest, start, env)
        evidence = None
        try:
            lines = iter(transport.lines())
            for line in lines:
                parsed = validator.parse_line(line)
                if parsed.evidence is not None:
                    evidence = parsed.evidence
                if parsed.done is not None:
                    _expect_end(transport, lines, validator)
                    if parsed.done.status != "succeeded":
                        error = parsed.done.error or {}
                        raise RunFailed(
                            f"{manifest.connector_key} could not verify the connection: "
                            f"{error.get('message', 'the probe failed')}",
                            connector_error=_public_error(error),
                        )
                    return evidence
        finally:
            transport.close()
        raise ProtocolViolation(
            f"{manifest.connector_key} exited (code {transport.exit_code}) before DONE",
            stderr=transport.stderr_tail,
        )

    @staticmethod
    def _check_setup_names(
        manifest: ConnectorManifest, secrets: dict[str, str], settings: dict[str, str]
    ) -> None:
        known_secrets = {s.name for s in manifest.secrets}
        known_settings = {s.name for s in manifest.settings}
        for name in secrets:
            if name not in known_secrets:
                raise InvalidRequest(
                    f"{manifest.connector_key} has no secret {name!r} "
                    f"(it takes: {', '.join(sorted(known_secrets)) or 'none'})",
                    param="secret",
                )
        for name in settings:
            if name not in known_settings:
                raise InvalidRequest(
                    f"{manifest.connector_key} has no setting {name!r} "
                    f"(it takes: {', '.join(sorted(known_settings)) or 'none'})",
                    param="setting",
                )
        missing = [s.name for s in manifest.secrets if s.required and s.name not in secrets]
        if missing:
            raise CredentialUnavailable(
                f"{manifest.connector_key} needs the secret(s) {', '.join(missing)}",
                param="secret",
            )

    # runs -----------------------------------------------------------------------------------
    def runnable_paths(
        self, connection_id: str, connector_key: str | None = None
    ) -> tuple[Connection, list[ConnectorManifest]]:
        """The paths a run of this connection would execute, checked before anything starts:
        the connection is writable, the paths can run here, and their credentials exist."""
        connection = self.store.connection(connection_id)
        if connection.status == "revoked":
            raise ConnectionNotWritable(
                f"connection {connection_id} is revoked; reactivate it to collect",
                connection_id=connection_id,
            )
        paths = [p for p in connection.paths if p.acquisition_method != "owner_artifact"]
        if connector_key is not None:
            paths = [p for p in connection.paths if p.connector_key == connector_key]
            if not paths:
                raise ConnectorNotRunnable(
                    f"connection {connection_id} has no {connector_key} path",
                    param="connector_key",
                )
            if paths[0].acquisition_method == "owner_artifact":
                raise ConnectorNotRunnable(
                    f"{connector_key} imports archives; use `ownstream import`",
                    param="connector_key",
                )
        if not paths:
            raise ConnectorNotRunnable(
                f"connection {connection_id} has no runnable path (only imports); "
                "import a newer archive instead",
            )
        manifests = [self.catalog.manifest(p.connector_key) for p in paths]
        for manifest in manifests:
            self._connection_env(connection_id, manifest)
        return connection, manifests

    def run_connection(
        self,
        connection_id: str,
        *,
        connector_key: str | None = None,
        trigger: str = "manual",
        run_ids: list[str] | None = None,
    ) -> list[RunOutcome]:
        """Run a connection's runnable (non-artifact) paths, or the one `connector_key` names.

        `run_ids`, when given, names the runs in advance (an API answers 202 with them)."""
        connection, manifests = self.runnable_paths(connection_id, connector_key)
        ids = run_ids or [random_id("run") for _ in manifests]
        return [
            self._run_path(connection, manifest, trigger, run_id)
            for manifest, run_id in zip(manifests, ids, strict=False)
        ]

    def _run_path(
        self, connection: Connection, manifest: ConnectorManifest, trigger: str, run_id: str
    ) -> RunOutcome:
        env = self._connection_env(connection.connection_id, manifest)
        state = self.store.connection_state(connection.connection_id, manifest.connector_key)
        mode = "incremental" if state else "full_refresh"
        acquisition = self.store.start_run(
            connection_id=connection.connection_id,
            connector_key=manifest.connector_key,
            acquisition_method=manifest.acquisition_method,
            trigger=trigger,
            collection_mode=mode,
            run_id=run_id,
        )
        start = self._start_message(acquisition.run_id, mode, manifest, state)
        session = _Session(self, manifest, mode, trigger, connection=connection)
        session.acquisition = acquisition
        return session.execute(start, env)

    def _connection_env(self, connection_id: str, manifest: ConnectorManifest) -> dict[str, str]:
        settings, sealed = self.store.connection_config(connection_id, manifest.connector_key)
        missing = [s.name for s in manifest.secrets if s.required and s.name not in sealed]
        if missing:
            raise CredentialUnavailable(
                f"connection {connection_id} has no stored {', '.join(missing)} for "
                f"{manifest.connector_key}; reconnect it with `ownstream connect "
                f"{manifest.connector_key} --connection {connection_id} --secret …`",
                connection_id=connection_id,
            )
        secrets = {
            name: self.vault.open(connection_id, manifest.connector_key, name, value)
            for name, value in sealed.items()
        }
        return self._env(manifest, {**self._defaults(manifest), **settings}, secrets)

    @staticmethod
    def _defaults(manifest: ConnectorManifest) -> dict[str, str]:
        return {s.name: s.default for s in manifest.settings if s.default is not None}

    @staticmethod
    def _env(
        manifest: ConnectorManifest, settings: dict[str, str], secrets: dict[str, str]
    ) -> dict[str, str]:
        env = {s.env: settings[s.name] for s in manifest.settings if s.name in settings}
        env.update({s.env: secrets[s.name] for s in manifest.secrets if s.name in secrets})
        return env

    @staticmethod
    def _start_message(
        run_id: str,
        mode: str,
        manifest: ConnectorManifest,
        state: dict[str, Any] | None,
        artifact: ArtifactInfo | None = None,
    ) -> dict[str, Any]:
        start: dict[str, Any] = {
            "type": "START",
            "run_id": run_id,
            "collection_mode": mode,
            "scope": {"streams": [{"name": s.name} for s in manifest.streams]},
            "state": state or None,
        }
        if artifact is not None:
            start["artifact"] = {
                "path": artifact.path,
                "name": artifact.name,
                "sha256": artifact.sha256,
            }
        return start

    # imports --------------------------------------------------------------------------------
    def import_artifact(
        self,
        connector_key: str,
        path: Path,
        *,
        connection_id: str | None = None,
        allow_recreate: bool = False,
    ) -> ImportResult:
        manifest = self.catalog.manifest(connector_key)
        if manifest.acquisition_method != "owner_artifact":
            raise InvalidRequest(
                f"{connector_key} does not import archives (it is {manifest.acquisition_method})",
                param="connector_key",
            )
        artifact = artifact_info(path)
        for earlier in self.store.batches(
            connector_key=connector_key, artifact_sha256=artifact.sha256
        ):
            if connection_id is not None and earlier.connection_id != connection_id:
                raise ArtifactAlreadyImported(
                    f"these bytes were already imported into connection {earlier.connection_id} "
                    f"(batch {earlier.batch_id}); they cannot also be imported into "
                    f"{connection_id}",
                    batch_id=earlier.batch_id,
                    connection_id=earlier.connection_id,
                )
            return ImportResult("duplicate", earlier, None)
        if connection_id is not None:
            self.store.connection(connection_id)
        batch_id = stable_id("ab", self.owner_id, connector_key, artifact.sha256)
        start = self._start_message(batch_id, "full_refresh", manifest, None, artifact)
        session = _Session(
            self,
            manifest,
            "full_refresh",
            "import",
            requested_connection_id=connection_id,
            allow_recreate=allow_recreate,
            artifact=artifact,
            batch_id=batch_id,
        )
        try:
            with self.store.transaction():
                outcome = session.execute(start, self._env(manifest, self._defaults(manifest), {}))
                if outcome.status != "succeeded":
                    raise _ImportFailed(outcome)
                assert outcome.connection_id is not None and outcome.run_id is not None
                counts = outcome.counts
                receipt = BatchReceipt(
                    batch_id=batch_id,
                    run_id=outcome.run_id,
                    connection_id=outcome.connection_id,
                    connector_key=connector_key,
                    acquisition_method=manifest.acquisition_method,
                    parser_version=manifest.version,
                    artifact_sha256=artifact.sha256,
                    artifact_name=artifact.name,
                    artifact_size=artifact.size_bytes,
                    status="committed",
                    counts={
                        "parsed": counts.emitted,
                        "accepted": counts.accepted,
                        "new": counts.inserted,
                        "updated": counts.updated,
                        "duplicate": counts.unchanged,
                        "skipped": counts.delete_deferred,
                        "failed": counts.rejected,
                    },
                    window_start=outcome.window[0],
                    window_end=outcome.window[1],
                    warnings=[
                        g.message for g in outcome.known_gaps if g.reason == "file_not_modelled"
                    ],
                    created_at=now_iso(),
                )
                self.store.save_batch(receipt)
        except _ImportFailed as failed:
            error = failed.outcome.error or {}
            raise RunFailed(
                f"import failed, nothing was stored: {error.get('message', failed.outcome.status)}",
                connector_error=error,
                known_gaps=[g.to_dict() for g in failed.outcome.known_gaps],
            ) from None
        return ImportResult("committed", receipt, outcome)

    # shared pieces ---------------------------------------------------------------------------
    def _resolve(
        self,
        manifest: ConnectorManifest,
        evidence: IdentityEvidence | None,
        requested_connection_id: str | None,
        allow_recreate: bool,
    ) -> Resolution:
        tombstoned = evidence is not None and self.store.identity_tombstoned(
            self.owner_id,
            manifest.source,
            evidence.claim,
            evidence.value,
            self.catalog.linked_connectors(manifest.connector_key, evidence.claim),
        )
        return resolve(
            ResolutionContext(
                manifest=manifest,
                evidence=evidence,
                connections=tuple(self.store.connections(source=manifest.source)),
                rules=tuple(self.catalog.rules.values()),
                tombstoned=tombstoned,
                requested_connection_id=requested_connection_id,
                allow_recreate=allow_recreate,
            )
        )

    def _materialize(
        self,
        manifest: ConnectorManifest,
        resolution: Resolution,
        *,
        display_name: str | None,
        seed: str,
    ) -> tuple[Connection, bool]:
        """Create the resolved connection (if new) and attach this path to it."""
        evidence = resolution.evidence
        created = resolution.action == "create"
        if created:
            identity = (
                ConnectionIdentity(
                    evidence.claim, evidence.value, manifest.connector_key, None, now_iso()
                )
                if evidence is not None
                else None
            )
            label = display_name or _placeholder_label(manifest, evidence)
            connection = self.store.create_connection(
                owner_id=self.owner_id,
                source=manifest.source,
                display_name=label,
                display_name_is_placeholder=display_name is None,
                identity=identity,
                seed=seed,
            )
        else:
            assert resolution.connection_id is not None
            connection = self.store.connection(resolution.connection_id)
        if created or resolution.attach_path:
            self.store.attach_path(
                connection.connection_id,
                connector_key=manifest.connector_key,
                acquisition_method=manifest.acquisition_method,
                proved_identity=evidence is not None,
                rule_id=resolution.rule_id,
            )
            connection = self.store.connection(connection.connection_id)
        return connection, created

    def progress(self, event: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(event)


def _expect_end(
    transport: Transport, lines: Iterator[bytes], validator: MessageValidator
) -> None:
    """DONE is the last message: read the rest of the output and fail on anything in it.

    A connector that keeps its output open after DONE is stopped after a grace period.
    """
    timer = threading.Timer(DONE_GRACE_SECONDS, transport.kill)
    timer.daemon = True
    timer.start()
    try:
        for line in lines:
            validator.parse_line(line)  # the validator has seen DONE: any message violates
    finally:
        timer.cancel()


def _placeholder_label(manifest: ConnectorManifest, evidence: IdentityEvidence | None) -> str:
    suffix = evidence.value if evidence is not None else "unidentified source"
    return f"{manifest.display_name} · {suffix}"


def _public_error(error: dict[str, Any]) -> dict[str, Any]:
    return {k: error[k] for k in ("code", "message", "retryable", "recovery_hint") if k in error}


class _ImportFailed(Exception):
    """Raised inside the import transaction so it rolls back; carries the outcome."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


class _Session:
    """One run or import: consumes a transport's lines and drives the store."""

    def __init__(
        self,
        runtime: Runtime,
        manifest: ConnectorManifest,
        mode: str,
        trigger: str,
        *,
        connection: Connection | None = None,
        requested_connection_id: str | None = None,
        allow_recreate: bool = False,
        artifact: ArtifactInfo | None = None,
        batch_id: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.manifest = manifest
        self.connection = connection
        self.requested_connection_id = requested_connection_id
        self.allow_recreate = allow_recreate
        self.artifact = artifact
        self.batch_id = batch_id
        self.acquisition: Acquisition | None = None
        self.validator = MessageValidator(manifest, tuple(s.name for s in manifest.streams))
        self.pending: dict[str, list[RecordWrite]] = {}
        self.pending_count = 0
        self.staged_states: dict[str, Any] = {}
        self.evidence: IdentityEvidence | None = None
        self.window: tuple[str, str] | None = None
        self.outcome = RunOutcome(
            run_id=None,
            connection_id=connection.connection_id if connection else None,
            connector_key=manifest.connector_key,
            acquisition_method=manifest.acquisition_method,
            status="running",
            collection_mode=mode,
            trigger=trigger,
        )

    def execute(self, start: dict[str, Any], env: dict[str, str]) -> RunOutcome:
        outcome = self.outcome
        if self.acquisition is not None:
            outcome.run_id = self.acquisition.run_id
        with ExitStack() as stack:
            try:
                transport = open_transport(self.manifest, start, env)
            except OwnstreamError as exc:
                return self._fail(exc.code, exc.message)
            stack.callback(transport.close)
            try:
                done = None
                lines = iter(transport.lines())
                for line in lines:
                    parsed = self.validator.parse_line(line)
                    if parsed.done is not None:
                        done = parsed
                        break
                    self._handle(parsed)
                if done is None:
                    transport.close()
                    raise ProtocolViolation(
                        f"the connector exited (code {transport.exit_code}) before DONE",
                        stderr=transport.stderr_tail,
                    )
                _expect_end(transport, lines, self.validator)
                return self._finish(done)
            except IdentityMismatch as exc:
                if self.artifact is not None:
                    raise  # an import refused before anything is stored: the typed error
                return self._fail(exc.code, exc.message)
            except ProtocolViolation as exc:
                return self._fail(exc.code, exc.message)
            except RunLeaseLost as exc:
                # Another run owns the connection now (or it was deleted): write nothing more.
                self.outcome.status = "failed"
                self.outcome.error = {"code": exc.code, "message": exc.message}
                return self.outcome
            except (KeyboardInterrupt, SystemExit):
                self._fail("cancelled", "the run was interrupted", status="cancelled")
                raise
            except Exception as exc:
                # Unexpected (a store failure, say): end the run and free its lease, then report.
                if self.artifact is None and self.acquisition is not None:
                    with suppress(Exception):
                        self._fail("internal_error", f"{type(exc).__name__}: {exc}")
                raise

    def _handle(self, parsed: Parsed) -> None:
        if parsed.kind == "identity":
            self.evidence = parsed.evidence
            self.outcome.identity = parsed.evidence
            self._check_identity()
            return
        if parsed.kind in ("record", "rejected", "state"):
            self._require_identity()
            self._ensure_acquisition()
        if parsed.kind == "record":
            assert parsed.record is not None
            self.outcome.counts.emitted += 1
            self.outcome.counts.accepted += 1
            self.pending.setdefault(parsed.record.stream, []).append(parsed.record)
            self.pending_count += 1
            if self.pending_count >= self.runtime.batch_size:
                self._flush()
        elif parsed.kind == "rejected":
            assert parsed.rejection is not None
            self.outcome.counts.emitted += 1
            self.outcome.counts.rejected += 1
            if len(self.outcome.rejections) < MAX_REPORTED_REJECTIONS:
                self.outcome.rejections.append(parsed.rejection)
        elif parsed.kind == "state":
            assert parsed.state is not None
            self._flush()
            self.staged_states[parsed.state[0]] = parsed.state[1]
        elif parsed.kind == "gap":
            assert parsed.gap is not None
            gap = parsed.gap
            informational = gap["recovery_action"] == "not_retriable" and gap["stream"] is None
            self.outcome.known_gaps.append(
                KnownGap(
                    kind="skip_result",
                    reason=gap["reason"],
                    message=gap["message"],
                    connector_key=self.manifest.connector_key,
                    acquisition_method=self.manifest.acquisition_method,
                    stream=gap["stream"],
                    severity="informational" if informational else "recoverable",
                    recovery_action=gap["recovery_action"],
                )
            )
        elif parsed.kind == "progress":
            assert parsed.progress is not None
            self.runtime.progress(
                {
                    **parsed.progress,
                    "connector_key": self.manifest.connector_key,
                    "records": self.outcome.counts.emitted,
                }
            )

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

    def _require_identity(self) -> None:
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

    def _ensure_acquisition(self) -> Acquisition:
        """For an import: resolve (and maybe create) the connection at the first data message."""
        if self.acquisition is not None:
            return self.acquisition
        runtime = self.runtime
        resolution = runtime._resolve(
            self.manifest, self.evidence, self.requested_connection_id, self.allow_recreate
        )
        assert self.artifact is not None
        connection, created = runtime._materialize(
            self.manifest, resolution, display_name=None, seed=self.artifact.sha256
        )
        self.connection = connection
        self.outcome.connection_id = connection.connection_id
        self.outcome.created_connection = created
        self.acquisition = self.store.start_run(
            connection_id=connection.connection_id,
            connector_key=self.manifest.connector_key,
            acquisition_method=self.manifest.acquisition_method,
            trigger=self.outcome.trigger,
            collection_mode=self.outcome.collection_mode,
            batch_id=self.batch_id,
        )
        self.outcome.run_id = self.acquisition.run_id
        return self.acquisition

    def _writes(self) -> list[tuple[StreamDefinition, list[RecordWrite]]]:
        writes = []
        for stream, records in self.pending.items():
            definition = self.manifest.stream(stream)
            assert definition is not None
            writes.append((definition, records))
        self.pending, self.pending_count = {}, 0
        return writes

    def _count(self, stats: WriteStats) -> None:
        counts = self.outcome.counts
        counts.inserted += stats.inserted
        counts.updated += stats.updated
        counts.unchanged += stats.unchanged
        counts.deleted += stats.deleted
        counts.delete_deferred += stats.delete_deferred
        if stats.window_start is not None and stats.window_end is not None:
            low, high = stats.window_start, stats.window_end
            if self.window is not None:
                low, high = min(low, self.window[0]), max(high, self.window[1])
            self.window = (low, high)

    def _flush(self) -> None:
        if not self.pending_count:
            return
        acquisition = self._ensure_acquisition()
        self._count(self.store.commit_batch(acquisition, self._writes()))

    def _finish(self, parsed: Parsed) -> RunOutcome:
        assert parsed.done is not None
        done, outcome = parsed.done, self.outcome
        acquisition = self._ensure_acquisition()
        succeeded = done.status == "succeeded"
        if not succeeded:
            error = done.error or {}
            hint = error.get("recovery_hint")
            action = hint.get("action") if isinstance(hint, dict) else hint
            outcome.error = _public_error(error) or {"message": f"the connector {done.status}"}
            outcome.known_gaps.append(
                KnownGap(
                    kind="run_failed",
                    reason=str(error.get("code") or "run_failed"),
                    message=str(error.get("message") or f"the run {done.status}"),
                    connector_key=self.manifest.connector_key,
                    acquisition_method=self.manifest.acquisition_method,
                    severity="actionable",
                    recovery_action=str(action or "unknown"),
                )
            )
            self.pending, self.pending_count = {}, 0
        outcome.status = done.status
        staged = sorted(self.staged_states)
        outcome.checkpoint = {
            "commit_status": "committed" if succeeded else "not_committed",
            "state_streams_staged": staged,
            "state_streams_committed": staged if succeeded else [],
        }
        stats = self.store.finish_run(
            acquisition,
            status=done.status,
            counts=outcome.counts.to_dict(),
            known_gaps=[g.to_dict() for g in outcome.known_gaps],
            checkpoint=outcome.checkpoint,
            error=outcome.error,
            states=self.staged_states if succeeded else None,
            last_writes=self._writes() if succeeded else (),
        )
        self._count(stats)
        outcome.window = self.window or (None, None)
        return outcome

    def _fail(self, code: str, message: str, *, status: str = "failed") -> RunOutcome:
        outcome = self.outcome
        outcome.status = status
        outcome.error = {"code": code, "message": message}
        outcome.known_gaps.append(
            KnownGap(
                kind="run_failed",
                reason=code,
                message=message,
                connector_key=self.manifest.connector_key,
                acquisition_method=self.manifest.acquisition_method,
                severity="actionable",
                recovery_action="retry_on_connector_upgrade"
                if code == "protocol_violation"
                else "manual_action_required",
            )
        )
        outcome.checkpoint = {
            "commit_status": "not_committed",
            "state_streams_staged": sorted(self.staged_states),
            "state_streams_committed": [],
        }
        self.pending, self.pending_count = {}, 0
        if self.acquisition is not None and self.artifact is None:
            self.store.finish_run(
                self.acquisition,
                status=status,
                counts=outcome.counts.to_dict(),
                known_gaps=[g.to_dict() for g in outcome.known_gaps],
                checkpoint=outcome.checkpoint,
                error=outcome.error,
                states=None,
            )
        return outcome
