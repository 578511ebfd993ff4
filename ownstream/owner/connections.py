"""The owner's operations on connections: connect, import, run, lifecycle, schedules, delete.

Each operation targets one connection and appends an audit event (actor, connection,
operation, outcome, a summary without secrets or record contents) whatever its outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ownstream.clock import iso
from ownstream.errors import (
    AmbiguousConnection,
    ConnectionInactive,
    ConnectionNotFound,
    ConnectionRunActive,
    InvalidArgument,
    NotFound,
    OwnstreamError,
)
from ownstream.health import HealthEvidence, Verdict, verdict
from ownstream.home import Home
from ownstream.model import Connection
from ownstream.owner.access import grant_view
from ownstream.owner.audit import audited
from ownstream.runtime.owner_writes import OWNER_PATHS
from ownstream.runtime.runner import ConnectResult, ImportResult, Runtime
from ownstream.runtime.session import RunOutcome, stored_credential_names
from ownstream.scheduler import auto_enroll, check_schedule, schedulable_paths
from ownstream.store.base import ProviderAuthorization, Schedule
from ownstream.views import batch_view, connection_detail, connection_view, lease_view, run_view

log = logging.getLogger(__name__)

SUPPORTED_ACTIONS = ("rename", "run", "revoke", "reactivate", "schedule", "delete", "diagnostics")
MAX_DISPLAY_NAME_CHARS = 120


@dataclass
class ConnectionOperations:
    home: Home
    actor_kind: str = "owner"

    def runtime(self, on_progress: Callable[[dict[str, Any]], None] | None = None) -> Runtime:
        return self.home.runtime(on_progress)

    def _audited(
        self, operation: str, connection_id: str | None, summary: dict[str, Any]
    ) -> Any:
        return audited(self.home.store, self.actor_kind, operation, connection_id, summary)

    # connect / import / run ----------------------------------------------------------------
    def connect(self, connector_key: str, **kwargs: Any) -> ConnectResult:
        with self._audited(
            "connect", kwargs.get("connection_id"), {"connector_key": connector_key}
        ) as summary:
            result = self.runtime().connect(connector_key, **kwargs)
            self._connected(summary, result, kwargs.get("secrets", {}))
        return result

    def connect_authorized(
        self, authorization: ProviderAuthorization, exchange: Callable[[], dict[str, str]]
    ) -> ConnectResult:
        """Finish an OAuth authorization at the provider: `exchange` trades its code for the
        connection's secrets, then the account connects as every connect does. One audited
        connect, whichever step fails."""
        with self._audited(
            "connect",
            authorization.connection_id,
            {
                "connector_key": authorization.connector_key,
                "via": "oauth",
                "authorization_id": authorization.authorization_id,
            },
        ) as summary:
            secrets = exchange()
            result = self.runtime().connect(
                authorization.connector_key,
                secrets=secrets,
                settings=authorization.settings,
                display_name=authorization.display_name,
                connection_id=authorization.connection_id,
                allow_recreate=authorization.allow_recreate,
            )
            self._connected(summary, result, secrets)
        return result

    def _connected(
        self, summary: dict[str, Any], result: ConnectResult, secrets: dict[str, str]
    ) -> None:
        """The audit summary of a connect (secret names, never values), and its schedule."""
        summary.update(
            connection_id=result.connection.connection_id,
            created=result.created,
            identity_claim=result.identity.claim if result.identity else None,
            credentials=sorted(secrets),
        )
        auto_enroll(self.home.store, result.connection, self.home.catalog)

    def import_artifact(
        self,
        connector_key: str,
        path: Path,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        **kwargs: Any,
    ) -> ImportResult:
        with self._audited(
            "import", kwargs.get("connection_id"), {"connector_key": connector_key}
        ) as summary:
            result = self.runtime(on_progress).import_artifact(connector_key, path, **kwargs)
            summary.update(
                connection_id=result.receipt.connection_id,
                batch_id=result.receipt.batch_id,
                status=result.status,
                counts=result.receipt.counts,
            )
        return result

    def run(
        self,
        connection_id: str,
        *,
        connector_key: str | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[RunOutcome]:
        with self._audited("run", connection_id, {"connector_key": connector_key}) as summary:
            outcomes = self.runtime(on_progress).run_connection(
                connection_id, connector_key=connector_key
            )
            summary.update(
                runs=[{"run_id": o.run_id, "status": o.status} for o in outcomes],
                credentials_stored=stored_credential_names(outcomes),
                _outcome="succeeded"
                if all(o.status == "succeeded" for o in outcomes)
                else "failed",
            )
        return outcomes

    def start_run(self, connection_id: str, connector_key: str | None = None) -> list[str]:
        """Check and start a run in the background; returns its run ids at once (HTTP 202).

        Its progress and outcome are published to this process's progress hub, keyed by run id,
        for the console's live view."""
        hub = self.home.progress

        def publish(event: dict[str, Any]) -> None:
            if event.get("run_id"):
                hub.update(event["run_id"], event)

        with self._audited("run", connection_id, {"connector_key": connector_key}) as summary:
            runtime = self.runtime(publish)
            _, manifests = runtime.runnable_paths(connection_id, connector_key)
            lease = self.home.store.active_lease(connection_id)
            if lease is not None and not lease.stale(iso(self.home.store.clock())):
                raise ConnectionRunActive(
                    f"run {lease.run_id} of connection {connection_id} is in progress",
                    connection_id=connection_id,
                    run_id=lease.run_id,
                )
            run_ids = [runtime.new_run_id() for _ in manifests]
            summary.update(runs=run_ids, _outcome="started")
        for run_id in run_ids:
            hub.begin(run_id)

        def work() -> None:
            summary: dict[str, Any] = {"runs": run_ids}
            finished: dict[str, dict[str, Any]] = {r: {"status": "failed"} for r in run_ids}
            try:
                outcomes = runtime.run_connection(
                    connection_id, connector_key=connector_key, run_ids=run_ids
                )
                succeeded = all(o.status == "succeeded" for o in outcomes)
                summary["statuses"] = [o.status for o in outcomes]
                summary["credentials_stored"] = stored_credential_names(outcomes)
                for done in outcomes:
                    if done.run_id is not None:
                        finished[done.run_id] = done.to_dict()
            except OwnstreamError as exc:
                succeeded = False
                summary["error"] = exc.code
                finished = {r: {"status": "failed", "error": exc.to_dict()} for r in run_ids}
            except Exception:
                log.exception("background run of %s failed", connection_id)
                succeeded = False
                summary["error"] = "internal_error"
            try:
                self.home.store.append_audit(
                    actor_kind=self.actor_kind,
                    connection_id=connection_id,
                    operation="run_finished",
                    outcome="succeeded" if succeeded else "failed",
                    summary=summary,
                )
            finally:
                for run_id, result in finished.items():
                    hub.finish(run_id, result)

        self.home.background.start(f"run-{connection_id}", work)
        return run_ids

    def connector_connection(self, connector_key: str) -> Connection:
        """The one connection with this path; several is ambiguous, never an arbitrary pick."""
        self.home.catalog.manifest(connector_key)
        candidates = [
            c
            for c in self.home.store.connections(connector_key=connector_key)
            if c.status != "revoked"
        ]
        if not candidates:
            raise ConnectionNotFound(
                f"no connection has the {connector_key} path", param="connector_key"
            )
        if len(candidates) > 1:
            raise AmbiguousConnection(
                f"{len(candidates)} connections have the {connector_key} path; name one",
                retry_with="connection_id",
                available_connections=[
                    {"connection_id": c.connection_id, "display_name": c.display_name}
                    for c in candidates
                ],
            )
        return candidates[0]

    # lifecycle -----------------------------------------------------------------------------
    def rename(self, connection_id: str, display_name: str) -> Connection:
        with self._audited("rename", connection_id, {}):
            name = display_name.strip()
            if not name or len(name) > MAX_DISPLAY_NAME_CHARS:
                raise InvalidArgument(
                    f"display_name must be 1 to {MAX_DISPLAY_NAME_CHARS} characters",
                    param="display_name",
                )
            return self.home.store.rename_connection(connection_id, name)

    def revoke(self, connection_id: str) -> Connection:
        with self._audited("revoke", connection_id, {}):
            if self.home.store.connection(connection_id).status == "revoked":
                raise ConnectionInactive(f"connection {connection_id} is already revoked")
            return self.home.store.set_connection_status(connection_id, "revoked")

    def reactivate(self, connection_id: str) -> Connection:
        with self._audited("reactivate", connection_id, {}):
            return self.home.store.set_connection_status(connection_id, "active")

    def delete(self, connection_id: str) -> dict[str, Any]:
        with self._audited("delete", connection_id, {}) as summary:
            counts = self.home.store.delete_connection(connection_id, self.runtime().owner_id)
            blobs = self.home.blobs.collect(self.home.store)  # content only it referenced
            summary.update(
                records_per_stream=counts.records_per_stream, records=counts.records, blobs=blobs
            )
        return {
            "deleted": True,
            "connection_id": connection_id,
            "records_per_stream": counts.records_per_stream,
            "records": counts.records,
            "blobs_deleted": blobs,
        }

    def deletion_preview(self, connection_id: str) -> dict[str, Any]:
        """What deleting a connection erases (its records per stream, runs, import batches)
        and what survives it: the grants that name it (they then read nothing from it) and
        the audit trail."""
        store = self.home.store
        connection = store.connection(connection_id)
        records = {c.stream: c.record_count for c in store.stream_counts([connection_id])}
        return {
            "connection": connection_view(connection),
            "records_per_stream": records,
            "records": sum(records.values()),
            "import_batches": len(store.batches(connection_id=connection_id)),
            "grants_naming_it": [
                grant_view(g)
                for g in store.grants()
                if any(connection_id in s.instance_ids for s in g.streams)
            ],
            "audit_events_kept": len(store.audit_events(connection_id=connection_id, limit=10_000)),
        }

    # schedules -----------------------------------------------------------------------------
    def put_schedule(
        self, connection_id: str, *, enabled: bool, interval_seconds: int, jitter_seconds: int = 0
    ) -> Schedule:
        with self._audited(
            "schedule",
            connection_id,
            {
                "enabled": enabled,
                "interval_seconds": interval_seconds,
                "jitter_seconds": jitter_seconds,
            },
        ):
            connection = self.home.store.connection(connection_id)
            check_schedule(
                connection, self.home.catalog, enabled=enabled, interval_seconds=interval_seconds
            )
            if jitter_seconds < 0 or jitter_seconds > interval_seconds:
                raise InvalidArgument(
                    "jitter_seconds must be between 0 and interval_seconds", param="jitter_seconds"
                )
            return self.home.store.put_schedule(
                connection_id,
                enabled=enabled,
                interval_seconds=interval_seconds,
                jitter_seconds=jitter_seconds,
                next_due_at=iso(self.home.store.clock() + timedelta(seconds=interval_seconds))
                if enabled
                else None,
                origin="owner",
            )

    def pause_schedule(self, connection_id: str, paused: bool) -> Schedule:
        with self._audited("schedule_pause" if paused else "schedule_resume", connection_id, {}):
            self.home.store.connection(connection_id)
            schedule = self.home.store.set_schedule_paused(connection_id, paused)
            if schedule is None:
                raise NotFound(f"connection {connection_id} has no schedule", param="schedule")
            return schedule

    # reading -------------------------------------------------------------------------------
    def health(self, connection: Connection) -> Verdict:
        store, catalog = self.home.store, self.home.catalog
        # the owner's own writes (pushes, deletes) say nothing of how collection goes
        runs = [
            r for r in store.runs(connection.connection_id, limit=200)
            if r.connector_key not in OWNER_PATHS
        ]
        latest: dict[str, Any] = {}
        for run in runs:
            if run.status != "running" and run.batch_id is None:
                latest.setdefault(run.connector_key, run)
        last_successful = next((r for r in runs if r.status == "succeeded"), None)
        batches = store.batches(connection_id=connection.connection_id)
        runnable = [p for p in connection.paths if p.acquisition_method != "owner_artifact"]
        stored = {
            (c.connector_key, c.name) for c in store.credential_metadata(connection.connection_id)
        }
        now = iso(store.clock())
        lease = store.active_lease(connection.connection_id)
        stalled = next(
            (
                r.run_id
                for r in runs
                if r.status == "running"
                and (lease is None or lease.run_id != r.run_id or lease.stale(now))
            ),
            None,
        )
        missing = []
        budgets = []
        oauth_paths = []
        for path in runnable:
            manifest = catalog.manifests.get(path.connector_key)
            if manifest is None:
                continue
            if manifest.oauth is not None:
                oauth_paths.append(path.connector_key)
            if manifest.refresh_policy.maximum_staleness_seconds:
                budgets.append(manifest.refresh_policy.maximum_staleness_seconds)
            missing += [
                f"{path.connector_key}:{s.name}"
                for s in manifest.secrets
                if s.required and (path.connector_key, s.name) not in stored
            ]
        return verdict(
            HealthEvidence(
                status=connection.status,
                runnable_paths=tuple(p.connector_key for p in runnable),
                last_runs=tuple(sorted(latest.values(), key=lambda r: r.started_at, reverse=True)),
                last_successful_run=last_successful,
                last_batch_at=batches[0].created_at if batches else None,
                staleness_budget_seconds=min(budgets) if budgets else None,
                schedule=store.schedule(connection.connection_id),
                missing_credentials=tuple(missing),
                now=now,
                stalled_run=stalled,
                oauth_paths=tuple(oauth_paths),
            )
        )

    def connection_entry(self, connection: Connection) -> dict[str, Any]:
        schedule = self.home.store.schedule(connection.connection_id)
        return {
            "object": "owner_connection",
            **connection_view(connection),
            "identity_claim": connection.identity.claim if connection.identity else None,
            "schedule": schedule_view(schedule),
            "health": self.health(connection).to_dict(),
            "supported_actions": list(SUPPORTED_ACTIONS),
        }

    def detail(self, connection_id: str) -> dict[str, Any]:
        """A connection with its paths, coverage, counts, runs, batches and health."""
        connection = self.home.store.connection(connection_id)
        return {
            **connection_detail(self.home.store, connection),
            **self.connection_entry(connection),
        }

    def grouped_connections(self) -> list[dict[str, Any]]:
        """Connections grouped by source, then by connector, for display."""
        groups: dict[str, dict[str, Any]] = {}
        for connection in self.home.store.connections():
            group = groups.setdefault(
                connection.source, {"source": connection.source, "connectors": {}}
            )
            for path in connection.paths or ():
                group["connectors"].setdefault(path.connector_key, []).append(
                    connection.connection_id
                )
        return [
            {
                "source": g["source"],
                "connectors": [
                    {"connector_key": k, "connection_ids": v}
                    for k, v in sorted(g["connectors"].items())
                ],
            }
            for g in sorted(groups.values(), key=lambda g: g["source"])
        ]

    def diagnostics(self, connection_id: str) -> dict[str, Any]:
        store = self.home.store
        connection = store.connection(connection_id)
        runs = store.runs(connection_id, limit=50)
        health = self.health(connection)
        detail = connection_detail(store, connection)
        return {
            "object": "diagnostics",
            "connection_id": connection_id,
            "health": health.to_dict(),
            "last_run": run_view(runs[0]) if runs else None,
            "last_successful_run": next(
                (run_view(r) for r in runs if r.status == "succeeded"), None
            ),
            "known_gaps": health.gaps,
            "coverage": detail["coverage"],
            "streams": detail["streams"],
            "schedule": schedule_view(store.schedule(connection_id)),
            "schedulable_paths": [
                m.connector_key for m in schedulable_paths(connection, self.home.catalog)
            ],
            "credentials": detail["credentials"],
            "active_lease": lease_view(store.active_lease(connection_id)),
            "import_batches": [batch_view(b) for b in store.batches(connection_id=connection_id)],
        }


def schedule_view(schedule: Schedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    return {
        "enabled": schedule.enabled,
        "paused": schedule.paused,
        "interval_seconds": schedule.interval_seconds,
        "jitter_seconds": schedule.jitter_seconds,
        "next_due_at": schedule.next_due_at,
        "consecutive_failures": schedule.consecutive_failures,
        "backoff_until": schedule.backoff_until,
        "last_run_at": schedule.last_run_at,
        "origin": schedule.origin,
    }
