-- passgate schema, SQLite flavour. Times are INTEGER milliseconds since the
-- Unix epoch, always supplied by the application's clock (never by SQLite),
-- so one injectable clock decides every expiry. Hashes and sealed blobs are
-- BLOBs; nothing secret is stored in clear.

CREATE TABLE projects (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    app_name          TEXT,
    redirect_urls     TEXT NOT NULL,           -- JSON array of patterns
    allowed_domains   TEXT NOT NULL,           -- JSON array
    allowed_emails    TEXT NOT NULL,           -- JSON array
    link_ttl_seconds  INTEGER NOT NULL,
    emails_per_minute INTEGER NOT NULL,
    is_dev            INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    key_hash    BLOB NOT NULL UNIQUE,          -- SHA-256 of the key
    hint        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX api_keys_by_project ON api_keys (project_id);

CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY,
    public_key         BLOB NOT NULL,
    private_key_sealed BLOB NOT NULL,          -- AES-256-GCM under the server secret
    created_at         INTEGER NOT NULL,
    retired_at         INTEGER                 -- NULL for the current key
) STRICT;

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (project_id, email)
) STRICT;

CREATE TABLE logins (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects (id),
    email             TEXT NOT NULL,
    token_hash        BLOB NOT NULL UNIQUE,    -- SHA-256 of the link token
    code_hash         BLOB,                    -- HMAC-SHA256 of the fallback code
    code_challenge    TEXT,                    -- PKCE S256 challenge
    state             TEXT,
    validation_url    TEXT NOT NULL,
    ip_address        TEXT,
    user_agent        TEXT,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    used_at           INTEGER,
    burned_at         INTEGER,
    verifier_failures INTEGER NOT NULL DEFAULT 0,
    code_failures     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX logins_by_recipient ON logins (project_id, email, created_at);
CREATE INDEX logins_by_ip ON logins (project_id, ip_address, created_at) WHERE ip_address IS NOT NULL;

-- The durable email outbox: written in the same transaction as its login.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects (id),
    login_id         TEXT,
    recipient        TEXT NOT NULL,
    payload_sealed   BLOB,                     -- sealed content; cleared once settled
    status           TEXT NOT NULL CHECK (status IN ('queued', 'retrying', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    settled_at       INTEGER
) STRICT;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX outbox_by_project ON outbox (project_id, created_at);
CREATE INDEX outbox_by_login ON outbox (login_id);

CREATE TABLE idempotency_keys (
    project_id       TEXT NOT NULL REFERENCES projects (id),
    key              TEXT NOT NULL,
    fingerprint      BLOB NOT NULL,
    response_status  INTEGER NOT NULL,
    response_body    TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (project_id, key)
) STRICT;

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    kind        TEXT NOT NULL,
    user_id     TEXT,
    login_id    TEXT,
    email       TEXT,
    reason      TEXT,
    ip_address  TEXT,
    user_agent  TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX events_by_project ON events (project_id, created_at);
