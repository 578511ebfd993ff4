-- ownstream SQLite schema, version 3. Every collected thing is keyed by connection_id.
-- A fresh database is created from this file; older ones are upgraded by `migrations.py`.

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS registrations (
    kind TEXT NOT NULL,              -- definition | connector | rule
    key TEXT NOT NULL,
    document BLOB NOT NULL,
    base_dir TEXT,
    added_at TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);

CREATE TABLE IF NOT EXISTS connections (
    connection_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    source TEXT NOT NULL,
    display_name TEXT NOT NULL,
    display_name_is_placeholder INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'revoked')),
    identity_claim TEXT,
    identity_value TEXT,
    identity_proven_by TEXT,
    identity_rule_id TEXT,
    identity_proven_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revoked_at TEXT,
    published_stage INTEGER NOT NULL DEFAULT 0  -- readers see versions of stages up to this one
);
-- One connection per identity *and proving connector*: two connectors proving equal values
-- are one connection only when a rule links them (then the second attaches as a path).
CREATE UNIQUE INDEX IF NOT EXISTS connections_identity
    ON connections (owner_id, source, identity_claim, identity_value, identity_proven_by)
    WHERE identity_claim IS NOT NULL;

CREATE TABLE IF NOT EXISTS connection_paths (
    connection_id TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    acquisition_method TEXT NOT NULL,
    attached_at TEXT NOT NULL,
    proved_identity INTEGER NOT NULL,
    rule_id TEXT,
    PRIMARY KEY (connection_id, connector_key)
);

CREATE TABLE IF NOT EXISTS connection_settings (
    connection_id TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (connection_id, connector_key, name)
);

CREATE TABLE IF NOT EXISTS connection_credentials (
    connection_id TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at TEXT NOT NULL,
    rotated_at TEXT,
    PRIMARY KEY (connection_id, connector_key, name)
);

CREATE TABLE IF NOT EXISTS deleted_connections (
    connection_id TEXT PRIMARY KEY,   -- never reused, so old grants never read a newcomer
    deleted_at TEXT NOT NULL,
    purged_at TEXT                    -- its records are gone (purged in short transactions)
);

CREATE TABLE IF NOT EXISTS identity_tombstones (
    owner_id TEXT NOT NULL,
    source TEXT NOT NULL,
    claim TEXT NOT NULL,
    value TEXT NOT NULL,
    connector_key TEXT NOT NULL,      -- a path that had proven this identity
    connection_id TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (owner_id, source, claim, value, connector_key)
);

