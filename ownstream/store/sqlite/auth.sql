-- Client access (OAuth 2): registered clients, pending authorizations, codes, token families,
-- and owner console sessions. Codes, tokens, polling codes, session ids and sign-in links are
-- stored only as SHA-256 hashes. Executed after schema.sql.

CREATE TABLE IF NOT EXISTS oauth_clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT,                 -- confidential clients only
    metadata BLOB NOT NULL,           -- the registered RFC 7591 metadata, never the secret
    registered_at TEXT NOT NULL,
    deleted_at TEXT
);

-- One row per authorization request, whatever the flow: `code` (PAR or plain authorize),
-- `device` (RFC 8628) or `agent` (PDPP agent connect). Every serve process sees the same rows.
CREATE TABLE IF NOT EXISTS oauth_authorizations (
    authorization_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL CHECK (flow IN ('code', 'device', 'agent')),
    client_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    request BLOB NOT NULL,            -- requested selection, client_display, client_claims
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    redirect_uri TEXT,
    state TEXT,
    code_challenge TEXT,
    request_uri_hash TEXT UNIQUE,     -- PAR handle
    device_code_hash TEXT UNIQUE,     -- device_code, or the agent-connect polling_code
    user_code TEXT,
    interval_seconds INTEGER,
    last_polled_at TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_at TEXT,
    grant_id TEXT,
    redeemed_at TEXT
);
CREATE INDEX IF NOT EXISTS oauth_authorizations_by_user_code ON oauth_authorizations (user_code);
CREATE INDEX IF NOT EXISTS oauth_authorizations_by_status ON oauth_authorizations (status);

CREATE TABLE IF NOT EXISTS oauth_codes (
    code_hash TEXT PRIMARY KEY,
    authorization_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    redeemed_at TEXT                  -- kept after use, so a replay is recognised
);

-- The tokens issued from one authorization: its access tokens and, for continuous grants, its
-- chain of refresh tokens. Reusing a superseded refresh token revokes the whole family.
CREATE TABLE IF NOT EXISTS token_families (
    family_id TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    revoked_reason TEXT
);
CREATE INDEX IF NOT EXISTS token_families_by_grant ON token_families (grant_id);

CREATE TABLE IF NOT EXISTS family_access_tokens (
    token_id TEXT PRIMARY KEY,        -- tokens.token_id
    family_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS family_access_tokens_by_family ON family_access_tokens (family_id);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    superseded_at TEXT                -- set when rotated; presenting it again is reuse
);

CREATE TABLE IF NOT EXISTS console_links (
    link_hash TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);

CREATE TABLE IF NOT EXISTS console_sessions (
    session_hash TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    ended_at TEXT
);

-- Small facts the CLI needs from a running server, e.g. its public URL for console links.
CREATE TABLE IF NOT EXISTS auth_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
