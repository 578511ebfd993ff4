"""Re-keying a stream's records in place, when a new definition version derives keys anew.

A pure re-key renames records; it does not change what was collected. So a record keeps its
`record_id` (search rows, the change log and provenance all point at it), its version, history
and paths, and no `record_changes` row is written: the change feed has nothing new to say. The
data may gain what the new version derives from it (the new key field, say); searchable values
that change are re-indexed, handing the contentless index the exact values it held.

Each chunk is one short transaction, and the upgrade is recorded in `meta` when it is complete,
so an interrupted re-key resumes at the next start (a re-key function must leave a record it
already re-keyed alone). A connection a run is writing (a lease, or a stage whose leftovers are
still being cleared) is skipped and the upgrade left unmarked: renaming a key under a live
stage would orphan the published versions it parked under the old key.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from typing import Any

import orjson

from ownstream.model import RecordRule
from ownstream.records import match_key, search_text
from ownstream.store.base import Rekey, RekeyReport
from ownstream.store.sqlite.database import dumps_text
from ownstream.store.sqlite.search_index import SearchIndex

REKEY_CHUNK = 1000


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
                    "SELECT record_id, connection_id, record_key, data, deleted FROM records "
                    "WHERE stream = ? AND parked = 0 AND record_id > ? ORDER BY record_id LIMIT ?",
                    (stream, last, REKEY_CHUNK),
                ).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                busy = _busy_connections(db)
                fields = self._search_fields(db, stream)
                for record_id, connection_id, key, raw, deleted in rows:
                    if connection_id in busy:
                        report.deferred += 1
                        continue
                    self._rekey_one(
                        db,
                        report,
                        rekey,
                        rule,
                        fields,
                        (record_id, connection_id, stream, key, orjson.loads(raw), bool(deleted)),
                    )
        if not report.deferred:
            with self._tx() as db:
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    (marker, dumps_text({**asdict(report), "at": self._now()})),
                )
        return report

    def _rekey_one(
        self,
        db: sqlite3.Connection,
        report: RekeyReport,
        rekey: Rekey,
        rule: RecordRule | None,
        fields: tuple[str, ...],
        row: tuple[int, str, str, str, dict[str, Any], bool],
    ) -> None:
        record_id, connection_id, stream, key, data, deleted = row
        found = rekey(data)
        if found is None or found == (key, data):
            report.unchanged += 1
            return
        new_key, new_data = found
        if (
            new_key != key
            and db.execute(
                "SELECT 1 FROM records WHERE connection_id = ? AND stream = ? AND record_key = ?",
                (connection_id, stream, new_key),
            ).fetchone()
        ):
            report.conflicts += 1
            return
        db.execute(
            "UPDATE records SET record_key = ?, data = ?, match_key = "
            "CASE WHEN ? THEN ? ELSE match_key END WHERE record_id = ?",
            (
                new_key,
                orjson.dumps(new_data),
                rule is not None,
                match_key(rule, new_data) if rule is not None else None,
                record_id,
            ),
        )
        searchable_changed = any(
            search_text(data.get(name)) != search_text(new_data.get(name)) for name in fields
        )
        if not deleted and searchable_changed:
            self._unindex(db, stream, connection_id, fields, [(record_id, data)])
            self._index(db, stream, connection_id, fields, [(record_id, new_data)])
        report.rekeyed += 1


def _busy_connections(db: sqlite3.Connection) -> frozenset[str]:
    """Connections with a live stage: a lease, or leftovers of a stage still being cleared."""
    rows = db.execute(
        "SELECT connection_id FROM run_leases UNION SELECT connection_id FROM stage_cleanup"
    ).fetchall()
    return frozenset(row[0] for row in rows)
