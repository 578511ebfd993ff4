"""Re-keying a stream's records in place, when a new definition version derives keys anew (see
the SQLite store's module: ids, versions, history and paths kept, no change-log entry, a short
transaction per chunk, the upgrade marked in `meta` once no connection was deferred).

With several processes, a run may start on a connection while a chunk is being re-keyed. Each
chunk therefore takes the advisory lock of every connection it holds records of (the lock
`start_stage` and deleting take first) before it looks for live stages: a stage that started
earlier is seen and its connection deferred, and none can start until the chunk commits.
Renames are applied in the order they were decided, so a key a record gave up earlier in the
chunk is free when a later record takes it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from ownstream.model import RecordRule
from ownstream.records import search_text
from ownstream.store.base import Rekey, RekeyReport
from ownstream.store.planner import stored_match_key
from ownstream.store.postgres.connections import connection_lock
from ownstream.store.postgres.database import Connection as Db
from ownstream.store.postgres.search_index import SearchIndex, entry

REKEY_CHUNK = 5000
"""Records a transaction re-keys: the size of a runtime batch, so writers wait no longer."""


class RecordRekeys(SearchIndex):
    def rekey_records(
        self, stream: str, rekey: Rekey, *, upgrade: str, rule: RecordRule | None = None
    ) -> RekeyReport | None:
        marker = f"rekey:{upgrade}"
        if self._meta(marker) is not None:
            return None
        report = RekeyReport(upgrade, stream)
        last = 0
        while True:
            with self._tx() as db:
                rows = db.execute(
                    "SELECT record_id, connection_id, record_key, data, deleted, match_key "
                    "FROM records WHERE stream = %s AND parked = 0 AND record_id > %s "
                    "ORDER BY record_id LIMIT %s",
                    (stream, last, REKEY_CHUNK),
                ).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                self._rekey_chunk(db, stream, rows, rekey, rule, report)
        if not report.deferred:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                    (marker, orjson.dumps({**asdict(report), "at": self._now()}).decode()),
                )
        return report

    def _rekey_chunk(
        self,
        db: Db,
        stream: str,
        rows: list[tuple[Any, ...]],
        rekey: Rekey,
        rule: RecordRule | None,
        report: RekeyReport,
    ) -> None:
        """Re-key one chunk, in order: a new key another record holds (in the database, or
        given earlier in the chunk) is a conflict, and the record keeps its key."""
        busy = _busy_connections(db, sorted({row[1] for row in rows}))
        fields = self._search_fields(db, stream)
        found: list[tuple[int, str, str, dict[str, Any], bool, str, dict[str, Any]]] = []
        for record_id, connection_id, key, raw, deleted, stored in rows:
            if connection_id in busy:
                report.deferred += 1
                continue
            data = orjson.loads(raw)
            new_key, new_data = rekey(data) or (key, data)
            fresh = stored_match_key(rule, new_data) if rule is not None else stored
            if (new_key, new_data) == (key, data) and fresh == stored:
                report.unchanged += 1
                continue
            found.append((record_id, connection_id, key, data, deleted, new_key, new_data))
        taken = _held_keys(db, stream, {(f[1], f[5]) for f in found if f[5] != f[2]})
        updates = []
        for record_id, connection_id, key, data, deleted, new_key, new_data in found:
            if new_key != key:
                if (connection_id, new_key) in taken:
                    report.conflicts += 1
                    continue
                taken.discard((connection_id, key))
                taken.add((connection_id, new_key))
            reindex = not deleted and any(
                search_text(data.get(name)) != search_text(new_data.get(name)) for name in fields
            )
            updates.append(
                (
                    new_key,
                    orjson.dumps(new_data),
                    rule is not None,
                    stored_match_key(rule, new_data) if rule is not None else None,
                    reindex,
                    entry(stream, connection_id, fields, new_data) if reindex else None,
                    record_id,
                )
            )
            report.rekeyed += 1
        db.cursor().executemany(
            "UPDATE records SET record_key = %s, data = %s, match_key = "
            "CASE WHEN %s THEN %s ELSE match_key END, "
            "search = CASE WHEN %s THEN %s::tsvector ELSE search END WHERE record_id = %s",
            updates,
        )


def _busy_connections(db: Db, connection_ids: list[str]) -> frozenset[str]:
    """Of these connections, those with a live stage (a lease, or leftovers of a stage still
    being cleared); each one's lock is held until the chunk commits, so none starts meanwhile."""
    for connection_id in connection_ids:
        connection_lock(db, connection_id)
    rows = db.execute(
        "SELECT connection_id FROM run_leases WHERE connection_id = ANY(%s) UNION "
        "SELECT connection_id FROM stage_cleanup WHERE connection_id = ANY(%s)",
        (connection_ids, connection_ids),
    ).fetchall()
    return frozenset(row[0] for row in rows)


def _held_keys(db: Db, stream: str, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (connection, key) pairs a record of the stream already holds."""
    if not wanted:
        return set()
    pairs = sorted(wanted)
    rows = db.execute(
        "SELECT r.connection_id, r.record_key FROM records r JOIN unnest(%s::text[], "
        "%s::text[]) AS u (connection_id, record_key) ON r.connection_id = u.connection_id "
        "AND r.record_key = u.record_key WHERE r.stream = %s",
        ([c for c, _ in pairs], [k for _, k in pairs], stream),
    ).fetchall()
    return {(connection_id, key) for connection_id, key in rows}
