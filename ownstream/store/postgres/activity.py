"""Activity over time on PostgreSQL: live records of a stream per connection and day (see the
SQLite store's module: days are the UTC date of the consent time, published versions only)."""

from __future__ import annotations

from ownstream.model import ReadScope
from ownstream.store.base import DailyCount
from ownstream.store.postgres.database import PostgresBase
from ownstream.store.postgres.reads import scope_filters, visible


class ActivityQueries(PostgresBase):
    def daily_counts(self, scope: ReadScope, *, since: str, until: str) -> list[DailyCount]:
        """Live records per (connection, day) with a consent time in [since, until) and in the
        scope; days without records are absent. Ordered by day, then connection."""
        if not scope.connection_ids:
            return []
        filters, params = scope_filters(scope, "r")
        rows = self._rows(
            "SELECT r.connection_id, substr(r.consent_time, 1, 10) AS day, count(*) "
            "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
            "WHERE r.connection_id = ANY(%s) AND r.stream = %s "
            f"AND NOT r.deleted AND {visible('r', 'k')} "
            "AND r.consent_time >= %s AND r.consent_time < %s"
            + "".join(f" AND {f}" for f in filters)
            + " GROUP BY r.connection_id, day ORDER BY day, r.connection_id",
            [list(scope.connection_ids), scope.stream.name, since, until, *params],
        )
        return [DailyCount(connection_id=c, day=d, records=n) for c, d, n in rows]