-- One row per run, import or push. Its run_seq is its *stage*: the versions it writes stay
-- invisible until it is published (publish_seq, from the publish clock, orders change feeds).
CREATE TABLE IF NOT EXISTS runs (
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
CREATE INDEX IF NOT EXISTS runs_by_connection ON runs (connection_id, run_seq);

CREATE TABLE IF NOT EXISTS run_leases (
    connection_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    run_seq INTEGER NOT NULL,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    renewed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Per stage and stream: what its batches did, folded into stream_stats and coverage at publish.
CREATE TABLE IF NOT EXISTS stage_stats (
    stage INTEGER NOT NULL,
    stream TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    acquisition_method TEXT NOT NULL,
    count_delta INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    seen INTEGER NOT NULL,
    window_start TEXT,
    window_end TEXT,
    PRIMARY KEY (stage, stream)
);

-- Stages whose leftovers are still being cleared in short transactions: the parked versions a
-- published stage superseded, or everything an abandoned stage wrote.
CREATE TABLE IF NOT EXISTS stage_cleanup (
    stage INTEGER PRIMARY KEY,
    connection_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('published', 'abandoned')),
    queued_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS acquisition_batches (
    batch_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    acquisition_method TEXT NOT NULL,
    parser_version TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_name TEXT NOT NULL,
    artifact_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    counts BLOB NOT NULL,
    window_start TEXT,
    window_end TEXT,
    warnings BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (connector_key, artifact_sha256)
);
CREATE INDEX IF NOT EXISTS batches_by_connection ON acquisition_batches (connection_id);

-- Records: one *head* row per record (parked = 0), plus, while a stage that changed it is
-- unpublished, the published version it superseded (parked = that stage). A reader of a
-- connection whose published stage is P sees a row when stage <= P and (parked = 0 or
-- parked > P): publishing is one update of P, whatever the stage wrote.
-- Rows name their connection and stream by a small `scope` number (`record_scopes`) so that
-- neither is repeated as text in every row and index entry; the `records` view reads them
-- with both, and every read goes through it. Writes go to `record_rows`.
CREATE TABLE IF NOT EXISTS record_scopes (
    scope INTEGER PRIMARY KEY,
    connection_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    UNIQUE (connection_id, stream)
);
CREATE TABLE IF NOT EXISTS record_rows (
    record_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: search rows key on it
    scope INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    parked INTEGER NOT NULL DEFAULT 0,
    stage INTEGER NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    data BLOB NOT NULL,               -- JSON, or zstd against a dictionary (record_codec.py)
    emitted_at TEXT NOT NULL,
    cursor_value TEXT NOT NULL,       -- sortable text; '' when the record has no cursor value
    consent_time TEXT,                -- normalized UTC ISO of the consent-time field
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    paths TEXT NOT NULL,              -- connector keys that evidenced it, ',k1,k2,'
    match_key TEXT,                   -- its identity under a record rule (NULL: no rule applies)
    UNIQUE (scope, record_key, parked)
);
CREATE INDEX IF NOT EXISTS records_page
    ON record_rows (scope, cursor_value, record_key) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS records_parked ON record_rows (parked) WHERE parked != 0;
CREATE INDEX IF NOT EXISTS records_match
    ON record_rows (scope, match_key) WHERE match_key IS NOT NULL;
CREATE VIEW IF NOT EXISTS records AS
    SELECT r.record_id, s.connection_id, s.stream, r.record_key, r.parked, r.stage, r.version,
        r.deleted, r.data, r.emitted_at, r.cursor_value, r.consent_time, r.updated_at,
        r.deleted_at, r.paths, r.match_key, r.scope
    FROM record_rows r JOIN record_scopes s ON s.scope = r.scope;

-- zstd dictionaries trained on a connection's own records of one stream; `records.data` is
-- either JSON or a zstd frame naming its dictionary (see record_codec.py). Ids are random and
-- never reused; deleted with the connection's records.
CREATE TABLE IF NOT EXISTS record_dictionaries (
    dictionary_id INTEGER PRIMARY KEY,
    connection_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    content BLOB NOT NULL,
    UNIQUE (connection_id, stream)
);

-- One row per version. Inserts carry no field list; updates list the top-level fields they
-- changed and those fields' previous values, so every version can be reconstructed.
CREATE TABLE IF NOT EXISTS record_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stage INTEGER NOT NULL,
    record_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    fields TEXT,
    prior BLOB
);
CREATE INDEX IF NOT EXISTS changes_by_stage ON record_changes (stage, seq);
CREATE INDEX IF NOT EXISTS changes_by_record ON record_changes (record_id, seq);

-- Provenance beyond the change log: a stage that saw a record it left unchanged. `add_path`
-- marks that the sighting added its connector to the record's paths (undone if abandoned).
CREATE TABLE IF NOT EXISTS record_evidence (
    record_id INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    add_path INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (record_id, stage)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS evidence_by_stage ON record_evidence (stage);

CREATE TABLE IF NOT EXISTS stream_stats (
    connection_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    PRIMARY KEY (connection_id, stream)
);

CREATE TABLE IF NOT EXISTS coverage (
    connection_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    acquisition_method TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    last_run_id TEXT NOT NULL,
    last_batch_id TEXT,
    last_at TEXT NOT NULL,
    records_seen INTEGER NOT NULL,
    PRIMARY KEY (connection_id, stream, connector_key)
);

CREATE TABLE IF NOT EXISTS connection_state (
    connection_id TEXT NOT NULL,
    connector_key TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor BLOB NOT NULL,
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (connection_id, connector_key, stream)
);

-- Search: contentless FTS5 (the text lives only in records.data); rowid = records.record_id.
-- `scope` holds opaque stream and connection tokens so a grant's connections and streams are
-- part of the MATCH itself; f0..f7 hold the searchable fields in the order `search_fields`
-- recorded for the stream when its rows were indexed.
-- No column sizes (`columnsize = 0`): they serve only bm25 ranking, and hits are newest first.
CREATE VIRTUAL TABLE IF NOT EXISTS search_index USING fts5 (
    scope, f0, f1, f2, f3, f4, f5, f6, f7,
    content = '',
    columnsize = 0,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS search_fields (
    stream TEXT PRIMARY KEY,
    fields TEXT NOT NULL              -- JSON list: the definition's searchable fields
);

CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    document BLOB NOT NULL,           -- the issued grant, immutable
    issued_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);

CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,      -- sha256 of the token; the token itself is never stored
    token_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('owner', 'client')),
    grant_id TEXT,
    label TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);

