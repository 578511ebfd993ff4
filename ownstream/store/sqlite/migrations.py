"""Upgrades of older SQLite databases, in place, at start (or by `ownstream migrate`).

Each step takes the database from one schema version to the next in one transaction. Record
ids, connection ids, run ids and grants survive; search is rebuilt from the records by
`sync_search` (the catalog knows which fields are searchable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from ownstream.clock import random_id
from ownstream.store.sqlite.database import run_script, schema_script

if TYPE_CHECKING:
    from ownstream.store.sqlite.database import SQLiteBase

_V1_TO_V2 = """
ALTER TABLE connections ADD COLUMN published_stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deleted_connections ADD COLUMN purged_at TEXT;
UPDATE deleted_connections SET purged_at = deleted_at;
ALTER TABLE tokens ADD COLUMN label TEXT;

ALTER TABLE runs RENAME TO runs_v1;
CREATE TABLE runs (
    run_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    connection_id TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    acquisition_method TEXT NOT NULL,
    trigger TEXT NOT NULL,
    collection_mode TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    counts BLOB,
    known_gaps BLOB,
    checkpoint BLOB,
    error BLOB,
    batch_id TEXT,
    publish_seq INTEGER UNIQUE,
    published_at TEXT
);
INSERT INTO runs SELECT run_seq, run_id, connection_id, connector_key, acquisition_method,
    trigger, collection_mode, status, started_at, ended_at, counts, known_gaps, checkpoint,
    error, batch_id, CASE WHEN status = 'running' THEN NULL ELSE run_seq END,
    CASE WHEN status = 'running' THEN NULL ELSE ended_at END
    FROM runs_v1;
DROP TABLE runs_v1;
CREATE INDEX runs_by_connection ON runs (connection_id, run_seq);

ALTER TABLE run_leases RENAME TO run_leases_v1;
CREATE TABLE run_leases (
    connection_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    run_seq INTEGER NOT NULL,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    renewed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
INSERT INTO run_leases SELECT l.connection_id, l.run_id, r.run_seq, l.holder, l.acquired_at,
    l.acquired_at, l.expires_at FROM run_leases_v1 l JOIN runs r ON r.run_id = l.run_id;
DROP TABLE run_leases_v1;

ALTER TABLE records RENAME TO records_v1;
DROP INDEX IF EXISTS records_page;
CREATE TABLE records (
    record_id INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    record_key TEXT NOT NULL,
    parked INTEGER NOT NULL DEFAULT 0,
    stage INTEGER NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    data BLOB NOT NULL,
    emitted_at TEXT NOT NULL,
    cursor_value TEXT NOT NULL,
    consent_time TEXT,
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    paths TEXT NOT NULL,
    match_key TEXT,
    UNIQUE (connection_id, stream, record_key, parked)
);
INSERT INTO records SELECT record_id, connection_id, stream, record_key, 0, 0, version, deleted,
    data, emitted_at, cursor_value, consent_time, updated_at, deleted_at, paths, NULL
    FROM records_v1;
DELETE FROM sqlite_sequence WHERE name = 'records';
UPDATE sqlite_sequence SET name = 'records' WHERE name = 'records_v1';
DROP TABLE records_v1;

ALTER TABLE record_changes RENAME TO record_changes_v1;
DROP INDEX IF EXISTS changes_by_record;
CREATE TABLE record_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stage INTEGER NOT NULL,
    record_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    fields TEXT,
    prior BLOB
);

ALTER TABLE record_evidence RENAME TO record_evidence_v1;
DROP INDEX IF EXISTS evidence_by_run;
CREATE TABLE record_evidence (
    record_id INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    add_path INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (record_id, stage)
) WITHOUT ROWID;
INSERT INTO record_evidence SELECT record_id, run_seq, 0 FROM record_evidence_v1;
DROP TABLE record_evidence_v1;

DROP TABLE IF EXISTS search_fts;
"""


def _v1_to_v2(store: SQLiteBase) -> None:
    with store._tx() as db:
        run_script(db, _V1_TO_V2)
        # v1 kept every prior version whole; v2 keeps what each version changed
        changes: list[tuple[Any, ...]] = []
        for seq, record_id, version, op, fields, prior_data, run_seq in db.execute(
            "SELECT seq, record_id, version, op, changed_fields, prior_data, run_seq "
            "FROM record_changes_v1 ORDER BY seq"
        ):
            names = orjson.loads(fields)
            if (op == "insert" and version == 1) or op == "delete":
                changes.append((seq, run_seq, record_id, version, op, None, None))
                continue
            old = orjson.loads(prior_data) if prior_data else {}
            prior = {name: old[name] for name in names if name in old}
            changes.append(
                (seq, run_seq, record_id, version, op, orjson.dumps(names).decode(),
                 orjson.dumps(prior))
            )
        db.executemany("INSERT INTO record_changes VALUES (?, ?, ?, ?, ?, ?, ?)", changes)
        db.execute("DELETE FROM sqlite_sequence WHERE name = 'record_changes'")
        db.execute(
            "UPDATE sqlite_sequence SET name = 'record_changes' WHERE name = 'record_changes_v1'"
        )
        db.execute("DROP TABLE record_changes_v1")
        run_script(db, schema_script())  # the version 2 tables and indexes not yet present
        clock = db.execute("SELECT coalesce(max(publish_seq), 0) FROM runs").fetchone()[0]
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [
                ("schema_version", "2"),
                ("publish_clock", str(clock)),
                # change tokens of version 1 counted another sequence: clients re-sync
                ("store_epoch", random_id("db")),
            ],
        )


_V2_TO_V3 = """
INSERT INTO record_scopes (connection_id, stream)
    SELECT DISTINCT connection_id, stream FROM records ORDER BY connection_id, stream;
INSERT INTO record_rows (record_id, scope, record_key, parked, stage, version, deleted, data,
        emitted_at, cursor_value, consent_time, updated_at, deleted_at, paths, match_key)
    SELECT r.record_id, s.scope, r.record_key, r.parked, r.stage, r.version, r.deleted, r.data,
        r.emitted_at, r.cursor_value, r.consent_time, r.updated_at, r.deleted_at, r.paths,
        r.match_key
    FROM records r JOIN record_scopes s USING (connection_id, stream) ORDER BY r.record_id;
DELETE FROM sqlite_sequence WHERE name = 'record_rows';
UPDATE sqlite_sequence SET name = 'record_rows' WHERE name = 'records';
DROP TABLE records;
DROP TABLE search_index;
DELETE FROM search_fields;
"""


def _v2_to_v3(store: SQLiteBase) -> None:
    """Rows name their connection and stream by a number (`record_scopes`), read through the
    `records` view; record data may be compressed (`record_dictionaries`): rows stored before
    stay JSON, which version 3 reads as well. The search index loses its column sizes, so it
    is rebuilt by `sync_search`."""
    with store._tx() as db:
        run_script(db, schema_script())  # the new tables (the old `records` keeps its name)
        run_script(db, _V2_TO_V3)
        run_script(db, schema_script())  # the indexes of `record_rows` and the `records` view
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


STEPS: dict[int, Callable[[SQLiteBase], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def upgrade(store: SQLiteBase, version: int) -> None:
    while version in STEPS:
        STEPS[version](store)
        version += 1
