"""Per-connection schedules and the append-only audit trail.

Workers in several processes race for due schedules: a claim locks the schedule's row with
`SELECT … FOR UPDATE SKIP LOCKED`, so a worker never waits behind another's claim (it moves
on), and exactly one claim of a due slot succeeds.
"""

from __future__ import annotations

from typing import Any

import orjson

from ownstream.store.base import AuditEvent, AuditVocabulary, Schedule
from ownstream.store.postgres.database import PostgresBase, dumps

_SCHEDULE_COLUMNS = (
    "connection_id, enabled, paused, interval_seconds, jitter_seconds, next_due_at, "
    "consecutive_failures, backoff_until, last_run_at, origin, updated_at"
)


class ScheduleRecords(PostgresBase):
    def schedule(self, connection_id: str) -> Schedule | None:
        row = self._row(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE connection_id = %s",
            (connection_id,),
        )
        return None if row is None else Schedule(*row)

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
            row = db.execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) "
                "VALUES (%s, %s, false, %s, %s, %s, 0, NULL, NULL, %s, %s) "
                "ON CONFLICT (connection_id) DO UPDATE SET "
                "enabled = excluded.enabled, interval_seconds = excluded.interval_seconds, "
                "jitter_seconds = excluded.jitter_seconds, next_due_at = excluded.next_due_at, "
                f"origin = excluded.origin, updated_at = excluded.updated_at "
                f"RETURNING {_SCHEDULE_COLUMNS}",
                (connection_id, enabled, interval_seconds, jitter_seconds, next_due_at, origin,
                 self._now()),
            ).fetchone()
        assert row is not None
        return Schedule(*row)

    def set_schedule_paused(self, connection_id: str, paused: bool) -> Schedule | None:
        with self._tx() as db:
            db.execute(
                "UPDATE schedules SET paused = %s, updated_at = %s WHERE connection_id = %s",
                (paused, self._now(), connection_id),
            )
        return self.schedule(connection_id)

    def due_schedules(self, now: str) -> list[Schedule]:
        rows = self._rows(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE enabled AND NOT paused "
            "AND next_due_at <= %s AND (backoff_until IS NULL OR backoff_until <= %s) "
            "ORDER BY next_due_at",
            (now, now),
        )
        return [Schedule(*row) for row in rows]

    def claim_schedule(self, connection_id: str, expected_due: str, next_due_at: str) -> bool:
        with self._tx() as db:
            due = db.execute(
                "SELECT 1 FROM schedules WHERE connection_id = %s AND next_due_at = %s "
                "AND enabled AND NOT paused FOR UPDATE SKIP LOCKED",
                (connection_id, expected_due),
            ).fetchone()
            if due is None:
                return False
            now = self._now()
            db.execute(
                "UPDATE schedules SET next_due_at = %s, last_run_at = %s, updated_at = %s "
                "WHERE connection_id = %s",
                (next_due_at, now, now, connection_id),
            )
        return True

    def record_schedule_outcome(
        self, connection_id: str, *, succeeded: bool, backoff_until: str | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE schedules SET consecutive_failures = CASE WHEN %s THEN 0 "
                "ELSE consecutive_failures + 1 END, backoff_until = %s, updated_at = %s "
                "WHERE connection_id = %s",
                (succeeded, backoff_until, self._now(), connection_id),
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
                "summary) VALUES (%s, %s, %s, %s, %s, %s)",
                (self._now(), actor_kind, connection_id, operation, outcome, dumps(summary)),
            )

    def audit_vocabulary(self) -> AuditVocabulary:
        def distinct(column: str) -> tuple[str, ...]:
            rows = self._rows(
                f"SELECT DISTINCT {column} FROM audit_events WHERE {column} IS NOT NULL "
                f"ORDER BY {column}",
                [],
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
                ("connection_id = %s", connection_id),
                ("actor_kind = %s", actor_kind),
                ("operation = %s", operation),
                ("seq < %s", before),
            ]
        )
        rows = self._rows(
            "SELECT seq, at, actor_kind, connection_id, operation, outcome, summary "
            f"FROM audit_events{where} ORDER BY seq DESC LIMIT %s",
            [*params, limit],
        )
        return [
            AuditEvent(seq, at, actor, connection, operation_, outcome, orjson.loads(summary))
            for seq, at, actor, connection, operation_, outcome, summary in rows
        ]
