"""Blob references: which records reference which blobs, holds of running stages, and the
queue of blobs that may have become garbage.

The files themselves live in the blob directory (`ownstream/blobs.py`); this module only knows
their ids. A blob is in use while a record row (a head or a parked version, staged or
published) references it or a stage holds it. Whatever drops a reference or a hold queues the
blob in the same transaction, and `collect_blob_garbage` deletes the file of each queued blob
still unused *inside* the transaction that checked it, so a stage cannot take a hold between
the check and the deletion (its hold waits for the writer lock, and it places the file after).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence

from ownstream.model import ReadScope
from ownstream.records import blob_field_names
from ownstream.store.base import BlobAccess
from ownstream.store.planner import BlobUse
from ownstream.store.sqlite.database import SQLiteBase, chunks, marks
from ownstream.store.sqlite.reads import scope_filters, visible

GARBAGE_CHUNK = 200

_UNUSED = (
    "NOT EXISTS (SELECT 1 FROM record_blobs WHERE blob_id = {id}) "
    "AND NOT EXISTS (SELECT 1 FROM blob_holds WHERE blob_id = {id})"
)


class BlobReferences(SQLiteBase):
    # writes inside other operations' transactions ---------------------------------------
    def _add_blob_refs(
        self, db: sqlite3.Connection, refs: Iterable[tuple[int, BlobUse]]
    ) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO record_blobs (record_id, field, blob_id, mime_type) "
            "VALUES (?, ?, ?, ?)",
            [(record_id, use.field, use.blob_id, use.mime_type) for record_id, use in refs],
        )

    def _drop_blob_refs(self, db: sqlite3.Connection, record_ids: Sequence[int]) -> None:
        """Forget what these record rows reference; blobs left unused are queued."""
        self._queue_blobs(db, self._unlink_blob_refs(db, record_ids))

    def _replace_blob_refs(
        self, db: sqlite3.Connection, record_ids: Sequence[int], refs: Sequence[tuple[int, BlobUse]]
    ) -> None:
        """These rows now reference `refs`; what they referenced before and no longer does
        is queued if nothing else uses it."""
        before = self._unlink_blob_refs(db, record_ids)
        self._add_blob_refs(db, refs)
        self._queue_blobs(db, before - {use.blob_id for _, use in refs})

    def _unlink_blob_refs(self, db: sqlite3.Connection, record_ids: Sequence[int]) -> set[str]:
        dropped: set[str] = set()
        for chunk in chunks(list(record_ids)):
            id_marks = marks(len(chunk))
            found = {
                row[0]
                for row in db.execute(
                    f"SELECT blob_id FROM record_blobs WHERE record_id IN ({id_marks})", chunk
                )
            }
            if found:
                db.execute(f"DELETE FROM record_blobs WHERE record_id IN ({id_marks})", chunk)
                dropped |= found
        return dropped

    def _copy_blob_refs(self, db: sqlite3.Connection, pairs: Sequence[tuple[int, int]]) -> None:
        """(to, from): a parked copy references what the head it copies referenced."""
        db.executemany(
            "INSERT OR IGNORE INTO record_blobs (record_id, field, blob_id, mime_type) "
            "SELECT ?, field, blob_id, mime_type FROM record_blobs WHERE record_id = ?",
            pairs,
        )

    def _move_blob_refs(self, db: sqlite3.Connection, source: int, target: int) -> None:
        """A restored head takes over the references of the parked copy it is restored from."""
        self._drop_blob_refs(db, [target])
        db.execute("UPDATE record_blobs SET record_id = ? WHERE record_id = ?", (target, source))

    def _release_holds(
        self, db: sqlite3.Connection, stage_sql: str, params: Sequence[object]
    ) -> None:
        """Drop the holds of the stages `stage_sql` selects; blobs left unused are queued."""
        released = [
            row[0]
            for row in db.execute(
                f"SELECT DISTINCT blob_id FROM blob_holds WHERE stage IN ({stage_sql})", params
            )
        ]
        if released:
            db.execute(f"DELETE FROM blob_holds WHERE stage IN ({stage_sql})", params)
            self._queue_blobs(db, released)

    def _queue_blobs(self, db: sqlite3.Connection, blob_ids: Iterable[str]) -> None:
        """Queue the blobs nothing references or holds any more (the collector checks again)."""
        now = self._now()
        db.executemany(
            "INSERT OR IGNORE INTO blob_garbage (blob_id, queued_at) SELECT ?, ? WHERE "
            + _UNUSED.format(id="?"),
            [(blob_id, now, blob_id, blob_id) for blob_id in blob_ids],
        )

    def _connection_blobs(self, connection_id: str, blob_ids: Sequence[str]) -> set[str]:
        """Which of these blobs a record of the connection references (any version)."""
        found: set[str] = set()
        for chunk in chunks(list(blob_ids)):
            found.update(
                row[0]
                for row in self._db().execute(
                    "SELECT DISTINCT b.blob_id FROM record_blobs b "
                    "JOIN records r ON r.record_id = b.record_id "
                    f"WHERE b.blob_id IN ({marks(len(chunk))}) AND r.connection_id = ?",
                    [*chunk, connection_id],
                )
            )
        return found

    # the protocol -----------------------------------------------------------------------
    def readable_blob(self, scopes: Sequence[ReadScope], blob_id: str) -> BlobAccess | None:
        """A live, published record one of the scopes can read that references the blob in
        a granted field (connections, time window, resources and filters as every read
        applies them), or None."""
        clauses, params = [], []
        for scope in scopes:
            names = blob_field_names(scope.stream)
            fields = [f for f in scope.fields if f in names]
            if not fields or not scope.connection_ids:
                continue
            filters, extra = scope_filters(scope, "r")
            clauses.append(
                " AND ".join(
                    [
                        "r.stream = ?",
                        f"r.connection_id IN ({marks(len(scope.connection_ids))})",
                        f"b.field IN ({marks(len(fields))})",
                        *filters,
                    ]
                )
            )
            params += [scope.stream.name, *scope.connection_ids, *fields, *extra]
        if not clauses:
            return None
        row = self._db().execute(
            "SELECT b.mime_type, r.stream, r.connection_id FROM record_blobs b "
            "JOIN records r ON r.record_id = b.record_id "
            "JOIN connections k ON k.connection_id = r.connection_id "
            f"WHERE b.blob_id = ? AND r.deleted = 0 AND {visible('r', 'k')} "
            f"AND (({') OR ('.join(clauses)})) ORDER BY r.record_id LIMIT 1",
            [blob_id, *params],
        ).fetchone()
        return None if row is None else BlobAccess(*row)

    def queue_unused_blobs(self, blob_ids: Sequence[str]) -> int:
        """Queue those of these blobs nothing references or holds; how many were queued."""
        queued = 0
        for chunk in chunks(list(blob_ids)):
            with self._tx() as db:
                before = db.total_changes
                self._queue_blobs(db, chunk)
                queued += db.total_changes - before
        return queued

    def collect_blob_garbage(self, delete: Callable[[str], None]) -> int:
        """Delete (with `delete`) each queued blob still unused, inside the transaction that
        checked it, and empty the queue; how many were deleted."""
        deleted = 0
        if self._db().execute("SELECT 1 FROM blob_garbage LIMIT 1").fetchone() is None:
            return deleted  # nothing queued: no write transaction for nothing
        while True:
            with self._tx() as db:
                queued = [
                    row[0]
                    for row in db.execute(
                        "SELECT blob_id FROM blob_garbage ORDER BY queued_at, blob_id LIMIT ?",
                        (GARBAGE_CHUNK,),
                    )
                ]
                if not queued:
                    return deleted
                unused = {
                    row[0]
                    for row in db.execute(
                        "SELECT blob_id FROM blob_garbage WHERE blob_id IN "
                        f"({marks(len(queued))}) AND " + _UNUSED.format(id="blob_garbage.blob_id"),
                        queued,
                    )
                }
                for blob_id in queued:
                    if blob_id in unused:
                        delete(blob_id)
                        deleted += 1
                db.execute(
                    f"DELETE FROM blob_garbage WHERE blob_id IN ({marks(len(queued))})", queued
                )

