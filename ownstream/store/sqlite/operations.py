"""Owner operations on one connection: status, schedules, leases, audit, and the delete cascade."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import orjson

from ownstream.clock import now_iso
from ownstream.errors import ConnectionRunActive
from ownstream.model import Connection
from ownstream.store.base import Schedule

# The delete cascade, in order. Each statement is keyed on one connection_id. Search index rows
# go after the commit (see `purge_search_rows`); audit events and grants are never touched.
DELETE_CASCADE: tuple[tuple[str, str], ...] = (
    ("record_evidence", "DELETE FROM record_evidence WHERE record_id IN "
     "(SELECT record_id FROM records WHERE connection_id = ?)"),
    ("record_changes", "DELETE FROM record_changes WHERE record_id IN "
     "(SELECT record_id FROM records WHERE connection_id = ?)"),
    ("records", "DELETE FROM records WHERE connection_id = ?"),
    ("stream_stats", "DELETE FROM stream_stats WHERE connection_id = ?"),
    ("coverage", "DELETE FROM coverage WHERE connection_id = ?"),
    ("connection_state", "DELETE FROM connection_state WHERE connection_id = ?"),
    ("schedules", "DELETE FROM schedules WHERE connection_id = ?"),
    ("run_leases", "DELETE FROM run_leases WHERE connection_id = ?"),
    ("runs", "DELETE FROM runs WHERE connection_id = ?"),
    ("acquisition_batches", "DELETE FROM acquisition_batches WHERE connection_id = ?"),
    ("connection_credentials", "DELETE FROM connection_credentials WHERE connection_id = ?"),
    ("connection_settings", "DELETE FROM connection_settings WHERE connection_id = ?"),
    ("connection_paths", "DELETE FROM connection_paths WHERE connection_id = ?"),
    ("connections", "DELETE FROM connections WHERE connection_id = ?"),
)


def _schedule(row: tuple[Any, ...]) -> Schedule:
    return Schedule(
        connection_id=row[0],
        enabled=bool(row[1]),
        paused=bool(row[2]),
        interval_seconds=row[3],
        jitter_seconds=row[4],
        next_due_at=row[5],
        consecutive_failures=row[6],
        backoff_until=row[7],
        last_run_at=row[8],
        origin=row[9],
        updated_at=row[10],
    )


_SCHEDULE_COLUMNS = (
    "connection_id, enabled, paused, interval_seconds, jitter_seconds, next_due_at, "
    "consecutive_failures, backoff_until, last_run_at, origin, updated_at"
)


class OwnerOperations:
    """Mixed into SQLiteStore; relies on its per-thread `_db()`, `transaction()`, `connection()`."""

    _db: Callable[[], sqlite3.Connection]
    transaction: Callable[[], AbstractContextManager[None]]
    connection: Callable[[str], Connection]

    # status --------------------------------------------------------------------------------
    def set_connection_status(self, connection_id: str, status: str) -> Connection:
        now = now_iso()
        with self.transaction():
            self.connection(connection_id)
            self._db().execute(
                "UPDATE connections SET status = ?, updated_at = ?, "
                "revoked_at = CASE WHEN ? = 'revoked' THEN coalesce(revoked_at, ?) ELSE NULL END "
                "WHERE connection_id = ?",
                (status, now, status, now, connection_id),
            )
        return self.connection(connection_id)

    def active_lease(self, connection_id: str) -> dict[str, Any] | None:
        row = self._db().execute(
            "SELECT run_id, holder, acquired_at, expires_at FROM run_leases "
            "WHERE connection_id = ? AND expires_at > ?",
            (connection_id, now_iso()),
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("run_id", "holder", "acquired_at", "expires_at"), row, strict=True))

    # schedules -----------------------------------------------------------------------------
    def schedule(self, connection_id: str) -> Schedule | None:
        row = self._db().execute(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE connection_id = ?",
            (connection_id,),
        ).fetchone()
        return None if row is None else _schedule(row)

    def put_schedule(
        self,
        connection_id: str,
        *,
        enabled: bool,
        interval_seconds: int,
        jitter_seconds: int,
        next_due_at: str | None,
        origin: str,
    ) -> Schedule:
        with self.transaction():
            self._db().execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) "
                "VALUES (?, ?, 0, ?, ?, ?, 0, NULL, NULL, ?, ?) ON CONFLICT DO UPDATE SET "
                "enabled = excluded.enabled, interval_seconds = excluded.interval_seconds, "
                "jitter_seconds = excluded.jitter_seconds, next_due_at = excluded.next_due_at, "
                "origin = excluded.origin, updated_at = excluded.updated_at",
                (connection_id, int(enabled), interval_seconds, jitter_seconds, next_due_at,
                 origin, now_iso()),
            )
        found = self.schedule(connection_id)
        assert found is not None
        return found

    def set_schedule_paused(self, connection_id: str, paused: bool) -> Schedule | None:
        with self.transaction():
            self._db().execute(
                "UPDATE schedules SET paused = ?, updated_at = ? WHERE connection_id = ?",
                (int(paused), now_iso(), connection_id),
            )
        return self.schedule(connection_id)

    def due_schedules(self, now: str) -> list[Schedule]:
        rows = self._db().execute(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE enabled = 1 AND paused = 0 "
            "AND next_due_at <= ? AND (backoff_until IS NULL OR backoff_until <= ?) "
            "ORDER BY next_due_at",
            (now, now),
        )
        return [_schedule(row) for row in rows]

    def claim_schedule(self, connection_id: str, expected_due: str, next_due_at: str) -> bool:
        """Move a due schedule forward; only one worker's claim of one due slot succeeds."""
        with self.transaction():
            cursor = self._db().execute(
                "UPDATE schedules SET next_due_at = ?, last_run_at = ?, updated_at = ? "
                "WHERE connection_id = ? AND next_due_at = ? AND enabled = 1 AND paused = 0",
                (next_due_at, now_iso(), now_iso(), connection_id, expected_due),
            )
            return cursor.rowcount == 1

    def record_schedule_outcome(
        self, connection_id: str, *, succeeded: bool, backoff_until: str | None
    ) -> None:
        with self.transaction():
            self._db().execute(
                "UPDATE schedules SET consecutive_failures = CASE WHEN ? THEN 0 "
                "ELSE consecutive_failures + 1 END, backoff_until = ?, updated_at = ? "
                "WHERE connection_id = ?",
                (int(succeeded), backoff_until, now_iso(), connection_id),
            )

    # audit ---------------------------------------------------------------------------------
    def append_audit(
        self,
        *,
        actor_kind: str,
        connection_id: str | None,
        operation: str,
        outcome: str,
        summary: dict[str, Any],
    ) -> None:
        with self.transaction():
            self._db().execute(
                "INSERT INTO audit_events (at, actor_kind, connection_id, operation, outcome, "
                "summary) VALUES (?, ?, ?, ?, ?, ?)",
                (now_iso(), actor_kind, connection_id, operation, outcome, orjson.dumps(summary)),
            )

    def audit_events(
        self, connection_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT seq, at, actor_kind, connection_id, operation, outcome, summary "
            "FROM audit_events"
        )
        params: list[Any] = []
        if connection_id is not None:
            sql += " WHERE connection_id = ?"
            params.append(connection_id)
        rows = self._db().execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [
            {
                "seq": seq,
                "at": at,
                "actor_kind": actor,
                "connection_id": connection,
                "operation": operation,
                "outcome": outcome,
                "summary": orjson.loads(summary),
            }
            for seq, at, actor, connection, operation, outcome, summary in rows
        ]

    # delete --------------------------------------------------------------------------------
    def delete_connection(self, connection_id: str, owner_id: str) -> dict[str, Any]:
        """Erase one connection and everything keyed on it, in one transaction.

        Refused while a run holds the lease. The identity is tombstoned so a later write cannot
        silently re-create it. Returns a summary (counts per stream) for the audit trail.
        """
        with self.transaction():
            connection = self.connection(connection_id)
            lease = self.active_lease(connection_id)
            if lease is not None:
                raise ConnectionRunActive(
                    f"run {lease['run_id']} of connection {connection_id} is in progress; "
                    "wait for it or let its lease expire",
                    connection_id=connection_id,
                    run_id=lease["run_id"],
                )
            db = self._db()
            per_stream = dict(
                db.execute(
                    "SELECT stream, count(*) FROM records WHERE connection_id = ? AND deleted = 0 "
                    "GROUP BY stream",
                    (connection_id,),
                ).fetchall()
            )
            identity = connection.identity
            if identity is not None:
                provers = {identity.proven_by} | {
                    p.connector_key for p in connection.paths if p.proved_identity
                }
                db.executemany(
                    "INSERT OR REPLACE INTO identity_tombstones (owner_id, source, claim, value, "
                    "connector_key, connection_id, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (owner_id, connection.source, identity.claim, identity.value, key,
                         connection_id, now_iso())
                        for key in sorted(provers)
                    ],
                )
            for _, statement in DELETE_CASCADE:
                db.execute(statement, (connection_id,))
            db.execute(
                "INSERT OR REPLACE INTO deleted_connections (connection_id, deleted_at) "
                "VALUES (?, ?)",
                (connection_id, now_iso()),
            )
        return {"records_per_stream": per_stream, "records": sum(per_stream.values())}

    def purge_search_rows(self) -> int:
        """Drop search rows whose record is gone (after a delete commits)."""
        with self.transaction():
            cursor = self._db().execute(
                "DELETE FROM search_fts WHERE rowid NOT IN (SELECT record_id FROM records)"
            )
            return cursor.rowcount

    def credential_metadata(self, connection_id: str) -> list[dict[str, Any]]:
        """What the owner may know of stored secrets: kind, presence, fingerprint, times."""
        rows = self._db().execute(
            "SELECT connector_key, name, fingerprint, created_at, rotated_at "
            "FROM connection_credentials WHERE connection_id = ? ORDER BY connector_key, name",
            (connection_id,),
        )
        return [
            {
                "connector_key": connector_key,
                "name": name,
                "present": True,
                "fingerprint": fingerprint,
                "created_at": created_at,
                "rotated_at": rotated_at,
            }
            for connector_key, name, fingerprint, created_at, rotated_at in rows
        ]
