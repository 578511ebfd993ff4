"""Blob references on PostgreSQL: which records reference which blobs, holds of running
stages, and the queue of blobs that may have become garbage (the SQLite store's module says
what each is for; the files live in the blob directory, `ownstream/blobs.py`).

What differs is that several processes hold and collect at once, with no writer lock to
order them. The collector must never delete a file between a stage's hold and the placing of
its file (the stage places the file after its hold commits). So a transaction that takes holds
first takes the blob advisory lock *shared* (holds never wait for each other), and each
collection transaction takes it *exclusively*: it waits until every hold in flight has
committed, so its check (a fresh snapshot per statement) sees them, and a hold that comes
later waits until the collection has committed, then places its file anew.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ownstream.model import ReadScope
from ownstream.records import blob_field_names
from ownstream.store.base import BlobAccess
from ownstream.store.planner import BlobUse
from ownstream.store.postgres.database import Connection as Db
from ownstream.store.postgres.database import PostgresBase
from ownstream.store.postgres.reads import scope_filters, visible

GARBAGE_CHUNK = 200
# pg_advisory_xact_lock key: shared by transactions taking holds, exclusive while collecting
# ("ownblob" in hex)
BLOB_LOCK = 0x6F776E626C6F62

_UNUSED = (
    "NOT EXISTS (SELECT 1 FROM record_blobs WHERE blob_id = {id}) "
    "AND NOT EXISTS (SELECT 1 FROM blob_holds WHERE blob_id = {id})"
)


class BlobReferences(PostgresBase):
    # writes inside other operations' transactions ---------------------------------------
    @staticmethod
    def _add_blob_refs(db: Db, refs: Sequence[tuple[int, BlobUse]]) -> None:
        if not refs:
            return
        db.execute(
            "INSERT INTO record_blobs (record_id, field, blob_id, mime_type) "
            "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) "
            "ON CONFLICT DO NOTHING",
            (
                [record_id for record_id, _ in refs],
                [use.field for _, use in refs],
                [use.blob_id for _, use in refs],
                [use.mime_type for _, use in refs],
            ),
        )

    def _drop_blob_refs(self, db: Db, record_ids: Sequence[int]) -> None:
        """Forget what these record rows reference; blobs left unused are queued."""
        self._queue_blobs(db, self._unlink_blob_refs(db, record_ids))

    def _replace_blob_refs(
        self, db: Db, record_ids: Sequence[int], refs: Sequence[tuple[int, BlobUse]]
    ) -> None:
        """These rows now reference `refs`; what they referenced before and no longer does
        is queued if nothing else uses it."""
        before = self._unlink_blob_refs(db, record_ids)
        self._add_blob_refs(db, refs)
        self._queue_blobs(db, before - {use.blob_id for _, use in refs})

    @staticmethod
    def _unlink_blob_refs(db: Db, record_ids: Sequence[int]) -> set[str]:
        if not record_ids:
            return set()
        return {
            row[0]
            for row in db.execute(
                "DELETE FROM record_blobs WHERE record_id = ANY(%s) RETURNING blob_id",
                (list(record_ids),),
            )
        }

    @staticmethod
    def _copy_blob_refs(db: Db, pairs: Sequence[tuple[int, int]]) -> None:
        """(to, from): a parked copy references what the head it copies referenced."""
        if not pairs:
            return
        db.execute(
            "INSERT INTO record_blobs (record_id, field, blob_id, mime_type) "
            "SELECT u.copy_id, b.field, b.blob_id, b.mime_type "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS u (copy_id, head_id) "
            "JOIN record_blobs b ON b.record_id = u.head_id ON CONFLICT DO NOTHING",
            ([copy_id for copy_id, _ in pairs], [head_id for _, head_id in pairs]),
        )

    def _move_blob_refs(self, db: Db, pairs: Sequence[tuple[int, int]]) -> None:
        """(from, to): restored heads take over the references of the parked copies they are
        restored from."""
        if not pairs:
            return
        self._drop_blob_refs(db, [head_id for _, head_id in pairs])
        db.execute(
            "UPDATE record_blobs b SET record_id = u.head_id "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS u (copy_id, head_id) "
            "WHERE b.record_id = u.copy_id",
            ([copy_id for copy_id, _ in pairs], [head_id for _, head_id in pairs]),
        )

    def _release_holds(self, db: Db, stage_sql: str, params: Sequence[object]) -> None:
        """Drop the holds of the stages `stage_sql` selects; blobs left unused are queued."""
        released = {
            row[0]
            for row in db.execute(
                f"DELETE FROM blob_holds WHERE stage IN ({stage_sql}) RETURNING blob_id", params
            )
        }
        self._queue_blobs(db, released)

    def _queue_blobs(self, db: Db, blob_ids: Iterable[str]) -> int:
        """Queue the blobs nothing references or holds any more (the collector checks again);
        how many were newly queued."""
        wanted = sorted(set(blob_ids))
        if not wanted:
            return 0
        return db.execute(
            "INSERT INTO blob_garbage (blob_id, queued_at) SELECT u.blob_id, %s "
            "FROM unnest(%s::text[]) AS u (blob_id) WHERE "
            + _UNUSED.format(id="u.blob_id")
            + " ON CONFLICT (blob_id) DO NOTHING",
            (self._now(), wanted),
        ).rowcount

    @staticmethod
    def _take_holds(db: Db, stage: int, blob_ids: Sequence[str]) -> None:
        """The stage holds these blobs; waits for a collection in progress (the module
        docstring says why)."""
        if not blob_ids:
            return
        db.execute("SELECT pg_advisory_xact_lock_shared(%s)", (BLOB_LOCK,))
        db.execute(
            "INSERT INTO blob_holds (stage, blob_id) SELECT %s, unnest(%s::text[]) "
            "ON CONFLICT DO NOTHING",
            (stage, list(blob_ids)),
        )

    @staticmethod
    def _connection_blobs(db: Db, connection_id: str, blob_ids: Sequence[str]) -> set[str]:
        """Which of these blobs a record of the connection references (any version)."""
        return {
            row[0]
            for row in db.execute(
                "SELECT DISTINCT b.blob_id FROM record_blobs b "
                "JOIN records r ON r.record_id = b.record_id "
                "WHERE b.blob_id = ANY(%s) AND r.connection_id = %s",
                (list(blob_ids), connection_id),
            )
        }

    # the protocol -----------------------------------------------------------------------
    def readable_blob(self, scopes: Sequence[ReadScope], blob_id: str) -> BlobAccess | None:
        """A live, published record one of the scopes can read that references the blob in
        a granted field (connections, time window, resources and filters as every read
        applies them), or None."""
        clauses: list[str] = []
        params: list[object] = []
        for scope in scopes:
            names = blob_field_names(scope.stream)
            fields = [f for f in scope.fields if f in names]
            if not fields or not scope.connection_ids:
                continue
            filters, extra = scope_filters(scope, "r")
            clauses.append(
                " AND ".join(
                    [
                        "r.stream = %s",
                        "r.connection_id = ANY(%s)",
                        "b.field = ANY(%s)",
                        *filters,
                    ]
                )
            )
            params += [scope.stream.name, list(scope.connection_ids), fields, *extra]
        if not clauses:
            return None
        row = self._row(
            "SELECT b.mime_type, r.stream, r.connection_id FROM record_blobs b "
            "JOIN records r ON r.record_id = b.record_id "
            "JOIN connections k ON k.connection_id = r.connection_id "
            f"WHERE b.blob_id = %s AND NOT r.deleted AND {visible('r', 'k')} "
            f"AND (({') OR ('.join(clauses)})) ORDER BY r.record_id LIMIT 1",
            [blob_id, *params],
        )
        return None if row is None else BlobAccess(*row)

    def queue_unused_blobs(self, blob_ids: Sequence[str]) -> int:
        """Queue those of these blobs nothing references or holds; how many were queued."""
        queued = 0
        ids = list(blob_ids)
        for start in range(0, len(ids), GARBAGE_CHUNK):
            with self._tx() as db:
                queued += self._queue_blobs(db, ids[start : start + GARBAGE_CHUNK])
        return queued

    def collect_blob_garbage(self, delete: Callable[[str], None]) -> int:
        """Delete (with `delete`) each queued blob still unused, inside the transaction that
        checked it under the exclusive blob lock, and empty the queue; how many were
        deleted."""
        deleted = 0
        if self._row("SELECT 1 FROM blob_garbage LIMIT 1") is None:
            return deleted  # nothing queued: no lock for nothing
        while True:
            with self._tx() as db:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (BLOB_LOCK,))
                queued = [
                    row[0]
                    for row in db.execute(
                        "SELECT blob_id FROM blob_garbage ORDER BY queued_at, blob_id LIMIT %s",
                        (GARBAGE_CHUNK,),
                    )
                ]
                if not queued:
                    return deleted
                unused = {
                    row[0]
                    for row in db.execute(
                        "SELECT blob_id FROM blob_garbage WHERE blob_id = ANY(%s) AND "
                        + _UNUSED.format(id="blob_garbage.blob_id"),
                        (queued,),
                    )
                }
                for blob_id in queued:
                    if blob_id in unused:
                        delete(blob_id)
                        deleted += 1
                db.execute("DELETE FROM blob_garbage WHERE blob_id = ANY(%s)", (queued,))