-- Reads per client, grant, stream and connection per day: counted in memory, flushed in bulk.
CREATE TABLE IF NOT EXISTS access_counts (
    day TEXT NOT NULL,
    client_id TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    reads INTEGER NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (day, client_id, grant_id, stream, connection_id)
);

CREATE TABLE IF NOT EXISTS schedules (
    connection_id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    interval_seconds INTEGER NOT NULL,
    jitter_seconds INTEGER NOT NULL DEFAULT 0,
    next_due_at TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    backoff_until TEXT,
    last_run_at TEXT,
    origin TEXT NOT NULL,             -- owner | refresh_policy
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_due_at) WHERE enabled = 1 AND paused = 0;

-- Append-only; survives connection deletion. Never holds secrets or record contents.
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor_kind TEXT NOT NULL,         -- owner | scheduler | client | system
    connection_id TEXT,
    operation TEXT NOT NULL,
    outcome TEXT NOT NULL,            -- succeeded | failed | refused | started | skipped
    summary BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_connection ON audit_events (connection_id, seq);

-- OAuth authorizations at providers, from their start (the CLI or the console) to the callback
-- (`serve`): separate processes, so they live here. Only a hash of the state is kept; the PKCE
-- verifier and a client secret are sealed, and dropped when the authorization ends.
CREATE TABLE IF NOT EXISTS provider_authorizations (
    authorization_id TEXT PRIMARY KEY,
    state_hash TEXT NOT NULL UNIQUE,  -- sha256 of the state sent to the provider
    connector_key TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'completing', 'connected', 'refused', 'expired')),
    redirect_uri TEXT NOT NULL,
    client_id TEXT NOT NULL,
    settings BLOB NOT NULL,           -- JSON: the connection's settings (endpoints and such)
    display_name TEXT,
    connection_id TEXT,               -- the connection to re-authorize, then the one connected
    allow_recreate INTEGER NOT NULL,
    sealed_verifier BLOB,
    sealed_client_secret BLOB,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    finished_at TEXT,
    outcome BLOB                      -- JSON: who was connected, or why it was refused
);
CREATE INDEX IF NOT EXISTS provider_authorizations_expiry ON provider_authorizations (expires_at);

-- Blobs (content-addressed files under the blob directory, never in the database): which
-- blobs each record row references (heads and parked versions, staged or published), by the
-- top-level field a grant projects and with the producer's media type. A blob is readable
-- through a visible record that references it in a granted field; its file is deleted when
-- nothing references or holds it any more.
CREATE TABLE IF NOT EXISTS record_blobs (
    record_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    PRIMARY KEY (record_id, field, blob_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_blobs_by_blob ON record_blobs (blob_id);

-- Blobs a stage holds: handed over by its connector (or named by its records) before the
-- records referencing them are committed; released when the stage is published or abandoned.
CREATE TABLE IF NOT EXISTS blob_holds (
    stage INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    PRIMARY KEY (stage, blob_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_holds_by_blob ON blob_holds (blob_id);

-- Blobs that may have lost their last reference or hold; `collect_blob_garbage` deletes the
-- files of those still unused and empties the queue.
CREATE TABLE IF NOT EXISTS blob_garbage (
    blob_id TEXT PRIMARY KEY,
    queued_at TEXT NOT NULL
);
