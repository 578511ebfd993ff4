"""Owner-facing renderings shared by the CLI and the owner API. Never used on client reads."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ownstream.model import Connection
from ownstream.store.base import BatchReceipt, Evidence, Lease, RunRecord, Store


def connection_view(connection: Connection) -> dict[str, Any]:
    identity = connection.identity
    return {
        "connection_id": connection.connection_id,
        "source": connection.source,
        "display_name": connection.display_name,
        "display_name_is_placeholder": connection.display_name_is_placeholder,
        "status": connection.status,
        "identity": None
        if identity is None
        else {
            "claim": identity.claim,
            "value": identity.value,
            "proven_by": identity.proven_by,
            "proven_at": identity.proven_at,
        },
        "acquisition_paths": [
            {
                "connector_key": p.connector_key,
                "acquisition_method": p.acquisition_method,
                "attached_at": p.attached_at,
                "proved_identity": p.proved_identity,
                "rule_id": p.rule_id,
            }
            for p in connection.paths
        ],
        "created_at": connection.created_at,
        "updated_at": connection.updated_at,
        "revoked_at": connection.revoked_at,
    }


def connection_detail(store: Store, connection: Connection) -> dict[str, Any]:
    """A connection with its per-path coverage, stream counts and latest runs and batches."""
    counts = store.stream_counts([connection.connection_id])
    return {
        **connection_view(connection),
        "streams": [
            {"stream": c.stream, "record_count": c.record_count, "last_updated": c.last_updated}
            for c in counts
        ],
        "coverage": [asdict(c) for c in store.coverage(connection.connection_id)],
        "credentials": [
            {**asdict(c), "present": True}
            for c in store.credential_metadata(connection.connection_id)
        ],
        "recent_runs": [run_view(r) for r in store.runs(connection.connection_id, limit=10)],
        "import_batches": [
            batch_view(b) for b in store.batches(connection_id=connection.connection_id)
        ],
    }


def run_view(run: RunRecord) -> dict[str, Any]:
    return {
        "kind": "run",
        "run_id": run.run_id,
        "connection_id": run.connection_id,
        "connector_key": run.connector_key,
        "acquisition_method": run.acquisition_method,
        "trigger": run.trigger,
        "collection_mode": run.collection_mode,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "counts": run.counts,
        "known_gaps": run.known_gaps,
        "checkpoint": run.checkpoint,
        "error": run.error,
        "batch_id": run.batch_id,
    }


def batch_view(batch: BatchReceipt) -> dict[str, Any]:
    return {
        "kind": "import_batch",
        "batch_id": batch.batch_id,
        "run_id": batch.run_id,
        "connection_id": batch.connection_id,
        "connector_key": batch.connector_key,
        "acquisition_method": batch.acquisition_method,
        "parser_version": batch.parser_version,
        "artifact": {
            "name": batch.artifact_name,
            "sha256": batch.artifact_sha256,
            "size_bytes": batch.artifact_size,
        },
        "status": batch.status,
        "counts": batch.counts,
        "window": {"start": batch.window_start, "end": batch.window_end},
        "warnings": batch.warnings,
        "created_at": batch.created_at,
    }


def lease_view(lease: Lease | None) -> dict[str, Any] | None:
    return None if lease is None else asdict(lease)


def evidence_view(evidence: Evidence) -> dict[str, Any]:
    return asdict(evidence)
