"""SQLite implementation of the Store: WAL, batched writes, grant scopes applied in SQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from ownstream.clock import iso, now_iso, random_id, stable_id, utc_now
from ownstream.errors import ConnectionNotFound, ConnectionRunActive, NotFound, RunLeaseLost
from ownstream.model import (
    Acquisition,
    AttachedPath,
    Connection,
    ConnectionIdentity,
    ReadScope,
    RecordWrite,
    StreamDefinition,
)
from ownstream.records import (
    changed_fields,
    consent_time,
    merge,
    project,
    search_text,
    sortable,
)
from ownstream.store.base import (
    BatchReceipt,
    RecordPosition,
    RunRecord,
    StoredRecord,
    WriteStats,
)
from ownstream.store.sqlite.access import AccessRecords
from ownstream.store.sqlite.auth import AuthRecords
from ownstream.store.sqlite.operations import OwnerOperations
from ownstream.store.sqlite.reads import ReadQueries, scope_filters, scope_token

SCHEMA_VERSION = "1"
LEASE_SECONDS = 300
_CHUNK = 500  # keys per IN (...) lookup


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _text(value: Any) -> str:
    """JSON as TEXT, for columns SQLite's JSON functions must read."""
    return orjson.dumps(value).decode()


@dataclass(slots=True)
class _Current:
    """A record's state while a batch is applied to it."""

    record_id: int
    data: dict[str, Any]
    version: int
    deleted: bool
    paths: str
    is_new: bool = False
    dirty: bool = False
    data_changed: bool = False
    emitted_at: str = ""
    consent: str | None = None
    was_deleted: bool = field(init=False)

    def __post_init__(self) -> None:
        self.was_deleted = self.deleted


