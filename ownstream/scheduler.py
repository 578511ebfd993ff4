"""Per-connection schedules and the worker that runs due connections.

A schedule belongs to one connection. The worker claims a due slot with a conditional update
(only one claimant wins) and then takes the connection's durable run lease, so two workers
never run one connection; sibling connections run concurrently in a small thread pool, and a
crashed worker's lease expires. A pass claims no more due slots than the pool runs at once, so
several workers on one database share what is due. Failures back off per connection.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from ownstream.clock import iso, random_id, utc_now
from ownstream.errors import (
    ConnectionRunActive,
    InternalError,
    InvalidArgument,
    OwnstreamError,
    ScheduleNotAllowed,
)
from ownstream.model import Connection, ConnectorManifest
from ownstream.registry import Catalog
from ownstream.runtime.runner import Runtime
from ownstream.runtime.session import RunOutcome, stored_credential_names
from ownstream.store.base import Schedule, Store

MIN_INTERVAL_SECONDS = 60
MAX_INTERVAL_SECONDS = 30 * 24 * 3600
DEFAULT_INTERVAL_SECONDS = 3600
BACKOFF_BASE_SECONDS = 60
MAX_BACKOFF_SECONDS = 24 * 3600
MAX_PASS_BACKOFF_SECONDS = 300.0
BLOB_SWEEP_SECONDS = 3600.0  # how often a worker walks the blob directory for orphan files
log = logging.getLogger(__name__)


def schedulable_paths(connection: Connection, catalog: Catalog) -> list[ConnectorManifest]:
    """The paths a background run may execute: runnable, background-safe, not paused-mode."""
    manifests = [
        catalog.manifest(p.connector_key)
        for p in connection.paths
        if p.acquisition_method != "owner_artifact" and p.connector_key in catalog.manifests
    ]
    return [
        m
        for m in manifests
        if m.refresh_policy.background_safe and m.refresh_policy.recommended_mode != "paused"
    ]


def check_schedule(
    connection: Connection, catalog: Catalog, *, enabled: bool, interval_seconds: int
) -> None:
    if not MIN_INTERVAL_SECONDS <= interval_seconds <= MAX_INTERVAL_SECONDS:
        raise InvalidArgument(
            f"interval_seconds must be between {MIN_INTERVAL_SECONDS} and "
            f"{MAX_INTERVAL_SECONDS}",
            param="interval_seconds",
        )
    if enabled and not schedulable_paths(connection, catalog):
        raise ScheduleNotAllowed(
            f"connection {connection.connection_id} has no path that may run in the background "
            "(its connectors are manual-only, paused, or not background-safe)",
            connection_id=connection.connection_id,
        )


def auto_enroll(store: Store, connection: Connection, catalog: Catalog) -> Schedule | None:
    """Attach the refresh-policy schedule of an automatic, background-safe path, once."""
    if store.schedule(connection.connection_id) is not None:
        return None
    automatic = [
        m
        for m in schedulable_paths(connection, catalog)
        if m.refresh_policy.recommended_mode == "automatic"
    ]
    if not automatic:
        return None
    interval = min(
        m.refresh_policy.recommended_interval_seconds or DEFAULT_INTERVAL_SECONDS
        for m in automatic
    )
    return store.put_schedule(
        connection.connection_id,
        enabled=True,
        interval_seconds=interval,
        jitter_seconds=min(300, interval // 10),
        next_due_at=iso(utc_now() + timedelta(seconds=interval)),
        origin="refresh_policy",
    )


def backoff_until(failures: int, interval_seconds: int, now: datetime) -> str:
    """When a connection that failed `failures` times in a row may be tried again.

    The wait starts at one interval and doubles with each further failure, up to a day (or the
    interval, if longer): a failing connection is tried less and less often. (Capping it at
    the interval, as before, made it no wait at all: the next slot is an interval away anyway.)
    """
    step = max(interval_seconds, BACKOFF_BASE_SECONDS)
    cap = max(interval_seconds, MAX_BACKOFF_SECONDS)
    delay = min(cap, step * 2 ** min(max(0, failures - 1), 20))
    return iso(now + timedelta(seconds=delay))


class Worker:
    """Runs due connections. `tick()` is one pass; `run_forever()` loops until stopped."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        worker_id: str | None = None,
        max_parallel: int = 4,
        clock: Callable[[], datetime] = utc_now,
        on_outcome: Callable[[str, list[RunOutcome] | OwnstreamError], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.catalog = runtime.catalog
        self.worker_id = worker_id or random_id("wrk")
        self.max_parallel = max_parallel
        self.clock = clock
        self.on_outcome = on_outcome
        self._rng = random.Random()
        self._next_sweep = 0.0  # monotonic: the first pass sweeps

    def maintain(self) -> list[str]:
        """A pass's housekeeping: reclaim stalled runs (returned), collect unused blobs, and
        now and then sweep the blob directory for files the store no longer knows."""
        reclaimed = self.store.reclaim_stalled()
        if reclaimed:
            log.warning("reclaimed stalled run(s) %s", ", ".join(reclaimed))
        blobs = self.runtime.blobs
        if time.monotonic() >= self._next_sweep:
            swept = blobs.sweep(self.store)
            self._next_sweep = time.monotonic() + BLOB_SWEEP_SECONDS
        else:
            swept = blobs.collect(self.store)
        if swept:
            log.info("deleted %d unused blob file(s)", swept)
        return reclaimed

    def tick(self) -> dict[str, list[RunOutcome] | OwnstreamError]:
        now = self.clock()
        claimed: list[Schedule] = []
        for schedule in self.store.due_schedules(iso(now)):
            if len(claimed) == self.max_parallel:
                break  # the rest waits for the next pass, this worker's or another's
            assert schedule.next_due_at is not None
            jitter = self._rng.randint(0, schedule.jitter_seconds) if schedule.jitter_seconds else 0
            next_due = iso(now + timedelta(seconds=schedule.interval_seconds + jitter))
            if self.store.claim_schedule(schedule.connection_id, schedule.next_due_at, next_due):
                claimed.append(schedule)
        if not claimed:
            return {}
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            futures = {s.connection_id: pool.submit(self._run, s) for s in claimed}
            return {connection_id: f.result() for connection_id, f in futures.items()}

    def _run(self, schedule: Schedule) -> list[RunOutcome] | OwnstreamError:
        connection_id = schedule.connection_id
        try:
            connection = self.store.connection(connection_id)
            if connection.status != "active":
                return []
            outcomes: list[RunOutcome] = []
            for manifest in schedulable_paths(connection, self.catalog):
                outcomes += self.runtime.run_connection(
                    connection_id, connector_key=manifest.connector_key, trigger="schedule"
                )
            result: list[RunOutcome] | OwnstreamError = outcomes
            succeeded: bool | None = all(o.status == "succeeded" for o in outcomes)
        except ConnectionRunActive as exc:
            # Another run (a manual one, another worker's) holds the lease: this slot is
            # skipped, which is no failure of the connection and must not back it off.
            result, succeeded = exc, None
        except OwnstreamError as exc:
            result, succeeded = exc, False
        except Exception as exc:
            log.exception("scheduled run of %s failed unexpectedly", connection_id)
            result, succeeded = InternalError(f"{type(exc).__name__}: {exc}"), False
        if succeeded is not None:
            failures = 0 if succeeded else schedule.consecutive_failures + 1
            self.store.record_schedule_outcome(
                connection_id,
                succeeded=succeeded,
                backoff_until=None
                if succeeded
                else backoff_until(failures, schedule.interval_seconds, self.clock()),
            )
        self.store.append_audit(
            actor_kind="scheduler",
            connection_id=connection_id,
            operation="scheduled_run",
            outcome="skipped" if succeeded is None else "succeeded" if succeeded else "failed",
            summary={
                "worker_id": self.worker_id,
                "runs": [o.run_id for o in result] if isinstance(result, list) else [],
                "credentials_stored": stored_credential_names(result)
                if isinstance(result, list)
                else [],
                "error": None if isinstance(result, list) else result.code,
            },
        )
        if self.on_outcome is not None:
            self.on_outcome(connection_id, result)
        return result

    def run_forever(self, stop: threading.Event, poll_seconds: float = 5.0) -> None:
        """Pass after pass until `stop`: housekeeping (`maintain`), then run what is due. A
        failing pass (the database busy or broken, say) is logged, and the next one waits
        longer, up to five minutes; the loop itself never dies."""
        failures = 0
        while not stop.is_set():
            try:
                self.maintain()
                ran = self.tick()
                # a full pass may have left due slots behind: take them at once
                failures, wait = 0, 0.0 if len(ran) == self.max_parallel else poll_seconds
            except Exception:
                failures += 1
                wait = min(poll_seconds * 2**failures, MAX_PASS_BACKOFF_SECONDS)
                log.exception(
                    "worker %s: pass failed (%d in a row); next pass in %.0fs",
                    self.worker_id,
                    failures,
                    wait,
                )
            stop.wait(wait)
