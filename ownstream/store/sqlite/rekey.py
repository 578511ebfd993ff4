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
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import orjson

from ownstream.model import RecordRule
from ownstream.records import search_text
from ownstream.store.base import Rekey, RekeyReport
from ownstream.store.planner import stored_match_key
from ownstream.store.sqlite.database import chunks, dumps_text, marks
from ownstream.store.sqlite.search_index import SearchIndex

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
                    "FROM records "
                    "WHERE stream = ? AND parked = 0 AND record_id > ? ORDER BY record_id LIMIT ?",
                    (stream, last, REKEY_CHUNK),
                ).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                self._rekey_chunk(db, stream, rows, rekey, rule, report)
        if not report.deferred:
            with self._tx() as db:
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    (marker, dumps_text({**asdict(report), "at": self._now()})),
                )
        return report

    def _rekey_chunk(
        self,
        db: sqlite3.Connection,
        stream: str,
        rows: list[tuple[Any, ...]],
        rekey: Rekey,
        rule: RecordRule | None,
        report: RekeyReport,
    ) -> None:
        """Re-key one chunk, in order: a new key another record holds (in the database, or
        given earlier in the chunk) is a conflict, and the record keeps its key."""
        busy = _busy_connections(db)
        fields = self._search_fields(db, stream)
        found: list[tuple[int, str, str, dict[str, Any], bool, str, dict[str, Any]]] = []
        for record_id, connection_id, key, raw, deleted, stored in rows:
            if connection_id in busy:
                report.deferred += 1
                continue
            data = self._record_data(raw)
            new_key, new_data = rekey(data) or (key, data)
            fresh = stored_match_key(rule, new_data) if rule is not None else stored
            if (new_key, new_data) == (key, data) and fresh == stored:
                report.unchanged += 1
                continue
            found.append((record_id, connection_id, key, data, bool(deleted), new_key, new_data))
        taken = self._held_keys(db, stream, {(f[1], f[5]) for f in found if f[5] != f[2]})
        updates, unindex, index = [], [], []
        encoders: dict[str, Callable[[bytes], bytes]] = {}
        for record_id, connection_id, key, data, deleted, new_key, new_data in found:
            if new_key != key:
                if (connection_id, new_key) in taken:
                    report.conflicts += 1
                    continue
                taken.discard((connection_id, key))
                taken.add((connection_id, new_key))
            if connection_id not in encoders:
                encoders[connection_id] = self._record_encoder(db, connection_id, stream)
            updates.append(
                (
                    new_key,
                    encoders[connection_id](orjson.dumps(new_data)),
                    rule is not None,
                    stored_match_key(rule, new_data) if rule is not None else None,
                    record_id,
                )
            )
            if not deleted and any(
                search_text(data.get(name)) != search_text(new_data.get(name)) for name in fields
            ):
                unindex.append((connection_id, (record_id, data)))
                index.append((connection_id, (record_id, new_data)))
            report.rekeyed += 1
        db.executemany(
            "UPDATE record_rows SET record_key = ?, data = ?, match_key = "
            "CASE WHEN ? THEN ? ELSE match_key END WHERE record_id = ?",
            updates,
        )
        for connection_id, item in unindex:
            self._unindex(db, stream, connection_id, fields, [item])
        for connection_id, item in index:
            self._index(db, stream, connection_id, fields, [item])

    @staticmethod
    def _held_keys(
        db: sqlite3.Connection, stream: str, wanted: set[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Which of these (connection, key) pairs a record of the stream already holds."""
        by_connection: dict[str, list[str]] = {}
        for connection_id, key in sorted(wanted):
            by_connection.setdefault(connection_id, []).append(key)
        held: set[tuple[str, str]] = set()
        for connection_id, keys in by_connection.items():
            for chunk in chunks(keys):
                rows = db.execute(
                    "SELECT record_key FROM records WHERE connection_id = ? AND stream = ? "
                    f"AND record_key IN ({marks(len(chunk))})",
                    [connection_id, stream, *chunk],
                )
                held |= {(connection_id, key) for (key,) in rows}
        return held


def _busy_connections(db: sqlite3.Connection) -> frozenset[str]:
    """Connections with a live stage: a lease, or leftovers of a stage still being cleared."""
    rows = db.execute(
        "SELECT connection_id FROM run_leases UNION SELECT connection_id FROM stage_cleanup"
    ).fetchall()
    return frozenset(row[0] for row in rows)
