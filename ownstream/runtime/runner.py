"""The runtime: connect (probe an account), run a connection's API paths, import archives.

`session.py` holds the commit rules of one run or import; `resolver.py` decides which
connection it writes through; this module starts them with the connection's own secrets and
settings, and nothing else of the server's environment.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ownstream.blobs import BlobStore
from ownstream.clock import now_iso, random_id, stable_id
from ownstream.credentials import Vault, fingerprint
from ownstream.errors import (
    ArtifactAlreadyImported,
    ConnectionNotWritable,
    ConnectorNotRunnable,
    CredentialUnavailable,
    InvalidArtifact,
    InvalidRequest,
    ProtocolViolation,
    RunFailed,
)
from ownstream.model import (
    Acquisition,
    ArtifactInfo,
    Connection,
    ConnectorManifest,
    IdentityEvidence,
)
from ownstream.registry import Catalog
from ownstream.runtime.process import open_transport
from ownstream.runtime.protocol import Credentials, Done, Identity, MessageValidator
from ownstream.runtime.resolver import Resolver
from ownstream.runtime.session import (
    ImportSession,
    RunOutcome,
    RunSession,
    expect_end,
    public_error,
)
from ownstream.store.base import BatchReceipt, Store

ProgressCallback = Callable[[dict[str, Any]], None]
BATCH_SIZE = 3000  # records per batch (see docs/protocol.md, commit rules)
HEARTBEATS_PER_LEASE = 4  # a lease survives a few missed beats (a busy database) before it lapses


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
            "connection": self.joined(),
            "known_gaps": [g.to_dict() for g in self.outcome.known_gaps] if self.outcome else [],
        }

    def joined(self) -> dict[str, Any]:
        """Which connection the import wrote through, and why."""
        outcome = self.outcome
        if outcome is None:
            return {"action": "duplicate", "reason": "these bytes were imported before"}
        binding, evidence = outcome.binding, outcome.identity
        proof = (
            {"claim": evidence.claim, "value": evidence.value} if evidence is not None else None
        )
        if binding is not None and binding.create is not None:
            return {
                "action": "created",
                "reason": "no identity found: a new connection"
                if evidence is None
                else "no connection of this account yet: a new connection",
                "evidence": proof,
            }
        rule_id = binding.attach.rule_id if binding and binding.attach else None
        return {
            "action": "joined",
            "reason": f"identity rule {rule_id} proves the same account"
            if rule_id
            else "the same connector proved this account before"
            if evidence is not None
            else "the owner named this connection",
            "rule_id": rule_id,
            "evidence": proof,
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
        blobs: BlobStore,
        *,
        owner_id: str = "owner",
        batch_size: int = BATCH_SIZE,
        on_progress: ProgressCallback | None = None,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.vault = vault
        self.blobs = blobs
        self.owner_id = owner_id
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.heartbeat_seconds = heartbeat_seconds or store.lease_seconds / HEARTBEATS_PER_LEASE
        self.resolver = Resolver(store, catalog, owner_id)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    @staticmethod
    def new_run_id() -> str:
        return random_id("run")

    def progress(self, event: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(event)

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
        self._check_setup(manifest, secrets, settings)
        env = self._env(manifest, {**self._defaults(manifest), **settings}, secrets)
        start = self._start_message("probe", "identify", manifest, None)
        evidence, refreshed = self._probe(manifest, start, env)
        secrets = {**secrets, **refreshed}  # what the probe refreshed is what stays valid
        resolution = self.resolver.resolve(manifest, evidence, connection_id, allow_recreate)
        binding = self.resolver.binding(
            manifest, resolution, display_name=display_name, seed=random_id("seed")
        )

        def sealed(target: str) -> dict[str, tuple[bytes, str]]:
            return {
                name: (self.vault.seal(target, connector_key, name, value), fingerprint(value))
                for name, value in secrets.items()
            }

        if binding.create is not None:
            assert binding.attach is not None
            connection = self.store.create_connection(
                binding.create,
                binding.attach,
                (connector_key, settings, sealed(binding.connection_id)),
            )
            return ConnectResult(connection, True, evidence)
        target = binding.connection_id
        if binding.attach is not None:
            self.store.attach_path(target, binding.attach)
        self.store.save_connection_config(target, connector_key, settings, sealed(target))
        if display_name:
            self.store.rename_connection(target, display_name)
        return ConnectResult(self.store.connection(target), False, evidence)

    def _probe(
        self, manifest: ConnectorManifest, start: dict[str, Any], env: dict[str, str]
    ) -> tuple[IdentityEvidence | None, dict[str, str]]:
        """The identity the account proves, and any secrets the probe refreshed on the way."""
        validator = MessageValidator(manifest, (), identify_only=True)
        transport = open_transport(manifest, start, env)
        evidence = None
        refreshed: dict[str, str] = {}
        try:
            items = iter(transport.messages())
            for item in items:
                message = validator.read(item)
                if isinstance(message, Identity):
                    evidence = message.evidence
                if isinstance(message, Credentials):
                    refreshed.update(message.secrets)
                if isinstance(message, Done):
                    expect_end(transport, items, validator)
                    if message.status != "succeeded":
                        error = message.error or {}
                        raise RunFailed(
                            f"{manifest.connector_key} could not verify the connection: "
                            f"{error.get('message', 'the probe failed')}",
                            connector_error=public_error(error),
                        )
                    return evidence, refreshed
        finally:
            transport.close()
        raise ProtocolViolation(
            f"{manifest.connector_key} exited (code {transport.exit_code}) before DONE",
            stderr=transport.stderr_tail,
        )

    @staticmethod
    def check_setup_names(
        manifest: ConnectorManifest, kind: Literal["secret", "setting"], names: Iterable[str]
    ) -> None:
        """Every name given is a secret (or setting) the manifest declares."""
        fields = manifest.secrets if kind == "secret" else manifest.settings
        known = {f.name for f in fields}
        for name in names:
            if name not in known:
                raise InvalidRequest(
                    f"{manifest.connector_key} has no {kind} {name!r} "
                    f"(it takes: {', '.join(sorted(known)) or 'none'})",
                    param=kind,
                )

    @classmethod
    def _check_setup(
        cls, manifest: ConnectorManifest, secrets: dict[str, str], settings: dict[str, str]
    ) -> None:
        """A connect's names are declared and every required secret is given."""
        cls.check_setup_names(manifest, "secret", secrets)
        cls.check_setup_names(manifest, "setting", settings)
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
        ids = run_ids or [self.new_run_id() for _ in manifests]
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
        session = RunSession(self, manifest, mode, trigger, connection)
        session.begin(run_id)
        session.blob_area = self._blob_area(manifest)
        start = self._start_message(run_id, mode, manifest, state, blob_area=session.blob_area)
        return session.execute(start, env)

    def _connection_env(self, connection_id: str, manifest: ConnectorManifest) -> dict[str, str]:
        config = self.store.connection_config(connection_id, manifest.connector_key)
        missing = [
            s.name for s in manifest.secrets if s.required and s.name not in config.sealed_secrets
        ]
        if missing:
            how = "--oauth" if manifest.oauth is not None else "--secret-stdin NAME"
            raise CredentialUnavailable(
                f"connection {connection_id} has no stored {', '.join(missing)} for "
                f"{manifest.connector_key}; reconnect it with `ownstream connect "
                f"{manifest.connector_key} --connection {connection_id} {how}`",
                connection_id=connection_id,
            )
        secrets = {
            name: self.vault.open(connection_id, manifest.connector_key, name, value)
            for name, value in config.sealed_secrets.items()
        }
        return self._env(manifest, {**self._defaults(manifest), **config.settings}, secrets)

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
    def _blob_area(self, manifest: ConnectorManifest) -> Path | None:
        """A private folder for the connector's blob content, when a stream it emits has
        `blob_ref` fields (the session removes it when it ends)."""
        if not any(s.blob_fields for s in manifest.streams):
            return None
        return self.blobs.run_area()

    def _start_message(
        self,
        run_id: str,
        mode: str,
        manifest: ConnectorManifest,
        state: dict[str, Any] | None,
        artifact: ArtifactInfo | None = None,
        blob_area: Path | None = None,
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
        if blob_area is not None:
            start["blobs"] = {"dir": str(blob_area), "max_bytes": self.blobs.max_bytes}
        return start
    # imports --------------------------------------------------------------------------------
    def import_artifact(
        self,
        connector_key: str,
        path: Path,
        *,
        connection_id: str | None = None,
        allow_recreate: bool = False,
        artifact: ArtifactInfo | None = None,
    ) -> ImportResult:
        """Import the file or folder at `path`; `artifact` is its hash and name when the caller
        already has them (an upload hashed while it streamed in, named as the owner's file)."""
        manifest = self.catalog.manifest(connector_key)
        if manifest.acquisition_method != "owner_artifact":
            raise InvalidRequest(
                f"{connector_key} does not import archives (it is {manifest.acquisition_method})",
                param="connector_key",
            )
        artifact = artifact or artifact_info(path)
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
        session = ImportSession(
            self,
            manifest,
            artifact=artifact,
            batch_id=batch_id,
            requested_connection_id=connection_id,
            allow_recreate=allow_recreate,
        )
        session.blob_area = self._blob_area(manifest)
        start = self._start_message(
            batch_id, "full_refresh", manifest, None, artifact, session.blob_area
        )
        outcome = session.execute(start, self._env(manifest, self._defaults(manifest), {}))
        if outcome.status != "succeeded":
            error = outcome.error or {}
            raise RunFailed(
                f"import failed, nothing was stored: {error.get('message', outcome.status)}",
                connector_error=error,
                known_gaps=[g.to_dict() for g in outcome.known_gaps],
            )
        receipt = self.store.batches(connector_key=connector_key, artifact_sha256=artifact.sha256)
        return ImportResult("committed", receipt[0], outcome)

    def receipt(self, session: ImportSession, acquisition: Acquisition) -> BatchReceipt:
        """The receipt an import's publication stores."""
        outcome, manifest, artifact = session.outcome, session.manifest, session.artifact
        return BatchReceipt(
            batch_id=session.batch_id,
            run_id=acquisition.run_id,
            connection_id=acquisition.connection_id,
            connector_key=manifest.connector_key,
            acquisition_method=manifest.acquisition_method,
            parser_version=manifest.version,
            artifact_sha256=artifact.sha256,
            artifact_name=artifact.name,
            artifact_size=artifact.size_bytes,
            status="committed",
            counts=outcome.tally.to_dict(),
            window_start=outcome.window[0],
            window_end=outcome.window[1],
            warnings=[g.message for g in outcome.known_gaps if g.reason == "file_not_modelled"],
            created_at=now_iso(),
        )