class SQLiteStore(ReadQueries, AccessRecords, AuthRecords, OwnerOperations):
    """One SQLite database file. Each thread gets its own connection; writes are transactions."""

    def __init__(self, path: Path, *, lease_seconds: int = LEASE_SECONDS) -> None:
        self.path = path
        self.lease_seconds = lease_seconds
        self._local = threading.local()
        self._run_seqs: dict[str, int] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        db.executescript(resources.files(__package__).joinpath("schema.sql").read_text())
        db.executescript(resources.files(__package__).joinpath("auth.sql").read_text())
        with self.transaction():
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema_version", SCHEMA_VERSION), ("store_epoch", random_id("db"))],
                )

    # connections to the file -----------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            # a one-transaction import grows the WAL by its size; give the space back after
            db.execute("PRAGMA journal_size_limit = 67108864")
            db.execute("PRAGMA busy_timeout = 120000")
            db.execute("PRAGMA cache_size = -262144")
            db.execute("PRAGMA temp_store = MEMORY")
            db.execute("PRAGMA foreign_keys = OFF")
            self._local.db = db
            self._local.depth = 0
        return db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested calls join the outer one (as savepoints)."""
        db = self._db()
        depth: int = self._local.depth
        name = f"sp{depth}"
        db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        self._local.depth = depth + 1
        try:
            yield
        except BaseException:
            self._local.depth = depth
            if depth == 0:
                db.execute("ROLLBACK")
                self._run_seqs.clear()
            else:
                db.execute(f"ROLLBACK TO {name}")
                db.execute(f"RELEASE {name}")
            raise
        self._local.depth = depth
        db.execute("COMMIT" if depth == 0 else f"RELEASE {name}")

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cursor = self._db().cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params).fetchall()

    @staticmethod
    def _where(conditions: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
        """` WHERE a = ? AND …` for the conditions whose value is not None."""
        used = [(clause, value) for clause, value in conditions if value is not None]
        if not used:
            return "", []
        return " WHERE " + " AND ".join(c for c, _ in used), [v for _, v in used]

    def meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # registrations -----------------------------------------------------------------------------
    def registrations(self, kind: str) -> list[tuple[dict[str, Any], str | None]]:
        rows = self._db().execute(
            "SELECT document, base_dir FROM registrations WHERE kind = ? ORDER BY added_at, key",
            (kind,),
        )
        return [(orjson.loads(doc), base_dir) for doc, base_dir in rows]

    def save_registration(
        self, kind: str, key: str, document: dict[str, Any], base_dir: str | None
    ) -> None:
        with self.transaction():
            self._db().execute(
                "INSERT INTO registrations (kind, key, document, base_dir, added_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET "
                "document = excluded.document, base_dir = excluded.base_dir",
                (kind, key, _json(document), base_dir, now_iso()),
            )

    # connections -------------------------------------------------------------------------------
    def create_connection(
        self,
        *,
        owner_id: str,
        source: str,
        display_name: str,
        display_name_is_placeholder: bool,
        identity: ConnectionIdentity | None,
        seed: str,
    ) -> Connection:
        """Create a connection. Its id is a stable hash of its identity (or of `seed`).

        An id is never reused: if the owner deleted a connection with this id, the next
        generation's id is taken, so grants that named the deleted one still read nothing.
        """
        if identity is not None:
            base = stable_id(
                "cin", owner_id, source, identity.claim, identity.value, identity.proven_by
            )
        else:
            base = stable_id("cin", owner_id, source, "no-identity", seed)
        now = now_iso()
        with self.transaction():
            connection_id, generation = base, 0
            while (
                self._db()
                .execute(
                    "SELECT 1 FROM deleted_connections WHERE connection_id = ?", (connection_id,)
                )
                .fetchone()
            ):
                generation += 1
                connection_id = stable_id("cin", base, str(generation))
            self._db().execute(
                "INSERT INTO connections (connection_id, owner_id, source, display_name, "
                "display_name_is_placeholder, status, identity_claim, identity_value, "
                "identity_proven_by, identity_rule_id, identity_proven_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)",
                (
                    connection_id,
                    owner_id,
                    source,
                    display_name,
                    int(display_name_is_placeholder),
                    identity.claim if identity else None,
                    identity.value if identity else None,
                    identity.proven_by if identity else None,
                    identity.rule_id if identity else None,
                    identity.proven_at if identity else None,
                    now,
                    now,
                ),
            )
            if identity is not None:  # the owner re-created a deleted identity explicitly
                self._db().execute(
                    "DELETE FROM identity_tombstones WHERE owner_id = ? AND source = ? AND "
                    "claim = ? AND value = ?",
                    (owner_id, source, identity.claim, identity.value),
                )
        return self.connection(connection_id)

    def attach_path(
        self,
        connection_id: str,
        *,
        connector_key: str,
        acquisition_method: str,
        proved_identity: bool,
        rule_id: str | None,
    ) -> None:
        with self.transaction():
            self._db().execute(
                "INSERT INTO connection_paths (connection_id, connector_key, acquisition_method,"
                " attached_at, proved_identity, rule_id) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (connection_id, connector_key) DO UPDATE SET "
                "proved_identity = max(proved_identity, excluded.proved_identity), "
                "rule_id = coalesce(rule_id, excluded.rule_id)",
                (
                    connection_id,
                    connector_key,
                    acquisition_method,
                    now_iso(),
                    int(proved_identity),
                    rule_id,
                ),
            )
            self._touch(connection_id)

    def _touch(self, connection_id: str) -> None:
        self._db().execute(
            "UPDATE connections SET updated_at = ? WHERE connection_id = ?",
            (now_iso(), connection_id),
        )

    def connection(self, connection_id: str) -> Connection:
        found = self.connections(connection_ids=[connection_id])
        if not found:
            raise ConnectionNotFound(f"no connection {connection_id}", param="connection_id")
        return found[0]

    def connections(
        self,
        *,
        source: str | None = None,
        connector_key: str | None = None,
        connection_ids: Sequence[str] | None = None,
    ) -> list[Connection]:
        where, params = self._where(
            [
                ("source = ?", source),
                (
                    "connection_id IN (SELECT connection_id FROM connection_paths "
                    "WHERE connector_key = ?)",
                    connector_key,
                ),
            ]
        )
        if connection_ids is not None:
            clause = f"connection_id IN ({','.join('?' * len(connection_ids))})"
            where = f"{where} AND {clause}" if where else f" WHERE {clause}"
            params.extend(connection_ids)
        rows = self._rows(
            f"SELECT * FROM connections{where} ORDER BY created_at, connection_id", params
        )
        paths: dict[str, list[AttachedPath]] = {}
        for p in self._rows(
            "SELECT * FROM connection_paths WHERE connection_id IN "
            f"(SELECT connection_id FROM connections{where}) ORDER BY attached_at, connector_key",
            params,
        ):
            paths.setdefault(p["connection_id"], []).append(
                AttachedPath(
                    p["connector_key"],
                    p["acquisition_method"],
                    p["attached_at"],
                    bool(p["proved_identity"]),
                    p["rule_id"],
                )
            )
        return [
            Connection(
                connection_id=r["connection_id"],
                owner_id=r["owner_id"],
                source=r["source"],
                display_name=r["display_name"],
                display_name_is_placeholder=bool(r["display_name_is_placeholder"]),
                status=r["status"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                revoked_at=r["revoked_at"],
                identity=ConnectionIdentity(
                    r["identity_claim"],
                    r["identity_value"],
                    r["identity_proven_by"],
                    r["identity_rule_id"],
                    r["identity_proven_at"],
                )
                if r["identity_claim"] is not None
                else None,
                paths=tuple(paths.get(r["connection_id"], ())),
            )
            for r in rows
        ]

    def rename_connection(self, connection_id: str, display_name: str) -> Connection:
        with self.transaction():
            self.connection(connection_id)
            self._db().execute(
                "UPDATE connections SET display_name = ?, display_name_is_placeholder = 0, "
                "updated_at = ? WHERE connection_id = ?",
                (display_name, now_iso(), connection_id),
            )
        return self.connection(connection_id)

    def identity_tombstoned(
        self, owner_id: str, source: str, claim: str, value: str, connector_keys: Sequence[str]
    ) -> bool:
        """Whether the owner deleted a connection whose identity one of these paths proved."""
        row = (
            self._db()
            .execute(
                "SELECT 1 FROM identity_tombstones WHERE owner_id = ? AND source = ? AND claim = ? "
                f"AND value = ? AND connector_key IN ({','.join('?' * len(connector_keys))})",
                (owner_id, source, claim, value, *connector_keys),
            )
            .fetchone()
        )
        return row is not None

    # per-connection configuration --------------------------------------------------------------
    def save_connection_config(
        self,
        connection_id: str,
        connector_key: str,
        settings: dict[str, str],
        sealed_secrets: dict[str, tuple[bytes, str]],
    ) -> None:
        """Store settings and sealed secrets for one connection's path; replaces what was there."""
        now = now_iso()
        with self.transaction():
            db = self._db()
            db.executemany(
                "INSERT INTO connection_settings (connection_id, connector_key, name, value) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
                [(connection_id, connector_key, k, v) for k, v in settings.items()],
            )
            db.executemany(
                "INSERT INTO connection_credentials (connection_id, connector_key, name, sealed,"
                " fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "sealed = excluded.sealed, fingerprint = excluded.fingerprint, "
                "rotated_at = excluded.created_at",
                [
                    (connection_id, connector_key, name, sealed, fingerprint, now)
                    for name, (sealed, fingerprint) in sealed_secrets.items()
                ],
            )

    def connection_config(
        self, connection_id: str, connector_key: str
    ) -> tuple[dict[str, str], dict[str, bytes]]:
        db = self._db()
        settings = dict(
            db.execute(
                "SELECT name, value FROM connection_settings WHERE connection_id = ? AND "
                "connector_key = ?",
                (connection_id, connector_key),
            ).fetchall()
        )
        sealed = dict(
            db.execute(
                "SELECT name, sealed FROM connection_credentials WHERE connection_id = ? AND "
                "connector_key = ?",
                (connection_id, connector_key),
            ).fetchall()
        )
        return settings, sealed

    # runs, leases, state --------------------------------------------------------------------
    def start_run(
        self,
        *,
        connection_id: str,
        connector_key: str,
        acquisition_method: str,
        trigger: str,
        collection_mode: str,
        holder: str = "local",
        batch_id: str | None = None,
        run_id: str | None = None,
    ) -> Acquisition:
        """Record a run and take the connection's lease; refuses while another run holds it."""
        run_id = run_id or random_id("run")
        now = utc_now()
        with self.transaction():
            db = self._db()
            lease = db.execute(
                "SELECT run_id, expires_at FROM run_leases WHERE connection_id = ?",
                (connection_id,),
            ).fetchone()
            if lease is not None and lease[1] > iso(now):
                raise ConnectionRunActive(
                    f"run {lease[0]} of connection {connection_id} is in progress",
                    connection_id=connection_id,
                    run_id=lease[0],
                )
            if lease is not None:
                db.execute(
                    "UPDATE runs SET status = 'failed', ended_at = ?, error = ? "
                    "WHERE run_id = ? AND status = 'running'",
                    (
                        iso(now),
                        _json({"code": "lease_expired", "message": "the worker stopped"}),
                        lease[0],
                    ),
                )
            db.execute(
                "INSERT OR REPLACE INTO run_leases (connection_id, run_id, holder, acquired_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?)",
                (
                    connection_id,
                    run_id,
                    holder,
                    iso(now),
                    iso(now + timedelta(seconds=self.lease_seconds)),
                ),
            )
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
            self._run_seqs[run_id] = cursor.lastrowid
        return Acquisition(run_id, connection_id, connector_key, acquisition_method, batch_id)

    def _run_seq(self, run_id: str) -> int:
        seq = self._run_seqs.get(run_id)
        if seq is None:
            row = self._db().execute("SELECT run_seq FROM runs WHERE run_id = ?", (run_id,))
            found = row.fetchone()
            if found is None:
                raise NotFound(f"no run {run_id}")
            seq = int(found[0])
            self._run_seqs[run_id] = seq
        return seq

    def finish_run(
        self,
        acquisition: Acquisition,
        *,
        status: str,
        counts: dict[str, int],
        known_gaps: list[dict[str, Any]],
        checkpoint: dict[str, Any],
        error: dict[str, Any] | None,
        states: dict[str, Any] | None,
        last_writes: Sequence[tuple[StreamDefinition, Sequence[RecordWrite]]] = (),
    ) -> WriteStats:
        """End a run: its last records, its checkpoints (success only) and its row, atomically."""
        with self.transaction():
            self._hold_lease(acquisition)
            stats = self._write(acquisition, last_writes)
            counts = {k: v + getattr(stats, k, 0) for k, v in counts.items()}
            db = self._db()
            if states:
                now = now_iso()
                db.executemany(
                    "INSERT INTO connection_state (connection_id, connector_key, stream, cursor, "
                    "run_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "cursor = excluded.cursor, run_id = excluded.run_id, "
                    "updated_at = excluded.updated_at",
                    [
                        (
                            acquisition.connection_id,
                            acquisition.connector_key,
                            stream,
                            _json(cursor),
                            acquisition.run_id,
                            now,
                        )
                        for stream, cursor in states.items()
                    ],
                )
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, counts = ?, known_gaps = ?, "
                "checkpoint = ?, error = ? WHERE run_id = ?",
                (
                    status,
                    now_iso(),
                    _json(counts),
                    _json(known_gaps),
                    _json(checkpoint),
                    None if error is None else _json(error),
                    acquisition.run_id,
                ),
            )
            db.execute(
                "DELETE FROM run_leases WHERE connection_id = ? AND run_id = ?",
                (acquisition.connection_id, acquisition.run_id),
            )
        self._run_seqs.pop(acquisition.run_id, None)
        return stats

    def connection_state(self, connection_id: str, connector_key: str) -> dict[str, Any]:
        rows = self._db().execute(
            "SELECT stream, cursor FROM connection_state WHERE connection_id = ? AND "
            "connector_key = ?",
            (connection_id, connector_key),
        )
        return {stream: orjson.loads(cursor) for stream, cursor in rows}

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

    # import batches --------------------------------------------------------------------------
    def save_batch(self, receipt: BatchReceipt) -> None:
        with self.transaction():
            self._db().execute(
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
                    _json(receipt.counts),
                    receipt.window_start,
                    receipt.window_end,
                    _json(receipt.warnings),
                    receipt.created_at,
                ),
            )

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

    # writes -----------------------------------------------------------------------------------
    def commit_batch(
        self,
        acquisition: Acquisition,
        writes: Sequence[tuple[StreamDefinition, Sequence[RecordWrite]]],
    ) -> WriteStats:
        """Write one batch of validated records in one transaction, and extend the lease."""
        with self.transaction():
            self._hold_lease(acquisition)
            return self._write(acquisition, writes)

    def _hold_lease(self, acquisition: Acquisition) -> None:
        """Fence every write: only the run holding its connection's lease may write, so a run
        whose lease expired (and was taken over, or whose connection was deleted) cannot."""
        db = self._db()
        row = db.execute(
            "SELECT run_id FROM run_leases WHERE connection_id = ?", (acquisition.connection_id,)
        ).fetchone()
        if row is None or row[0] != acquisition.run_id:
            raise RunLeaseLost(
                f"run {acquisition.run_id} no longer holds the lease of connection "
                f"{acquisition.connection_id}; nothing more was written",
                run_id=acquisition.run_id,
                connection_id=acquisition.connection_id,
            )
        db.execute(
            "UPDATE run_leases SET expires_at = ? WHERE connection_id = ?",
            (iso(utc_now() + timedelta(seconds=self.lease_seconds)), acquisition.connection_id),
        )

    def _write(
        self,
        acquisition: Acquisition,
        writes: Sequence[tuple[StreamDefinition, Sequence[RecordWrite]]],
    ) -> WriteStats:
        stats = WriteStats()
        if not any(records for _, records in writes):
            return stats
        run_seq = self._run_seq(acquisition.run_id)
        for definition, records in writes:
            if records:
                self._write_stream(acquisition, run_seq, definition, records, stats)
        return stats

    def _write_stream(
        self,
        acquisition: Acquisition,
        run_seq: int,
        definition: StreamDefinition,
        records: Sequence[RecordWrite],
        stats: WriteStats,
    ) -> None:
        db = self._db()
        connection_id, stream = acquisition.connection_id, definition.name
        path_mark = f",{acquisition.connector_key},"
        keys = list(dict.fromkeys(r.record_key for r in records))
        current: dict[str, _Current] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            for key, record_id, data, version, deleted, paths in db.execute(
                "SELECT record_key, record_id, data, version, deleted, paths FROM records "
                "WHERE connection_id = ? AND stream = ? AND record_key IN "
                f"({','.join('?' * len(chunk))})",
                [connection_id, stream, *chunk],
            ):
                current[key] = _Current(
                    record_id, orjson.loads(data), version, bool(deleted), paths
                )
        # the high-water mark, not max(record_id): ids of deleted records are never reused
        next_id = (
            db.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'records'")
            .fetchone()[0]
            + 1
        )
        now = now_iso()
        changes: list[tuple[Any, ...]] = []
        evidence: set[int] = set()
        window: list[str] = []

        for write in records:
            state = current.get(write.record_key)
            if write.op == "delete":
                if state is None or state.deleted:
                    stats.unchanged += 1
                    continue
                if state.paths.replace(path_mark, ",").strip(","):
                    stats.delete_deferred += 1  # another path evidences it: not ours to remove
                    continue
                evidence.add(state.record_id)
                state.version += 1
                state.deleted = state.dirty = True
                changes.append(
                    (
                        state.record_id,
                        connection_id,
                        stream,
                        write.record_key,
                        state.version,
                        "delete",
                        _text(sorted(state.data)),
                        _json(state.data),
                        run_seq,
                        now,
                    )
                )
                stats.deleted += 1
                continue
            point = consent_time(definition, write.data)
            if point:
                window.append(point)
            if state is None:
                state = _Current(next_id, write.data, 1, False, path_mark, is_new=True)
                state.consent = point
                next_id += 1
                current[write.record_key] = state
                changes.append(
                    (
                        state.record_id,
                        connection_id,
                        stream,
                        write.record_key,
                        1,
                        "insert",
                        _text(sorted(write.data)),
                        None,
                        run_seq,
                        now,
                    )
                )
                stats.inserted += 1
            else:
                other_paths = bool(state.paths.replace(path_mark, ",").strip(","))
                if path_mark not in state.paths:
                    state.paths += acquisition.connector_key + ","
                    state.dirty = True
                merged = merge(
                    state.data,
                    write.data,
                    semantics=definition.semantics,
                    other_paths=other_paths,
                    union_fields=definition.union_fields,
                )
                if merged == state.data and not state.deleted:
                    stats.unchanged += 1
                    evidence.add(state.record_id)
                    continue
                resurrected = state.deleted
                state.version += 1
                changes.append(
                    (
                        state.record_id,
                        connection_id,
                        stream,
                        write.record_key,
                        state.version,
                        "insert" if resurrected else "update",
                        _text(
                            sorted(merged) if resurrected else changed_fields(state.data, merged)
                        ),
                        _json(state.data),
                        run_seq,
                        now,
                    )
                )
                state.data, state.deleted, state.dirty = merged, False, True
                state.data_changed = True
                state.consent = point if merged is write.data else consent_time(definition, merged)
                stats.updated += 1
            state.emitted_at = write.emitted_at
            evidence.add(state.record_id)

        if window:
            stats.widen(min(window), max(window))
        self._flush_stream(acquisition, definition, current, changes, evidence, run_seq, now)
        self._note_coverage(acquisition, stream, window, len(records), now)

    def _flush_stream(
        self,
        acquisition: Acquisition,
        definition: StreamDefinition,
        current: dict[str, _Current],
        changes: list[tuple[Any, ...]],
        evidence: set[int],
        run_seq: int,
        now: str,
    ) -> None:
        db = self._db()
        connection_id, stream = acquisition.connection_id, definition.name
        cursor_field, searchable = definition.cursor_field, definition.searchable_fields
        scope_tokens = f"{scope_token('s', stream)} {scope_token('c', connection_id)}"
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        tombstones: list[tuple[Any, ...]] = []
        path_only: list[tuple[Any, ...]] = []
        fts_delete, fts_rows = [], []
        count_delta = 0
        for key, state in current.items():
            if not (state.is_new or state.dirty):
                continue
            if state.deleted:
                if state.is_new:  # created and deleted within this batch: keep the tombstone
                    inserts.append(
                        (
                            connection_id,
                            stream,
                            key,
                            _json(state.data),
                            state.emitted_at,
                            "",
                            None,
                            state.version,
                            now,
                            state.paths,
                            state.record_id,
                            1,
                            now,
                        )
                    )
                else:
                    tombstones.append((state.version, now, now, state.paths, state.record_id))
                    fts_delete.append((state.record_id,))
                    count_delta -= 1
                continue
            if not (state.is_new or state.data_changed):
                path_only.append((state.paths, state.record_id))
                continue
            row = (
                _json(state.data),
                state.emitted_at,
                sortable(state.data.get(cursor_field)) if cursor_field else "",
                state.consent,
                state.version,
                now,
                state.paths,
                state.record_id,
            )
            if state.is_new:
                inserts.append((connection_id, stream, key, *row, 0, None))
                count_delta += 1
            else:
                # emitted_at stays the first collection time: moving it on every change would
                # reveal changes of fields a grant withholds
                updates.append((row[0], *row[2:]))
                fts_delete.append((state.record_id,))
                count_delta += 1 if state.was_deleted else 0
            if searchable:
                texts = [search_text(state.data.get(f)) for f in searchable]
                fts_rows.append((state.record_id, scope_tokens, *texts, *[""] * (8 - len(texts))))
        if inserts:
            db.executemany(
                "INSERT INTO records (connection_id, stream, record_key, data, emitted_at, "
                "cursor_value, consent_time, version, updated_at, paths, record_id, deleted, "
                "deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
        if updates:
            db.executemany(
                "UPDATE records SET data = ?, cursor_value = ?, consent_time = ?, version = ?, "
                "updated_at = ?, paths = ?, deleted = 0, deleted_at = NULL "
                "WHERE record_id = ?",
                updates,
            )
        if tombstones:
            db.executemany(
                "UPDATE records SET version = ?, deleted = 1, deleted_at = ?, updated_at = ?, "
                "paths = ? WHERE record_id = ?",
                tombstones,
            )
        if path_only:
            db.executemany("UPDATE records SET paths = ? WHERE record_id = ?", path_only)
        if changes:
            db.executemany(
                "INSERT INTO record_changes (record_id, connection_id, stream, record_key, "
                "version, op, changed_fields, prior_data, run_seq, changed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                changes,
            )
        if evidence:
            db.executemany(
                "INSERT OR IGNORE INTO record_evidence (record_id, run_seq) VALUES (?, ?)",
                [(record_id, run_seq) for record_id in evidence],
            )
        if fts_delete:
            db.executemany("DELETE FROM search_fts WHERE rowid = ?", fts_delete)
        if fts_rows:
            db.executemany(
                "INSERT INTO search_fts (rowid, scope, f0, f1, f2, f3, f4, f5, f6, f7) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                fts_rows,
            )
        if inserts or updates or tombstones:
            db.execute(
                "INSERT INTO stream_stats (connection_id, stream, record_count, last_updated) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "record_count = record_count + excluded.record_count, "
                "last_updated = excluded.last_updated",
                (connection_id, stream, count_delta, now),
            )

    def _note_coverage(
        self, acquisition: Acquisition, stream: str, window: list[str], seen: int, now: str
    ) -> None:
        self._db().execute(
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
                acquisition.connector_key,
                acquisition.acquisition_method,
                min(window) if window else None,
                max(window) if window else None,
                acquisition.run_id,
                acquisition.batch_id,
                now,
                seen,
            ),
        )

    def coverage(self, connection_id: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT * FROM coverage WHERE connection_id = ? ORDER BY stream, connector_key",
            (connection_id,),
        )
        return [dict(r) for r in rows]

    def record_provenance(
        self, connection_id: str, stream: str, record_key: str
    ) -> list[dict[str, Any]]:
        """Every run/batch that evidenced one record, with its path. Owner-only."""
        rows = self._db().execute(
            "SELECT r.run_id, r.batch_id, r.connector_key, r.acquisition_method, r.started_at "
            "FROM records rec JOIN record_evidence e ON e.record_id = rec.record_id "
            "JOIN runs r ON r.run_seq = e.run_seq WHERE rec.connection_id = ? AND "
            "rec.stream = ? AND rec.record_key = ? ORDER BY r.run_seq",
            (connection_id, stream, record_key),
        )
        return [
            {
                "run_id": run_id,
                "batch_id": batch_id,
                "connector_key": connector_key,
                "acquisition_method": method,
                "at": started_at,
            }
            for run_id, batch_id, connector_key, method, started_at in rows
        ]

    # reads --------------------------------------------------------------------------------------
    def records_page(
        self,
        scope: ReadScope,
        *,
        limit: int,
        order: str = "desc",
        after: RecordPosition | None = None,
    ) -> tuple[list[StoredRecord], bool]:
        """One page of live records across the scope's connections, merged in one order.

        Order is (cursor value, connection_id, record key); each connection contributes an
        index range scan, so a merged page costs a few single-connection pages, not a sort.
        """
        if not scope.connection_ids:
            return [], False
        desc = order == "desc"
        cmp = "<" if desc else ">"
        direction = "DESC" if desc else "ASC"
        filters, filter_params = scope_filters(scope)
        parts, params = [], []
        for connection_id in sorted(scope.connection_ids):
            where = ["connection_id = ?", "stream = ?", "deleted = 0", *filters]
            part_params: list[Any] = [connection_id, scope.stream.name, *filter_params]
            if after is not None:
                if connection_id == after.connection_id:
                    where.append(f"(cursor_value, record_key) {cmp} (?, ?)")
                    part_params += [after.cursor_value, after.record_key]
                elif (connection_id < after.connection_id) == desc:
                    where.append(f"cursor_value {cmp}= ?")
                    part_params.append(after.cursor_value)
                else:
                    where.append(f"cursor_value {cmp} ?")
                    part_params.append(after.cursor_value)
            parts.append(
                "SELECT * FROM (SELECT connection_id, record_key, data, emitted_at, cursor_value "
                f"FROM records WHERE {' AND '.join(where)} "
                f"ORDER BY cursor_value {direction}, record_key {direction} LIMIT ?)"
            )
            params += [*part_params, limit + 1]
        sql = " UNION ALL ".join(parts)
        if len(parts) > 1:
            sql = (
                f"SELECT * FROM ({sql}) ORDER BY cursor_value {direction}, "
                f"connection_id {direction}, record_key {direction} LIMIT ?"
            )
            params.append(limit + 1)
        rows = self._db().execute(sql, params).fetchall()
        fields = frozenset(scope.fields)
        page = [
            StoredRecord(
                connection_id=row[0],
                stream=scope.stream.name,
                record_key=row[1],
                data=project(orjson.loads(row[2]), fields),
                emitted_at=row[3],
                cursor_value=row[4],
            )
            for row in rows[:limit]
        ]
        return page, len(rows) > limit

    def record(self, scope: ReadScope, record_key: str) -> list[StoredRecord]:
        """The live record with this key in each of the scope's connections (0, 1 or more)."""
        if not scope.connection_ids:
            return []
        filters, filter_params = scope_filters(scope)
        rows = (
            self._db()
            .execute(
                "SELECT connection_id, record_key, data, emitted_at, cursor_value FROM records "
                f"WHERE connection_id IN ({','.join('?' * len(scope.connection_ids))}) "
                "AND stream = ? AND record_key = ? AND deleted = 0"
                + "".join(f" AND {f}" for f in filters)
                + " ORDER BY connection_id",
                [*scope.connection_ids, scope.stream.name, record_key, *filter_params],
            )
            .fetchall()
        )
        fields = frozenset(scope.fields)
        return [
            StoredRecord(
                row[0],
                scope.stream.name,
                row[1],
                project(orjson.loads(row[2]), fields),
                row[3],
                row[4],
            )
            for row in rows
        ]

    def stream_counts(self, connection_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Live record count and last update per (connection, stream)."""
        sql = "SELECT connection_id, stream, record_count, last_updated FROM stream_stats"
        params: list[Any] = []
        if connection_ids is not None:
            sql += f" WHERE connection_id IN ({','.join('?' * len(connection_ids))})"
            params.extend(connection_ids)
        return [
            {"connection_id": c, "stream": s, "record_count": n, "last_updated": t}
            for c, s, n, t in self._db().execute(sql + " ORDER BY stream, connection_id", params)
        ]
