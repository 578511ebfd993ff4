"""Collection on PostgreSQL: stages, leases, staged batches, publication, clean-up, history.

The same design as the SQLite store (stages written invisibly in short transactions, made
visible by one small publishing transaction), made safe for several writing processes:

Leases and fencing. `start_stage` reads a connection's lease row `FOR UPDATE` (and takes the
connection's advisory lock, which deleting also takes), so of two processes starting a run of
one connection one waits and then finds the other's live lease. Every batch and the publication
begin by renewing the lease with an UPDATE that names the run: that UPDATE holds the lease row's
lock until the batch commits, so a reclaimer waits for the batch (and then sees a fresh lease),
and once a reclaimer has taken the lease over, the old run's UPDATE matches no row and it raises
`RunLeaseLost` before writing anything.

The change feed is commit-ordered. A publication increments the publish clock (a row of `meta`)
with an UPDATE, late in its transaction, and stamps its run with the new value. That UPDATE
locks the row until the transaction ends, so a second publisher's increment waits until the
first has committed (or rolled back), then reads its value: publish sequence k+1 is handed out
only after the transaction holding k has ended. Hence, when a reader sees the clock at H
(`change_horizon`, which is where a change token's window ends), every publication numbered H
or less has committed and is visible to any later snapshot, and every publication still in
flight will be numbered above H. A feed that reads (since, H] and hands out H as its next token
can therefore never skip a publication that commits late: there is none at or below H.
(A plain sequence would not do: numbers are taken in one order and committed in another, so a
reader could see 8 committed while 7 is still in flight, hand out 8, and skip 7 for ever.)
`tests/store/postgres/test_change_feed.py` holds a publication open after it took its number,
publishes another connection meanwhile, and reads the feed at each step; and lets writers race.

Clean-ups (parked versions after a publication; everything an abandoned stage wrote) run a
chunk per transaction, each chunk under the lock of the stage's `stage_cleanup` row, so two
processes never clean one stage at once: a run starting on the connection waits its turn, a
background sweep skips a stage someone else is cleaning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import orjson

from ownstream.clock import iso
from ownstream.errors import ConnectionNotFound, ConnectionRunActive, NotFound, RunLeaseLost
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
    BlobUse,
    CurrentRecord,
    Matching,
    MatchKeys,
    plan_batch,
)
from ownstream.store.postgres.connections import ConnectionRecords, connection_lock
from ownstream.store.postgres.database import Connection as Db
from ownstream.store.postgres.database import dumps
from ownstream.store.postgres.search_index import entry

LEASE_SECONDS = 60
CLEANUP_CHUNK = 1000
# A publication that changed a tenth of the records (and at least this many) refreshes the
# planner's statistics at once, as autovacuum would a minute later: a search right after a
# large import is then planned on what the table now holds (a rare term through the GIN
# index, a common one walking record ids down), not on an empty table's guesses.
ANALYZE_AFTER_ROWS = 1_000
ANALYZE_SHARE = 0.1

_COPY_COLUMNS = (
    "connection_id, stream, record_key, stage, version, deleted, data, emitted_at, "
    "cursor_value, consent_time, updated_at, deleted_at, paths, match_key, search"
)
_RUN_COLUMNS = (
    "run_id, connection_id, connector_key, acquisition_method, trigger, collection_mode, "
    "status, started_at, ended_at, counts, known_gaps, checkpoint, error, batch_id"
)
_BATCH_COLUMNS = (
    "batch_id, run_id, connection_id, connector_key, acquisition_method, parser_version, "
    "artifact_sha256, artifact_name, artifact_size, status, counts, window_start, window_end, "
    "warnings, created_at"
)


def _paths_text(paths: frozenset[str]) -> str:
    return "," + ",".join(sorted(paths)) + ","


def _paths(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(",") if part)


def _loads(value: bytes | None) -> Any:
    return None if value is None else orjson.loads(value)


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
            connection_lock(db, connection_id)
            if db.execute(
                "SELECT 1 FROM deleted_connections WHERE connection_id = %s", (connection_id,)
            ).fetchone():
                raise ConnectionNotFound(f"no connection {connection_id}", param="connection_id")
            lease = db.execute(
                "SELECT run_id, run_seq, expires_at FROM run_leases WHERE connection_id = %s "
                "FOR UPDATE",
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
            row = db.execute(
                "INSERT INTO runs (run_id, connection_id, connector_key, acquisition_method, "
                "trigger, collection_mode, status, started_at, batch_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'running', %s, %s) RETURNING run_seq",
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
            ).fetchone()
            assert row is not None
            stage = int(row[0])
            db.execute(
                "INSERT INTO run_leases (connection_id, run_id, run_seq, holder, acquired_at, "
                "renewed_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
        self._clean_pending(connection_id, wait=True)
        return Acquisition(
            run_id, connection_id, connector_key, acquisition_method, stage, batch_id
        )

    def _fail_stalled(self, db: Db, connection_id: str, run_id: str, stage: int) -> None:
        """A stale lease: its run's process died. Fail the run and queue its stage's removal."""
        db.execute(
            "UPDATE runs SET status = 'failed', ended_at = %s, error = %s "
            "WHERE run_id = %s AND status = 'running'",
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
        self._queue_cleanup(db, stage, connection_id, "abandoned")
        db.execute(
            "DELETE FROM run_leases WHERE connection_id = %s AND run_id = %s",
            (connection_id, run_id),
        )

    def _queue_cleanup(self, db: Db, stage: int, connection_id: str, kind: str) -> None:
        db.execute(
            "INSERT INTO stage_cleanup (stage, connection_id, kind, queued_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (stage) DO NOTHING",
            (stage, connection_id, kind, self._now()),
        )

    def renew_lease(self, acquisition: Acquisition) -> None:
        with self._tx() as db:
            self._hold_lease(db, acquisition)

    def hold_blobs(self, acquisition: Acquisition, blob_ids: Sequence[str]) -> None:
        with self._tx() as db:
            self._hold_lease(db, acquisition)
            self._take_holds(db, acquisition.stage, blob_ids)

    def hold_known_blobs(self, acquisition: Acquisition, blob_ids: Sequence[str]) -> set[str]:
        if not blob_ids:
            return set()
        with self._tx() as db:
            self._hold_lease(db, acquisition)
            known = self._connection_blobs(db, acquisition.connection_id, blob_ids) | {
                row[0]
                for row in db.execute(
                    "SELECT blob_id FROM blob_holds WHERE stage = %s AND blob_id = ANY(%s)",
                    (acquisition.stage, list(blob_ids)),
                )
            }
            self._take_holds(db, acquisition.stage, sorted(known))
        return known

    def _hold_lease(self, db: Db, acquisition: Acquisition) -> None:
        """Fence a write: only the run holding its connection's lease may write, so a run
        whose lease was taken over (or whose connection was deleted) cannot. The row stays
        locked until the caller's transaction ends."""
        now = self.clock()
        cursor = db.execute(
            "UPDATE run_leases SET renewed_at = %s, expires_at = %s "
            "WHERE connection_id = %s AND run_id = %s",
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
        row = self._row(
            "SELECT connection_id, run_id, holder, acquired_at, renewed_at, expires_at "
            "FROM run_leases WHERE connection_id = %s",
            (connection_id,),
        )
        return None if row is None else Lease(*row)

    def reclaim_stalled(self) -> list[str]:
        now = self._now()
        stale = self._rows(
            "SELECT connection_id, run_id FROM run_leases WHERE expires_at <= %s", (now,)
        )
        reclaimed = []
        for connection_id, run_id in stale:
            with self._tx() as db:
                still = db.execute(
                    "SELECT run_seq FROM run_leases WHERE connection_id = %s AND run_id = %s "
                    "AND expires_at <= %s FOR UPDATE SKIP LOCKED",
                    (connection_id, run_id, now),
                ).fetchone()
                if still is None:
                    continue
                self._fail_stalled(db, connection_id, run_id, still[0])
            reclaimed.append(run_id)
        self._clean_pending(None, wait=False)
        self.purge_deleted()
        return reclaimed

    # writes ---------------------------------------------------------------------------------
    def commit_batch(self, acquisition: Acquisition, writes: Writes) -> BatchStats:
        """Plan the batch from the heads it touches, read outside the write transaction (the
        lease means no one else writes this connection's records meanwhile), then apply the
        plans in one short transaction, fenced by the lease: its row stays locked only for
        the apply, not for the planning."""
        path = AcquisitionPath(acquisition.connector_key, acquisition.acquisition_method)
        plans: list[tuple[StreamDefinition, BatchPlan]] = []
        with self._db() as db:
            for batch in writes:
                if not batch.records:
                    continue
                definition = batch.definition
                keys = list(dict.fromkeys(r.record_key for r in batch.records))
                current = {
                    key: record
                    for key, (_, record) in self._heads(
                        db, acquisition.connection_id, definition.name, "record_key", keys
                    ).items()
                }
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
        with self._tx() as db:
            self._hold_lease(db, acquisition)
            for definition, plan in plans:
                self._apply(db, acquisition, definition, plan)
                total.add(plan.stats)
        return total

    def _matching(
        self, db: Db, connection_id: str, batch: StreamBatch, current: dict[str, CurrentRecord]
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

    @staticmethod
    def _heads(
        db: Db, connection_id: str, stream: str, column: str, values: Sequence[str]
    ) -> dict[str, tuple[str | None, CurrentRecord]]:
        """Heads whose `column` (record_key or match_key) is one of `values`, by record key,
        with their match key (the stage's own staged heads included)."""
        if not values:
            return {}
        rows = db.execute(
            "SELECT record_key, record_id, data, version, deleted, paths, stage, emitted_at, "
            "match_key FROM records WHERE connection_id = %s AND stream = %s AND parked = 0 "
            f"AND {column} = ANY(%s)",
            (connection_id, stream, list(values)),
        )
        return {
            key: (
                match,
                CurrentRecord(
                    record_id,
                    data,
                    version,
                    deleted,
                    _paths(paths),
                    stage,
                    emitted_at,
                ),
            )
            for key, record_id, data, version, deleted, paths, stage, emitted_at, match in rows
        }

    def _apply(
        self, db: Db, acquisition: Acquisition, definition: StreamDefinition, plan: BatchPlan
    ) -> None:
        """Apply a plan: inserts, parked copies, new head versions, change log, sightings,
        stage tallies; each a single statement over arrays."""
        connection_id, stream, stage = acquisition.connection_id, definition.name, acquisition.stage
        now = self._now()
        fields = self._search_fields(db, stream, definition.searchable_fields)

        def search(data: dict[str, Any], deleted: bool) -> str | None:
            return None if deleted else entry(stream, connection_id, fields, data)

        wanted = len(plan.inserts) + sum(1 for v in plan.versions if v.park)
        # ids for the new rows (inserts and parked copies), drawn from the table's identity
        ids: Iterator[int] = iter(
            [
                row[0]
                for row in db.execute(
                    "SELECT nextval(pg_get_serial_sequence('records', 'record_id')) "
                    "FROM generate_series(1, %s)",
                    (wanted,),
                )
            ]
            if wanted
            else []
        )
        changes = _Columns(5)
        blob_refs: list[tuple[int, BlobUse]] = []
        if plan.inserts:
            # COPY: the bulk of an import, and the cheapest way in
            with db.cursor().copy(
                "COPY records (record_id, connection_id, stream, stage, updated_at, record_key, "
                "version, deleted, data, emitted_at, cursor_value, consent_time, deleted_at, "
                "paths, match_key, search) FROM STDIN"
            ) as copy:
                for insert in plan.inserts:
                    head, record_id = insert.head, next(ids)
                    copy.write_row(
                        (
                            record_id, connection_id, stream, stage, now, head.record_key,
                            head.version, head.deleted, head.encoded, head.emitted_at,
                            head.cursor_value, head.consent_time,
                            now if head.deleted else None, _paths_text(head.paths),
                            head.match_key, search(head.data, head.deleted),
                        )
                    )
                    changes.add(record_id, 1, "insert", None, None)
                    blob_refs += [(record_id, use) for use in head.blobs]
            self._add_blob_refs(db, blob_refs)
        parked = _Columns(3)
        updates = _Columns(11)
        for version in plan.versions:
            head, change = version.head, version.change
            if version.park:
                parked.add(next(ids), stage, version.record_id)
            updates.add(
                version.record_id, stage, head.version, head.deleted, head.encoded,
                head.cursor_value, head.consent_time, now if head.deleted else None,
                _paths_text(head.paths), head.match_key, search(head.data, head.deleted),
            )
            changes.add(
                version.record_id,
                change.version,
                change.op,
                None if change.fields is None else orjson.dumps(list(change.fields)).decode(),
                None if change.prior is None else dumps(change.prior),
            )
        if parked:
            db.execute(
                f"INSERT INTO records (record_id, parked, {_COPY_COLUMNS}) "
                f"SELECT u.record_id, u.parked, {_qualified('r', _COPY_COLUMNS)} "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS u "
                "(record_id, parked, source) JOIN records r ON r.record_id = u.source",
                parked.arrays(),
            )
        if definition.blob_fields and plan.versions:
            # a parked copy keeps what the published head referenced; the head now references
            # what its new version does (a version this stage wrote before is simply replaced)
            copies, _, heads = parked.arrays()
            self._copy_blob_refs(db, list(zip(copies, heads, strict=True)))
            self._replace_blob_refs(
                db,
                [v.record_id for v in plan.versions],
                [(v.record_id, use) for v in plan.versions for use in v.head.blobs],
            )
        if updates:
            db.execute(
                "UPDATE records r SET stage = u.stage, version = u.version, deleted = u.deleted, "
                "data = u.data, cursor_value = u.cursor_value, consent_time = u.consent_time, "
                "updated_at = %s, deleted_at = u.deleted_at, paths = u.paths, "
                "match_key = u.match_key, search = u.search::tsvector FROM unnest("
                "%s::bigint[], %s::bigint[], %s::int[], %s::bool[], %s::bytea[], %s::text[], "
                "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS u (record_id, "
                "stage, version, deleted, data, cursor_value, consent_time, deleted_at, paths, "
                "match_key, search) WHERE r.record_id = u.record_id",
                (now, *updates.arrays()),
            )
        if changes:
            db.execute(
                "INSERT INTO record_changes (stage, record_id, version, op, fields, prior) "
                "SELECT %s, u.record_id, u.version, u.op, CASE WHEN u.fields IS NULL THEN NULL "
                "ELSE ARRAY(SELECT json_array_elements_text(u.fields::json)) END, u.prior "
                "FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::bytea[]) "
                "WITH ORDINALITY AS u (record_id, version, op, fields, prior, n) ORDER BY u.n",
                (stage, *changes.arrays()),
            )
        if plan.sightings:
            db.execute(
                "INSERT INTO record_evidence (record_id, stage, add_path) "
                "SELECT u.record_id, %s, u.add_path FROM unnest(%s::bigint[], %s::bool[]) AS u "
                "(record_id, add_path) ON CONFLICT (record_id, stage) DO NOTHING",
                (
                    stage,
                    [s.record_id for s in plan.sightings],
                    [s.add_path for s in plan.sightings],
                ),
            )
            marked = [s.record_id for s in plan.sightings if s.add_path]
            if marked:
                db.execute(
                    "UPDATE records SET paths = paths || %s WHERE record_id = ANY(%s)",
                    (acquisition.connector_key + ",", marked),
                )
        stats = plan.stats
        db.execute(
            "INSERT INTO stage_stats (stage, stream, connector_key, acquisition_method, "
            "count_delta, changed, seen, window_start, window_end) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (stage, stream) DO UPDATE "
            "SET count_delta = stage_stats.count_delta + excluded.count_delta, "
            "changed = stage_stats.changed + excluded.changed, "
            "seen = stage_stats.seen + excluded.seen, "
            "window_start = least(stage_stats.window_start, excluded.window_start), "
            "window_end = greatest(stage_stats.window_end, excluded.window_end)",
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
                "SELECT 1 FROM connections WHERE connection_id = %s", (connection_id,)
            ).fetchone()
            if binding is not None and binding.create is not None and exists is None:
                self._insert_connection(db, connection_id, binding.create)
            if binding is not None and binding.attach is not None:
                self._attach(db, connection_id, binding.attach)
            db.execute(
                "UPDATE connections SET published_stage = %s WHERE connection_id = %s",
                (stage, connection_id),
            )
            changed = self._fold_stats(db, acquisition, now)
            if publication.states:
                db.cursor().executemany(
                    "INSERT INTO connection_state (connection_id, connector_key, stream, cursor, "
                    "run_id, updated_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT "
                    "(connection_id, connector_key, stream) DO UPDATE SET "
                    "cursor = excluded.cursor, run_id = excluded.run_id, "
                    "updated_at = excluded.updated_at",
                    [
                        (connection_id, acquisition.connector_key, stream, dumps(cursor),
                         acquisition.run_id, now)
                        for stream, cursor in publication.states.items()
                    ],
                )
            if publication.receipt is not None:
                self._save_receipt(db, publication.receipt)
            self._release_holds(db, "%s", [stage])
            self._queue_cleanup(db, stage, connection_id, "published")
            db.execute(
                "DELETE FROM run_leases WHERE connection_id = %s AND run_id = %s",
                (connection_id, acquisition.run_id),
            )
            # last: the clock row stays locked until commit (see the module docstring)
            clock = db.execute(
                "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'publish_clock' "
                "RETURNING value::bigint"
            ).fetchone()
            assert clock is not None
            db.execute(
                "UPDATE runs SET status = %s, ended_at = %s, counts = %s, known_gaps = %s, "
                "checkpoint = %s, error = %s, publish_seq = %s, published_at = %s "
                "WHERE run_id = %s",
                (
                    publication.status,
                    now,
                    dumps(publication.counts),
                    dumps(publication.known_gaps),
                    dumps(publication.checkpoint),
                    None if publication.error is None else dumps(publication.error),
                    clock[0],
                    now,
                    acquisition.run_id,
                ),
            )
        self._clean_stage(stage, "published", wait=True)
        if changed >= ANALYZE_AFTER_ROWS:
            with self._db() as db:
                row = db.execute(
                    "SELECT reltuples FROM pg_class WHERE oid = 'records'::regclass"
                ).fetchone()
                if row is None or row[0] < 0 or changed >= ANALYZE_SHARE * row[0]:
                    db.execute("ANALYZE records, record_changes")

    def _fold_stats(self, db: Db, acquisition: Acquisition, now: str) -> int:
        """A stage's per-stream tallies become the connection's counts and path coverage;
        returns how many records the stage changed."""
        row = db.execute(
            "SELECT coalesce(sum(changed), 0) FROM stage_stats WHERE stage = %s",
            (acquisition.stage,),
        ).fetchone()
        db.execute(
            "INSERT INTO stream_stats (connection_id, stream, record_count, last_updated) "
            "SELECT %s, stream, count_delta, %s FROM stage_stats WHERE stage = %s AND changed > 0 "
            "ON CONFLICT (connection_id, stream) DO UPDATE SET "
            "record_count = stream_stats.record_count + excluded.record_count, "
            "last_updated = excluded.last_updated",
            (acquisition.connection_id, now, acquisition.stage),
        )
        db.execute(
            "INSERT INTO coverage (connection_id, stream, connector_key, acquisition_method, "
            "window_start, window_end, last_run_id, last_batch_id, last_at, records_seen) "
            "SELECT %s, stream, connector_key, acquisition_method, window_start, window_end, "
            "%s, %s, %s, seen FROM stage_stats WHERE stage = %s "
            "ON CONFLICT (connection_id, stream, connector_key) DO UPDATE SET "
            "window_start = least(coverage.window_start, excluded.window_start), "
            "window_end = greatest(coverage.window_end, excluded.window_end), "
            "last_run_id = excluded.last_run_id, last_batch_id = excluded.last_batch_id, "
            "last_at = excluded.last_at, "
            "records_seen = coverage.records_seen + excluded.records_seen",
            (
                acquisition.connection_id,
                acquisition.run_id,
                acquisition.batch_id,
                now,
                acquisition.stage,
            ),
        )
        db.execute("DELETE FROM stage_stats WHERE stage = %s", (acquisition.stage,))
        return int(row[0]) if row else 0

    def abandon(self, acquisition: Acquisition, error: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'failed', ended_at = %s, error = %s "
                "WHERE run_id = %s AND status = 'running'",
                (self._now(), dumps(error), acquisition.run_id),
            )
            self._queue_cleanup(db, acquisition.stage, acquisition.connection_id, "abandoned")
            db.execute(
                "DELETE FROM run_leases WHERE connection_id = %s AND run_id = %s",
                (acquisition.connection_id, acquisition.run_id),
            )
        self._clean_stage(acquisition.stage, "abandoned", wait=True)

    # clean-up -------------------------------------------------------------------------------
    def _clean_pending(self, connection_id: str | None, *, wait: bool) -> None:
        where, params = self._where([("connection_id = %s", connection_id)])
        for stage, kind in self._rows(
            f"SELECT stage, kind FROM stage_cleanup{where} ORDER BY stage", params
        ):
            self._clean_stage(stage, kind, wait=wait)

    @contextmanager
    def _cleaning(self, stage: int, wait: bool) -> Iterator[Db | None]:
        """One clean-up transaction, holding the stage's clean-up row; None when the clean-up
        is finished (or, without `wait`, when another process holds it)."""
        with self._tx() as db:
            lock = "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"
            held = db.execute(
                f"SELECT 1 FROM stage_cleanup WHERE stage = %s {lock}", (stage,)
            ).fetchone()
            yield db if held else None

    def _clean_stage(self, stage: int, kind: str, *, wait: bool) -> None:
        steps: list[Callable[[Db, int], bool]] = (
            [self._restore_parked, self._remove_inserts, self._revert_sightings]
            if kind == "abandoned"
            else [self._drop_parked]
        )
        for step in steps:
            done = False
            while not done:
                with self._cleaning(stage, wait) as db:
                    if db is None:
                        return
                    done = step(db, stage)
        with self._cleaning(stage, wait) as db:
            if db is None:
                return
            if kind == "abandoned":
                db.execute("DELETE FROM record_changes WHERE stage = %s", (stage,))
                db.execute("DELETE FROM stage_stats WHERE stage = %s", (stage,))
                self._release_holds(db, "%s", [stage])
                # an import is all or nothing: a failed one leaves no run (the audit trail
                # keeps the attempt); a failed run of a connection stays in its history
                db.execute(
                    "DELETE FROM runs WHERE run_seq = %s AND batch_id IS NOT NULL", (stage,)
                )
            db.execute("DELETE FROM stage_cleanup WHERE stage = %s", (stage,))

    def _drop_parked(self, db: Db, stage: int) -> bool:
        """After publication: the versions the stage superseded are garbage. Done when none
        are left."""
        removed = [
            row[0]
            for row in db.execute(
                "DELETE FROM records WHERE record_id IN (SELECT record_id FROM records "
                "WHERE parked = %s AND parked <> 0 LIMIT %s) RETURNING record_id",
                (stage, CLEANUP_CHUNK),
            )
        ]
        self._drop_blob_refs(db, removed)
        return not removed

    def _restore_parked(self, db: Db, stage: int) -> bool:
        """After abandonment: each head the stage rewrote gets its parked version back."""
        copies = db.execute(
            "SELECT c.record_id, h.record_id FROM records c LEFT JOIN records h "
            "ON h.connection_id = c.connection_id AND h.stream = c.stream "
            "AND h.record_key = c.record_key AND h.parked = 0 "
            "WHERE c.parked = %s AND c.parked <> 0 LIMIT %s",  # the partial index
            (stage, CLEANUP_CHUNK),
        ).fetchall()
        if not copies:
            return True
        restore = [(copy_id, head_id) for copy_id, head_id in copies if head_id is not None]
        if restore:
            db.execute(
                f"UPDATE records h SET ({_COPY_COLUMNS}) = ({_qualified('c', _COPY_COLUMNS)}) "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS u (copy_id, head_id) "
                "JOIN records c ON c.record_id = u.copy_id WHERE h.record_id = u.head_id",
                ([c for c, _ in restore], [h for _, h in restore]),
            )
        self._move_blob_refs(db, restore)
        dropped = [copy_id for copy_id, _ in copies]
        self._drop_blob_refs(db, dropped)
        db.execute("DELETE FROM records WHERE record_id = ANY(%s)", (dropped,))
        return False

    def _remove_inserts(self, db: Db, stage: int) -> bool:
        """After abandonment: records the stage created are removed, with their insert
        entries of the change log (the rest of the stage's entries go last)."""
        created = [
            row[0]
            for row in db.execute(
                "DELETE FROM record_changes WHERE seq IN (SELECT seq FROM record_changes "
                "WHERE stage = %s AND version = 1 LIMIT %s) RETURNING record_id",
                (stage, CLEANUP_CHUNK),
            )
        ]
        if not created:
            return True
        removed = [
            row[0]
            for row in db.execute(
                "DELETE FROM records WHERE record_id = ANY(%s) AND stage = %s "
                "RETURNING record_id",
                (created, stage),
            )
        ]
        self._drop_blob_refs(db, removed)
        return False

    @staticmethod
    def _revert_sightings(db: Db, stage: int) -> bool:
        """After abandonment: path marks the stage's sightings added are taken back."""
        rows = db.execute(
            "DELETE FROM record_evidence WHERE (record_id, stage) IN (SELECT record_id, stage "
            "FROM record_evidence WHERE stage = %s LIMIT %s) RETURNING record_id, add_path",
            (stage, CLEANUP_CHUNK),
        ).fetchall()
        if not rows:
            return True
        marked = [record_id for record_id, add_path in rows if add_path]
        if marked:
            db.execute(
                "UPDATE records SET paths = replace(paths, ',' || r.connector_key || ',', ',') "
                "FROM runs r WHERE r.run_seq = %s AND records.record_id = ANY(%s)",
                (stage, marked),
            )
        return False

    # what runs and imports left ---------------------------------------------------------------
    @staticmethod
    def _save_receipt(db: Db, receipt: BatchReceipt) -> None:
        db.execute(
            f"INSERT INTO acquisition_batches ({_BATCH_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
        rows = self._rows(
            "SELECT stream, cursor FROM connection_state WHERE connection_id = %s AND "
            "connector_key = %s",
            (connection_id, connector_key),
        )
        return {stream: orjson.loads(cursor) for stream, cursor in rows}

    def put_connection_state(
        self, connection_id: str, connector_key: str, states: dict[str, Any]
    ) -> None:
        with self._tx() as db:
            self.connection(connection_id)
            db.execute(
                "DELETE FROM connection_state WHERE connection_id = %s AND connector_key = %s",
                (connection_id, connector_key),
            )
            now = self._now()
            db.cursor().executemany(
                "INSERT INTO connection_state (connection_id, connector_key, stream, cursor, "
                "run_id, updated_at) VALUES (%s, %s, %s, %s, '', %s)",
                [
                    (connection_id, connector_key, stream, dumps(cursor), now)
                    for stream, cursor in states.items()
                ],
            )

    def runs(self, connection_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        where, params = self._where([("connection_id = %s", connection_id)])
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY run_seq DESC LIMIT %s",
            [*params, limit],
        )
        return [
            RunRecord(
                run_id=r[0],
                connection_id=r[1],
                connector_key=r[2],
                acquisition_method=r[3],
                trigger=r[4],
                collection_mode=r[5],
                status=r[6],
                started_at=r[7],
                ended_at=r[8],
                counts=_loads(r[9]) or {},
                known_gaps=_loads(r[10]) or [],
                checkpoint=_loads(r[11]) or {},
                error=_loads(r[12]),
                batch_id=r[13],
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
                ("connection_id = %s", connection_id),
                ("connector_key = %s", connector_key),
                ("artifact_sha256 = %s", artifact_sha256),
            ]
        )
        rows = self._rows(
            f"SELECT {_BATCH_COLUMNS} FROM acquisition_batches{where} ORDER BY created_at DESC",
            params,
        )
        return [
            BatchReceipt(
                batch_id=r[0],
                run_id=r[1],
                connection_id=r[2],
                connector_key=r[3],
                acquisition_method=r[4],
                parser_version=r[5],
                artifact_sha256=r[6],
                artifact_name=r[7],
                artifact_size=r[8],
                status=r[9],
                counts=orjson.loads(r[10]),
                window_start=r[11],
                window_end=r[12],
                warnings=orjson.loads(r[13]),
                created_at=r[14],
            )
            for r in rows
        ]

    def coverage(self, connection_id: str) -> list[Coverage]:
        rows = self._rows(
            "SELECT connection_id, stream, connector_key, acquisition_method, window_start, "
            "window_end, last_run_id, last_batch_id, last_at, records_seen FROM coverage "
            "WHERE connection_id = %s ORDER BY stream, connector_key",
            (connection_id,),
        )
        return [Coverage(*row) for row in rows]

    def record_provenance(
        self, connection_id: str, stream: str, record_key: str
    ) -> list[Evidence]:
        """Every published run or batch that evidenced one record, with its path. Owner-only."""
        rows = self._rows(
            "WITH ids AS (SELECT record_id FROM records WHERE connection_id = %s AND "
            "stream = %s AND record_key = %s AND parked = 0), stages AS ("
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
        row = self._row("SELECT run_seq FROM runs WHERE run_id = %s", (run_id,))
        if row is None:
            raise NotFound(f"no run {run_id}")
        return int(row[0])


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


class _Columns:
    """Rows gathered column by column, to be sent as one array per column (`unnest`)."""

    def __init__(self, width: int) -> None:
        self._columns: list[list[Any]] = [[] for _ in range(width)]

    def add(self, *values: Any) -> None:
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)

    def arrays(self) -> list[list[Any]]:
        return self._columns

    def __bool__(self) -> bool:
        return bool(self._columns[0])
