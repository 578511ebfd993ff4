"""Collection: stages, leases, staged batches, publication, and what runs and imports left.

A stage (one run, import or push) writes each batch in its own short transaction; readers do
not see its versions until `publish` moves the connection's published stage to it, one small
transaction whatever the stage wrote. Leases are short and renewed by the runtime's heartbeat;
every write is fenced by them. Clean-ups (parked versions after publication, everything of an
abandoned stage) run in short transactions too, and resume after a crash.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import orjson

from ownstream.clock import iso
from ownstream.errors import ConnectionRunActive, NotFound, RunLeaseLost
from ownstream.model import Acquisition, AcquisitionPath, StreamDefinition
from ownstream.store.base import (
    BatchReceipt,
    Binding,
    Coverage,
    Evidence,
    Lease,
    Publication,
    RunRecord,
    StreamBatch,
    Writes,
)
from ownstream.store.planner import (
    BatchPlan,
    BatchStats,
    CurrentRecord,
    Matching,
    MatchKeys,
    plan_batch,
)
from ownstream.store.sqlite.connections import ConnectionRecords
from ownstream.store.sqlite.database import chunks, dumps, dumps_text, marks

LEASE_SECONDS = 60
CLEANUP_CHUNK = 1000

_COPY_COLUMNS = (
    "scope, record_key, stage, version, deleted, data, emitted_at, "
    "cursor_value, consent_time, updated_at, deleted_at, paths, match_key"
)


@functools.lru_cache(maxsize=1024)  # a stream's records share a handful of path sets
def _paths_text(paths: frozenset[str]) -> str:
    return "," + ",".join(sorted(paths)) + ","


def _paths(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(",") if part)


class Collection(ConnectionRecords):
    lease_seconds: int = LEASE_SECONDS

    # stages and leases ----------------------------------------------------------------------
    def start_stage(
        self,
        binding: Binding,
        *,
        connector_key: str,
        acquisition_method: str,
        trigger: str,
        collection_mode: str,
        holder: str,
        run_id: str,
        batch_id: str | None = None,
    ) -> Acquisition:
        connection_id = binding.connection_id
        now = self.clock()
        with self._tx() as db:
            lease = db.execute(
                "SELECT run_id, run_seq, expires_at FROM run_leases WHERE connection_id = ?",
                (connection_id,),
            ).fetchone()
            if lease is not None and lease[2] > iso(now):
                raise ConnectionRunActive(
                    f"run {lease[0]} of connection {connection_id} is in progress",
                    connection_id=connection_id,
                    run_id=lease[0],
                )
            if lease is not None:
                self._fail_stalled(db, connection_id, lease[0], lease[1])
            cursor = db.execute(
                "INSERT INTO runs (run_id, connection_id, connector_key, acquisition_method, "
                "trigger, collection_mode, status, started_at, batch_id) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    run_id,
                    connection_id,
                    connector_key,
                    acquisition_method,
                    trigger,
                    collection_mode,
                    iso(now),
                    batch_id,
                ),
            )
            assert cursor.lastrowid is not None
            stage = cursor.lastrowid
            db.execute(
                "INSERT INTO run_leases (connection_id, run_id, run_seq, holder, acquired_at, "
                "renewed_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    connection_id,
                    run_id,
                    stage,
                    holder,
                    iso(now),
                    iso(now),
                    iso(now + timedelta(seconds=self.lease_seconds)),
                ),
            )
        # an abandoned stage of this connection must be gone before this one writes
        self._clean_pending(connection_id)
        return Acquisition(
            run_id, connection_id, connector_key, acquisition_method, stage, batch_id
        )

    def _fail_stalled(
        self, db: sqlite3.Connection, connection_id: str, run_id: str, stage: int
    ) -> None:
        """A stale lease: its run's process died. Fail the run and queue its stage's removal."""
        db.execute(
            "UPDATE runs SET status = 'failed', ended_at = ?, error = ? "
            "WHERE run_id = ? AND status = 'running'",
            (
                self._now(),
                dumps(
                    {
                        "code": "run_stalled",
                        "message": "the process running it stopped renewing its lease; "
                        "nothing it staged was kept",
                    }
                ),
                run_id,
            ),
        )
        db.execute(
            "INSERT OR IGNORE INTO stage_cleanup (stage, connection_id, kind, queued_at) "
            "VALUES (?, ?, 'abandoned', ?)",
            (stage, connection_id, self._now()),
        )
        db.execute(
            "DELETE FROM run_leases WHERE connection_id = ? AND run_id = ?",
            (connection_id, run_id),
        )

    def renew_lease(self, acquisition: Acquisition) -> None:
        with self._tx() as db:
            self._hold_lease(db, acquisition)

    def hold_blobs(self, acquisition: Acquisition, blob_ids: Sequence[str]) -> None:
        with self._tx() as db:
            self._hold_lease(db, acquisition)
            db.executemany(
                "INSERT OR IGNORE INTO blob_holds (stage, blob_id) VALUES (?, ?)",
                [(acquisition.stage, blob_id) for blob_id in blob_ids],
            )

    def hold_known_blobs(self, acquisition: Acquisition, blob_ids: Sequence[str]) -> set[str]:
        if not blob_ids:
            return set()
        with self._tx() as db:
            self._hold_lease(db, acquisition)
            known = self._connection_blobs(acquisition.connection_id, blob_ids) | {
                row[0]
                for row in db.execute(
                    f"SELECT blob_id FROM blob_holds WHERE stage = ? AND blob_id IN "
                    f"({marks(len(blob_ids))})",
                    [acquisition.stage, *blob_ids],
                )
            }
            db.executemany(
                "INSERT OR IGNORE INTO blob_holds (stage, blob_id) VALUES (?, ?)",
                [(acquisition.stage, blob_id) for blob_id in sorted(known)],
            )
        return known

    def _hold_lease(self, db: sqlite3.Connection, acquisition: Acquisition) -> None:
        """Fence a write: only the run holding its connection's lease may write, so a run
        whose lease was taken over (or whose connection was deleted) cannot."""
        now = self.clock()
        cursor = db.execute(
            "UPDATE run_leases SET renewed_at = ?, expires_at = ? "
            "WHERE connection_id = ? AND run_id = ?",
            (
                iso(now),
                iso(now + timedelta(seconds=self.lease_seconds)),
                acquisition.connection_id,
                acquisition.run_id,
            ),
        )
        if cursor.rowcount != 1:
            raise RunLeaseLost(
                f"run {acquisition.run_id} no longer holds the lease of connection "
                f"{acquisition.connection_id}; nothing more was written",
                run_id=acquisition.run_id,
                connection_id=acquisition.connection_id,
            )

    def active_lease(self, connection_id: str) -> Lease | None:
        row = self._db().execute(
            "SELECT connection_id, run_id, holder, acquired_at, renewed_at, expires_at "
            "FROM run_leases WHERE connection_id = ?",
            (connection_id,),
        ).fetchone()
        return None if row is None else Lease(*row)

    def reclaim_stalled(self) -> list[str]:
        now = self._now()
        stale = self._db().execute(
            "SELECT connection_id, run_id, run_seq FROM run_leases WHERE expires_at <= ?", (now,)
        ).fetchall()
        reclaimed = []
        for connection_id, run_id, stage in stale:
            with self._tx() as db:
                still = db.execute(
                    "SELECT 1 FROM run_leases WHERE connection_id = ? AND run_id = ? "
                    "AND expires_at <= ?",
                    (connection_id, run_id, now),
                ).fetchone()
                if still is None:
                    continue
                self._fail_stalled(db, connection_id, run_id, stage)
            reclaimed.append(run_id)
        self._clean_pending(None)
        self.purge_deleted()
        return reclaimed

    # writes ---------------------------------------------------------------------------------
    def commit_batch(self, acquisition: Acquisition, writes: Writes) -> BatchStats:
        """Plan the batch from the heads it touches (read without the writer's lock: the lease
        means no one else writes this connection's records meanwhile), then apply the plans in
        one short write transaction, fenced by the lease."""
        db = self._db()
        path = AcquisitionPath(acquisition.connector_key, acquisition.acquisition_method)
        plans: list[tuple[StreamDefinition, BatchPlan]] = []
        for batch in writes:
            if not batch.records:
                continue
            definition = batch.definition
            keys = list(dict.fromkeys(r.record_key for r in batch.records))
            current = self._current(db, acquisition.connection_id, definition.name, keys)
            matching = None
            if batch.rule is not None:
                matching = self._matching(db, acquisition.connection_id, batch, current)
            plans.append(
                (
                    definition,
                    plan_batch(
                        definition, path, acquisition.stage, current, batch.records, matching
                    ),
                )
            )
        total = BatchStats()
        with self._tx(commit_behind=True) as db:
            self._hold_lease(db, acquisition)
            for definition, plan in plans:
                self._apply(db, acquisition, definition, plan)
                total.add(plan.stats)
        return total

    def _matching(
        self,
        db: sqlite3.Connection,
        connection_id: str,
        batch: StreamBatch,
        current: dict[str, CurrentRecord],
    ) -> Matching:
        """The live records sharing a match key with the batch (added to `current`)."""
        assert batch.rule is not None
        keys = MatchKeys(batch.rule)
        wanted = {
            key
            for write in batch.records
            if write.op == "upsert" and (key := keys(write.data)) is not None
        }
        candidates: dict[str, list[str]] = {}
        found = self._heads(db, connection_id, batch.definition.name, "match_key", sorted(wanted))
        for record_key, (key, record) in found.items():
            if key is not None and not record.deleted:
                current.setdefault(record_key, record)
                candidates.setdefault(key, []).append(record_key)
        return Matching(batch.rule, candidates, keys)

    def _current(
        self, db: sqlite3.Connection, connection_id: str, stream: str, keys: Sequence[str]
    ) -> dict[str, CurrentRecord]:
        """The head of each record by key, the stage's own staged heads included."""
        return {key: record for key, (_, record) in self._heads(
            db, connection_id, stream, "record_key", keys
        ).items()}

    def _heads(
        self,
        db: sqlite3.Connection,
        connection_id: str,
        stream: str,
        column: str,
        values: Sequence[str],
    ) -> dict[str, tuple[str | None, CurrentRecord]]:
        """Heads whose `column` (record_key or match_key) is one of `values`, by record key,
        with their match key."""
        found: dict[str, tuple[str | None, CurrentRecord]] = {}
        scope = self._record_scope(db, connection_id, stream)
        if scope is None:
            return found
        for chunk in chunks(list(values)):
            rows = db.execute(
                "SELECT record_key, record_id, data, version, deleted, paths, stage, emitted_at, "
                "match_key FROM record_rows WHERE scope = ? AND parked = 0 "
                f"AND {column} IN ({marks(len(chunk))})",
                [scope, *chunk],
            )
            for key, record_id, data, version, deleted, paths, stage, emitted_at, match in rows:
                found[key] = (
                    match,
                    CurrentRecord(
                        record_id,
                        self._record_json(data),
                        version,
                        bool(deleted),
                        _paths(paths),
                        stage,
                        emitted_at,
                    ),
                )
        return found

    def _next_record_id(self, db: sqlite3.Connection) -> int:
        # the high-water mark, not max(record_id): ids of deleted records are never reused
        row = db.execute(
            "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'record_rows'"
        ).fetchone()
        return int(row[0]) + 1

    def _apply(
        self,
        db: sqlite3.Connection,
        acquisition: Acquisition,
        definition: StreamDefinition,
        plan: BatchPlan,
    ) -> None:
        connection_id, stream, stage = (
            acquisition.connection_id,
            definition.name,
            acquisition.stage,
        )
        now = self._now()
        fields = self._search_fields(db, stream, definition.searchable_fields)
        next_id = self._next_record_id(db)
        scope = self._record_scope(db, connection_id, stream, create=True)
        encode = self._record_encoder(
            db, connection_id, stream, [insert.head.encoded for insert in plan.inserts]
        )
        inserts: list[tuple[Any, ...]] = []
        changes: list[tuple[Any, ...]] = []
        index: list[tuple[int, dict[str, Any]]] = []
        unindex: list[tuple[int, dict[str, Any]]] = []
        for insert in plan.inserts:
            head = insert.head
            inserts.append(
                (
                    next_id,
                    scope,
                    head.record_key,
                    stage,
                    head.version,
                    int(head.deleted),
                    encode(head.encoded),
                    head.emitted_at,
                    head.cursor_value,
                    head.consent_time,
                    now,
                    now if head.deleted else None,
                    _paths_text(head.paths),
                    head.match_key,
                )
            )
            if not head.deleted:
                index.append((next_id, head.data))
            next_id += 1
        if inserts:
            db.executemany(
                "INSERT INTO record_rows (record_id, scope, record_key, stage, version, deleted, "
                "data, emitted_at, cursor_value, consent_time, updated_at, deleted_at, paths, "
                f"match_key) VALUES ({marks(14)})",
                inserts,
            )
            self._add_blob_refs(
                db,
                [
                    (row[0], use)
                    for row, insert in zip(inserts, plan.inserts, strict=True)
                    for use in insert.head.blobs
                ],
            )
        parked, updates = [], []
        for version in plan.versions:
            previous, head, change = version.previous, version.head, version.change
            if version.park:
                parked.append((next_id, stage, version.record_id))
                if not previous.deleted:
                    index.append((next_id, previous.data))
                next_id += 1
            if not previous.deleted:
                unindex.append((version.record_id, previous.data))
            if not head.deleted:
                index.append((version.record_id, head.data))
            updates.append(
                (
                    stage,
                    head.version,
                    int(head.deleted),
                    encode(head.encoded),
                    head.cursor_value,
                    head.consent_time,
                    now,
                    now if head.deleted else None,
                    _paths_text(head.paths),
                    head.match_key,
                    version.record_id,
                )
            )
            changes.append(
                (
                    stage,
                    version.record_id,
                    change.version,
                    change.op,
                    None if change.fields is None else dumps_text(list(change.fields)),
                    None if change.prior is None else dumps(change.prior),
                )
            )
        if parked:
            db.executemany(
                f"INSERT INTO record_rows (record_id, parked, {_COPY_COLUMNS}) "
                f"SELECT ?, ?, {_COPY_COLUMNS} FROM record_rows WHERE record_id = ?",
                parked,
            )
        if definition.blob_fields and plan.versions:
            # a parked copy keeps what the published head referenced; the head now references
            # what its new version does (a version this stage wrote before is simply replaced)
            self._copy_blob_refs(db, [(copy_id, head_id) for copy_id, _, head_id in parked])
            self._replace_blob_refs(
                db,
                [v.record_id for v in plan.versions],
                [(v.record_id, use) for v in plan.versions for use in v.head.blobs],
            )
        self._unindex(db, stream, connection_id, fields, unindex)
        if updates:
            db.executemany(
                "UPDATE record_rows SET stage = ?, version = ?, deleted = ?, data = ?, "
                "cursor_value = ?, consent_time = ?, updated_at = ?, deleted_at = ?, paths = ?, "
                "match_key = ? WHERE record_id = ?",
                updates,
            )
        self._index(db, stream, connection_id, fields, index)
        if inserts:
            # the inserts' ids are consecutive: their change-log rows in one statement (one
            # AUTOINCREMENT update, not one per row: a quarter of the cost)
            db.execute(
                "WITH RECURSIVE ids(id) AS (SELECT ? UNION ALL SELECT id + 1 FROM ids "
                "WHERE id < ?) INSERT INTO record_changes (stage, record_id, version, op) "
                "SELECT ?, id, 1, 'insert' FROM ids",
                (inserts[0][0], inserts[-1][0], stage),
            )
        if changes:
            db.executemany(
                "INSERT INTO record_changes (stage, record_id, version, op, fields, prior) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                changes,
            )
        if plan.sightings:
            db.executemany(
                "INSERT OR IGNORE INTO record_evidence (record_id, stage, add_path) "
                "VALUES (?, ?, ?)",
                [(s.record_id, stage, int(s.add_path)) for s in plan.sightings],
            )
            mark = acquisition.connector_key + ","
            db.executemany(
                "UPDATE record_rows SET paths = paths || ? WHERE record_id = ?",
                [(mark, s.record_id) for s in plan.sightings if s.add_path],
            )
        stats = plan.stats
        db.execute(
            "INSERT INTO stage_stats (stage, stream, connector_key, acquisition_method, "
            "count_delta, changed, seen, window_start, window_end) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
            "count_delta = count_delta + excluded.count_delta, "
            "changed = changed + excluded.changed, seen = seen + excluded.seen, "
            "window_start = min(coalesce(window_start, excluded.window_start), "
            "coalesce(excluded.window_start, window_start)), "
            "window_end = max(coalesce(window_end, excluded.window_end), "
            "coalesce(excluded.window_end, window_end))",
            (
                stage,
                stream,
                acquisition.connector_key,
                acquisition.acquisition_method,
                stats.count_delta,
                len(plan.inserts) + len(plan.versions),
                stats.seen,
                stats.window_start,
                stats.window_end,
            ),
        )

    # publication ----------------------------------------------------------------------------
    def publish(self, acquisition: Acquisition, publication: Publication) -> None:
        connection_id, stage = acquisition.connection_id, acquisition.stage
        with self._tx() as db:
            self._hold_lease(db, acquisition)
            now = self._now()
            binding = publication.binding
            exists = db.execute(
                "SELECT 1 FROM connections WHERE connection_id = ?", (connection_id,)
            ).fetchone()
            if binding is not None and binding.create is not None and exists is None:
                self._insert_connection(db, connection_id, binding.create)
            if binding is not None and binding.attach is not None:
                self._attach(db, connection_id, binding.attach)
            db.execute(
                "UPDATE connections SET published_stage = ? WHERE connection_id = ?",
                (stage, connection_id),
            )
            self._fold_stats(db, acquisition, now)
            if publication.states:
                db.executemany(
                    "INSERT INTO connection_state (connection_id, connector_key, stream, cursor, "
                    "run_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "cursor = excluded.cursor, run_id = excluded.run_id, "
                    "updated_at = excluded.updated_at",
                    [
                        (
                            connection_id,
                            acquisition.connector_key,
                            stream,
                            dumps(cursor),
                            acquisition.run_id,
                            now,
                        )
                        for stream, cursor in publication.states.items()
                    ],
                )
            db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'publish_clock'"
            )
            (clock,) = db.execute(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'publish_clock'"
            ).fetchone()
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, counts = ?, known_gaps = ?, "
                "checkpoint = ?, error = ?, publish_seq = ?, published_at = ? WHERE run_id = ?",
                (
                    publication.status,
                    now,
                    dumps(publication.counts),
                    dumps(publication.known_gaps),
                    dumps(publication.checkpoint),
                    None if publication.error is None else dumps(publication.error),
                    clock,
                    now,
                    acquisition.run_id,
                ),
            )
            if publication.receipt is not None:
                self._save_receipt(db, publication.receipt)
            self._release_holds(db, "?", [stage])
            db.execute(
                "INSERT OR IGNORE INTO stage_cleanup (stage, connection_id, kind, queued_at) "
                "VALUES (?, ?, 'published', ?)",
                (stage, connection_id, now),
            )
            db.execute(
                "DELETE FROM run_leases WHERE connection_id = ? AND run_id = ?",
                (connection_id, acquisition.run_id),
            )
        self._clean_stage(stage, "published")

    def _fold_stats(self, db: sqlite3.Connection, acquisition: Acquisition, now: str) -> None:
        """A stage's per-stream tallies become the connection's counts and path coverage."""
        rows = db.execute(
            "SELECT stream, connector_key, acquisition_method, count_delta, changed, seen, "
            "window_start, window_end FROM stage_stats WHERE stage = ?",
            (acquisition.stage,),
        ).fetchall()
        for stream, connector_key, method, delta, changed, seen, start, end in rows:
            if changed:
                db.execute(
                    "INSERT INTO stream_stats (connection_id, stream, record_count, last_updated) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "record_count = record_count + excluded.record_count, "
                    "last_updated = excluded.last_updated",
                    (acquisition.connection_id, stream, delta, now),
                )
            db.execute(
                "INSERT INTO coverage (connection_id, stream, connector_key, acquisition_method, "
                "window_start, window_end, last_run_id, last_batch_id, last_at, records_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "window_start = min(coalesce(window_start, excluded.window_start), "
                "coalesce(excluded.window_start, window_start)), "
                "window_end = max(coalesce(window_end, excluded.window_end), "
                "coalesce(excluded.window_end, window_end)), last_run_id = excluded.last_run_id, "
                "last_batch_id = excluded.last_batch_id, last_at = excluded.last_at, "
                "records_seen = records_seen + excluded.records_seen",
                (
                    acquisition.connection_id,
                    stream,
                    connector_key,
                    method,
                    start,
                    end,
                    acquisition.run_id,
                    acquisition.batch_id,
                    now,
                    seen,
                ),
            )
        db.execute("DELETE FROM stage_stats WHERE stage = ?", (acquisition.stage,))

    def abandon(self, acquisition: Acquisition, error: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'failed', ended_at = ?, error = ? "
                "WHERE run_id = ? AND status = 'running'",
                (self._now(), dumps(error), acquisition.run_id),
            )
            db.execute(
                "INSERT OR IGNORE INTO stage_cleanup (stage, connection_id, kind, queued_at) "
                "VALUES (?, ?, 'abandoned', ?)",
                (acquisition.stage, acquisition.connection_id, self._now()),
            )
            db.execute(
                "DELETE FROM run_leases WHERE connection_id = ? AND run_id = ?",
                (acquisition.connection_id, acquisition.run_id),
            )
        self._clean_stage(acquisition.stage, "abandoned")

    # clean-up -------------------------------------------------------------------------------
    def _clean_pending(self, connection_id: str | None) -> None:
        where, params = self._where([("connection_id = ?", connection_id)])
        for stage, kind in self._db().execute(
            f"SELECT stage, kind FROM stage_cleanup{where} ORDER BY stage", params
        ).fetchall():
            self._clean_stage(stage, kind)

    def _clean_stage(self, stage: int, kind: str) -> None:
        if kind == "abandoned":
            self._restore_parked(stage)
            self._remove_inserts(stage)
            self._revert_sightings(stage)
            with self._tx() as db:
                db.execute("DELETE FROM record_changes WHERE stage = ?", (stage,))
                db.execute("DELETE FROM stage_stats WHERE stage = ?", (stage,))
                self._release_holds(db, "?", [stage])
                # an import is all or nothing: a failed one leaves no run (the audit trail
                # keeps the attempt); a failed run of a connection stays in its history
                db.execute(
                    "DELETE FROM runs WHERE run_seq = ? AND batch_id IS NOT NULL", (stage,)
                )
        else:
            self._drop_parked(stage)
        with self._tx() as db:
            db.execute("DELETE FROM stage_cleanup WHERE stage = ?", (stage,))

    def _parked_chunk(self, db: sqlite3.Connection, stage: int) -> list[tuple[Any, ...]]:
        return db.execute(
            "SELECT record_id, connection_id, stream, record_key, data, deleted FROM records "
            "WHERE parked = ? AND parked != 0 LIMIT ?",  # the partial index
            (stage, CLEANUP_CHUNK),
        ).fetchall()

    def _drop_parked(self, stage: int) -> None:
        """After publication: the versions the stage superseded are garbage."""
        while True:
            with self._tx() as db:
                rows = self._parked_chunk(db, stage)
                if not rows:
                    return
                live = _live_by_scope(rows, self._record_data)
                for (stream, connection_id), items in live.items():
                    self._unindex(db, stream, connection_id, self._search_fields(db, stream), items)
                ids = [row[0] for row in rows]
                self._drop_blob_refs(db, ids)
                db.execute(f"DELETE FROM record_rows WHERE record_id IN ({marks(len(ids))})", ids)

    def _restore_parked(self, stage: int) -> None:
        """After abandonment: each head the stage rewrote gets its parked version back."""
        while True:
            with self._tx() as db:
                rows = self._parked_chunk(db, stage)
                if not rows:
                    return
                for copy_id, connection_id, stream, key, data, deleted in rows:
                    head = db.execute(
                        "SELECT record_id, data, deleted FROM records WHERE connection_id = ? "
                        "AND stream = ? AND record_key = ? AND parked = 0",
                        (connection_id, stream, key),
                    ).fetchone()
                    fields = self._search_fields(db, stream)
                    restored = self._record_data(data)
                    if not deleted:
                        self._unindex(db, stream, connection_id, fields, [(copy_id, restored)])
                    if head is not None:
                        head_id, head_data, head_deleted = head
                        if not head_deleted:
                            staged = self._record_data(head_data)
                            self._unindex(db, stream, connection_id, fields, [(head_id, staged)])
                        db.execute(
                            f"UPDATE record_rows SET ({_COPY_COLUMNS}) = (SELECT {_COPY_COLUMNS} "
                            "FROM record_rows WHERE record_id = ?) WHERE record_id = ?",
                            (copy_id, head_id),
                        )
                        if not deleted:
                            self._index(db, stream, connection_id, fields, [(head_id, restored)])
                        self._move_blob_refs(db, copy_id, head_id)
                    self._drop_blob_refs(db, [copy_id])
                    db.execute("DELETE FROM record_rows WHERE record_id = ?", (copy_id,))

    def _remove_inserts(self, stage: int) -> None:
        """After abandonment: records the stage created are removed."""
        last = 0
        while True:
            with self._tx() as db:
                rows = db.execute(
                    "SELECT c.seq, r.record_id, r.connection_id, r.stream, r.data, r.deleted "
                    "FROM record_changes c JOIN records r ON r.record_id = c.record_id "
                    "WHERE c.stage = ? AND c.version = 1 AND c.seq > ? AND r.stage = ? "
                    "ORDER BY c.seq LIMIT ?",
                    (stage, last, stage, CLEANUP_CHUNK),
                ).fetchall()
                if not rows:
                    return
                last = rows[-1][0]
                for (stream, connection_id), items in _live_by_scope(
                    [(r[1], r[2], r[3], None, r[4], r[5]) for r in rows], self._record_data
                ).items():
                    self._unindex(db, stream, connection_id, self._search_fields(db, stream), items)
                ids = [row[1] for row in rows]
                self._drop_blob_refs(db, ids)
                db.execute(f"DELETE FROM record_rows WHERE record_id IN ({marks(len(ids))})", ids)

    def _revert_sightings(self, stage: int) -> None:
        """After abandonment: path marks the stage's sightings added are taken back."""
        run = self._db().execute(
            "SELECT connector_key FROM runs WHERE run_seq = ?", (stage,)
        ).fetchone()
        mark = f",{run[0]}," if run else None
        while True:
            with self._tx() as db:
                rows = db.execute(
                    "SELECT record_id, add_path FROM record_evidence WHERE stage = ? LIMIT ?",
                    (stage, CLEANUP_CHUNK),
                ).fetchall()
                if not rows:
                    return
                if mark is not None:
                    db.executemany(
                        "UPDATE record_rows SET paths = replace(paths, ?, ',') WHERE record_id = ?",
                        [(mark, record_id) for record_id, add_path in rows if add_path],
                    )
                db.executemany(
                    "DELETE FROM record_evidence WHERE record_id = ? AND stage = ?",
                    [(record_id, stage) for record_id, _ in rows],
                )

    # what runs and imports left ---------------------------------------------------------------
    def _save_receipt(self, db: sqlite3.Connection, receipt: BatchReceipt) -> None:
        db.execute(
            "INSERT INTO acquisition_batches (batch_id, run_id, connection_id, connector_key,"
            " acquisition_method, parser_version, artifact_sha256, artifact_name, "
            "artifact_size, status, counts, window_start, window_end, warnings, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                receipt.batch_id,
                receipt.run_id,
                receipt.connection_id,
                receipt.connector_key,
                receipt.acquisition_method,
                receipt.parser_version,
                receipt.artifact_sha256,
                receipt.artifact_name,
                receipt.artifact_size,
                receipt.status,
                dumps(receipt.counts),
                receipt.window_start,
                receipt.window_end,
                dumps(receipt.warnings),
                receipt.created_at,
            ),
        )

    def connection_state(self, connection_id: str, connector_key: str) -> dict[str, Any]:
        rows = self._db().execute(
            "SELECT stream, cursor FROM connection_state WHERE connection_id = ? AND "
            "connector_key = ?",
            (connection_id, connector_key),
        )
        return {stream: orjson.loads(cursor) for stream, cursor in rows}

    def put_connection_state(
        self, connection_id: str, connector_key: str, states: dict[str, Any]
    ) -> None:
        with self._tx() as db:
            self.connection(connection_id)
            db.execute(
                "DELETE FROM connection_state WHERE connection_id = ? AND connector_key = ?",
                (connection_id, connector_key),
            )
            db.executemany(
                "INSERT INTO connection_state (connection_id, connector_key, stream, cursor, "
                "run_id, updated_at) VALUES (?, ?, ?, ?, '', ?)",
                [
                    (connection_id, connector_key, stream, dumps(cursor), self._now())
                    for stream, cursor in states.items()
                ],
            )

    def runs(self, connection_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        where, params = self._where([("connection_id = ?", connection_id)])
        rows = self._rows(
            f"SELECT * FROM runs{where} ORDER BY run_seq DESC LIMIT ?", [*params, limit]
        )
        return [
            RunRecord(
                run_id=r["run_id"],
                connection_id=r["connection_id"],
                connector_key=r["connector_key"],
                acquisition_method=r["acquisition_method"],
                trigger=r["trigger"],
                collection_mode=r["collection_mode"],
                status=r["status"],
                started_at=r["started_at"],
                ended_at=r["ended_at"],
                counts=orjson.loads(r["counts"]) if r["counts"] else {},
                known_gaps=orjson.loads(r["known_gaps"]) if r["known_gaps"] else [],
                checkpoint=orjson.loads(r["checkpoint"]) if r["checkpoint"] else {},
                error=orjson.loads(r["error"]) if r["error"] else None,
                batch_id=r["batch_id"],
            )
            for r in rows
        ]

    def batches(
        self,
        *,
        connection_id: str | None = None,
        connector_key: str | None = None,
        artifact_sha256: str | None = None,
    ) -> list[BatchReceipt]:
        where, params = self._where(
            [
                ("connection_id = ?", connection_id),
                ("connector_key = ?", connector_key),
                ("artifact_sha256 = ?", artifact_sha256),
            ]
        )
        rows = self._rows(
            f"SELECT * FROM acquisition_batches{where} ORDER BY created_at DESC", params
        )
        return [
            BatchReceipt(
                batch_id=r["batch_id"],
                run_id=r["run_id"],
                connection_id=r["connection_id"],
                connector_key=r["connector_key"],
                acquisition_method=r["acquisition_method"],
                parser_version=r["parser_version"],
                artifact_sha256=r["artifact_sha256"],
                artifact_name=r["artifact_name"],
                artifact_size=r["artifact_size"],
                status=r["status"],
                counts=orjson.loads(r["counts"]),
                window_start=r["window_start"],
                window_end=r["window_end"],
                warnings=orjson.loads(r["warnings"]),
                created_at=r["created_at"],
            )
            for r in rows
        ]

    def coverage(self, connection_id: str) -> list[Coverage]:
        rows = self._db().execute(
            "SELECT connection_id, stream, connector_key, acquisition_method, window_start, "
            "window_end, last_run_id, last_batch_id, last_at, records_seen FROM coverage "
            "WHERE connection_id = ? ORDER BY stream, connector_key",
            (connection_id,),
        )
        return [Coverage(*row) for row in rows]

    def record_provenance(
        self, connection_id: str, stream: str, record_key: str
    ) -> list[Evidence]:
        """Every published run or batch that evidenced one record, with its path. Owner-only."""
        rows = self._db().execute(
            "WITH ids AS (SELECT record_id FROM records WHERE connection_id = ? AND stream = ? "
            "AND record_key = ? AND parked = 0), stages AS ("
            "SELECT stage FROM record_changes WHERE record_id IN (SELECT record_id FROM ids) "
            "UNION SELECT stage FROM record_evidence WHERE record_id IN "
            "(SELECT record_id FROM ids)) "
            "SELECT r.run_id, r.batch_id, r.connector_key, r.acquisition_method, r.started_at "
            "FROM runs r JOIN stages s ON s.stage = r.run_seq WHERE r.publish_seq IS NOT NULL "
            "ORDER BY r.run_seq",
            (connection_id, stream, record_key),
        )
        return [Evidence(*row) for row in rows]

    def run_seq(self, run_id: str) -> int:
        row = self._db().execute("SELECT run_seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id}")
        return int(row[0])


def _live_by_scope(
    rows: list[tuple[Any, ...]], decode: Callable[[bytes], dict[str, Any]]
) -> dict[tuple[str, str], list[tuple[int, dict[str, Any]]]]:
    """(record_id, connection_id, stream, _, data, deleted) rows → live items per index scope."""
    grouped: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for record_id, connection_id, stream, _, data, deleted in rows:
        if not deleted:
            grouped.setdefault((stream, connection_id), []).append(
                (record_id, decode(data))
            )
    return grouped
