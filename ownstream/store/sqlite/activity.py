"""Activity over time: how many live records of a stream each connection holds per day.

Days are the UTC date of each record's consent time (when the event happened: a play, a
message), so a picture of "listening per day" draws what the owner did, not when it was
collected. Like every read, it sees only published versions (`reads.visible`).
"""

from __future__ import annotations

from ownstream.model import ReadScope
from ownstream.store.base import DailyCount
from ownstream.store.sqlite.database import SQLiteBase, marks
from ownstream.store.sqlite.reads import scope_filters, visible


class ActivityQueries(SQLiteBase):
    def daily_counts(self, scope: ReadScope, *, since: str, until: str) -> list[DailyCount]:
        """Live records per (connection, day) with a consent time in [since, until) and in the
        scope; days without records are absent. Ordered by day, then connection."""
        if not scope.connection_ids:
            return []
        filters, params = scope_filters(scope, "r")
        rows = self._db().execute(
            "SELECT r.connection_id, substr(r.consent_time, 1, 10) AS day, count(*) "
            "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
            f"WHERE r.connection_id IN ({marks(len(scope.connection_ids))}) AND r.stream = ? "
            f"AND r.deleted = 0 AND {visible('r', 'k')} "
            "AND r.consent_time >= ? AND r.consent_time < ?"
            + "".join(f" AND {f}" for f in filters)
            + " GROUP BY r.connection_id, day ORDER BY day, r.connection_id",
            [*scope.connection_ids, scope.stream.name, since, until, *params],
        )
        return [DailyCount(connection_id=c, day=d, records=n) for c, d, n in rows]
