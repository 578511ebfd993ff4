-- Client access (OAuth 2): the same tables as SQLite's auth.sql (read its comments there).
-- Codes, tokens, polling codes, session ids and sign-in links are stored only as SHA-256
-- hashes. Every serve process reads and writes the same rows. Executed after schema.sql.

CREATE TABLE IF NOT EXISTS oauth_clients (
    client_id text COLLATE "C" PRIMARY KEY,
    secret_hash text,
    metadata bytea NOT NULL,
    registered_at text COLLATE "C" NOT NULL,
    deleted_at text COLLATE "C"
);

CREATE TABLE IF NOT EXISTS oauth_authorizations (
    authorization_id text COLLATE "C" PRIMARY KEY,
    flow text NOT NULL CHECK (flow IN ('code', 'device', 'agent')),
    client_id text COLLATE "C" NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    request bytea NOT NULL,
    scope text NOT NULL,
    resource text NOT NULL,
    redirect_uri text,
    state text,
    code_challenge text,
    request_uri_hash text COLLATE "C" UNIQUE,
    device_code_hash text COLLATE "C" UNIQUE,
    user_code text COLLATE "C",
    interval_seconds integer,
    last_polled_at text COLLATE "C",
    created_at text COLLATE "C" NOT NULL,
    expires_at text COLLATE "C" NOT NULL,
    decided_at text COLLATE "C",
    grant_id text COLLATE "C",
    redeemed_at text COLLATE "C"
);
CREATE INDEX IF NOT EXISTS oauth_authorizations_by_user_code ON oauth_authorizations (user_code);
CREATE INDEX IF NOT EXISTS oauth_authorizations_by_status ON oauth_authorizations (status);

CREATE TABLE IF NOT EXISTS oauth_codes (
    code_hash text COLLATE "C" PRIMARY KEY,
    authorization_id text COLLATE "C" NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    expires_at text COLLATE "C" NOT NULL,
    redeemed_at text COLLATE "C"
);

CREATE TABLE IF NOT EXISTS token_families (
    family_id text COLLATE "C" PRIMARY KEY,
    grant_id text COLLATE "C" NOT NULL,
    client_id text COLLATE "C" NOT NULL,
    resource text NOT NULL,
    scope text NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    revoked_at text COLLATE "C",
    revoked_reason text
);
CREATE INDEX IF NOT EXISTS token_families_by_grant ON token_families (grant_id);

CREATE TABLE IF NOT EXISTS family_access_tokens (
    token_id text COLLATE "C" PRIMARY KEY,
    family_id text COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS family_access_tokens_by_family ON family_access_tokens (family_id);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash text COLLATE "C" PRIMARY KEY,
    family_id text COLLATE "C" NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    expires_at text COLLATE "C",
    superseded_at text COLLATE "C"
);

CREATE TABLE IF NOT EXISTS console_links (
    link_hash text COLLATE "C" PRIMARY KEY,
    created_at text COLLATE "C" NOT NULL,
    expires_at text COLLATE "C" NOT NULL,
    used_at text COLLATE "C"
);

CREATE TABLE IF NOT EXISTS console_sessions (
    session_hash text COLLATE "C" PRIMARY KEY,
    created_at text COLLATE "C" NOT NULL,
    expires_at text COLLATE "C" NOT NULL,
    ended_at text COLLATE "C"
);

CREATE TABLE IF NOT EXISTS auth_settings (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
