"""Per-connection schedules and the append-only audit trail."""

from __future__ import annotations

from typing import Any

import orjson

from ownstream.store.base import AuditEvent, AuditVocabulary, Schedule
from ownstream.store.sqlite.database import SQLiteBase, dumps

_SCHEDULE_COLUMNS = (
    "connection_id, enabled, paused, interval_seconds, jitter_seconds, next_due_at, "
    "consecutive_failures, backoff_until, last_run_at, origin, updated_at"
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


class ScheduleRecords(SQLiteBase):
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
        with self._tx() as db:
            db.execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) "
                "VALUES (?, ?, 0, ?, ?, ?, 0, NULL, NULL, ?, ?) ON CONFLICT DO UPDATE SET "
                "enabled = excluded.enabled, interval_seconds = excluded.interval_seconds, "
                "jitter_seconds = excluded.jitter_seconds, next_due_at = excluded.next_due_at, "
                "origin = excluded.origin, updated_at = excluded.updated_at",
                (connection_id, int(enabled), interval_seconds, jitter_seconds, next_due_at,
                 origin, self._now()),
            )
        found = self.schedule(connection_id)
        assert found is not None
        return found

    def set_schedule_paused(self, connection_id: str, paused: bool) -> Schedule | None:
        with self._tx() as db:
            db.execute(
                "UPDATE schedules SET paused = ?, updated_at = ? WHERE connection_id = ?",
                (int(paused), self._now(), connection_id),
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
        with self._tx() as db:
            now = self._now()
            cursor = db.execute(
                "UPDATE schedules SET next_due_at = ?, last_run_at = ?, updated_at = ? "
                "WHERE connection_id = ? AND next_due_at = ? AND enabled = 1 AND paused = 0",
                (next_due_at, now, now, connection_id, expected_due),
            )
            return cursor.rowcount == 1

    def record_schedule_outcome(
        self, connection_id: str, *, succeeded: bool, backoff_until: str | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE schedules SET consecutive_failures = CASE WHEN ? THEN 0 "
                "ELSE consecutive_failures + 1 END, backoff_until = ?, updated_at = ? "
                "WHERE connection_id = ?",
                (int(succeeded), backoff_until, self._now(), connection_id),
            )

    # audit ------------------------------------------------------------------------------------
    def append_audit(
        self,
        *,
        actor_kind: str,
        connection_id: str | None,
        operation: str,
        outcome: str,
        summary: dict[str, Any],
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit_events (at, actor_kind, connection_id, operation, outcome, "
                "summary) VALUES (?, ?, ?, ?, ?, ?)",
                (self._now(), actor_kind, connection_id, operation, outcome, dumps(summary)),
            )

    def audit_vocabulary(self) -> AuditVocabulary:
        def distinct(column: str) -> tuple[str, ...]:
            rows = self._db().execute(
                f"SELECT DISTINCT {column} FROM audit_events WHERE {column} IS NOT NULL "
                f"ORDER BY {column}"
            )
            return tuple(str(value) for (value,) in rows)

        return AuditVocabulary(
            distinct("actor_kind"), distinct("operation"), distinct("connection_id")
        )

    def audit_events(
        self,
        *,
        connection_id: str | None = None,
        actor_kind: str | None = None,
        operation: str | None = None,
        before: int | None = None,
        limit: int = 200,
    ) -> list[AuditEvent]:
        where, params = self._where(
            [
                ("connection_id = ?", connection_id),
                ("actor_kind = ?", actor_kind),
                ("operation = ?", operation),
                ("seq < ?", before),
            ]
        )
        rows = self._db().execute(
            "SELECT seq, at, actor_kind, connection_id, operation, outcome, summary "
            f"FROM audit_events{where} ORDER BY seq DESC LIMIT ?",
            [*params, limit],
        )
        return [
            AuditEvent(seq, at, actor, connection, operation_, outcome, orjson.loads(summary))
            for seq, at, actor, connection, operation_, outcome, summary in rows
        ]
