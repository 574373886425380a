-- passgate schema, PostgreSQL flavour. Kept to plain SQL that PostgreSQL-
-- compatible distributed databases also run (no extensions, no triggers, no
-- stored procedures, no sequences: ids are made by the application). Times
-- are BIGINT milliseconds since the Unix epoch, always supplied by the
-- application's clock, never by now(), so one injectable clock decides every
-- expiry and instances with skewed clocks still agree on what a row says.

CREATE TABLE projects (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    app_name          TEXT,
    redirect_urls     TEXT NOT NULL,           -- JSON array of patterns
    allowed_domains   TEXT NOT NULL,           -- JSON array
    allowed_emails    TEXT NOT NULL,           -- JSON array
    link_ttl_seconds  BIGINT NOT NULL,
    emails_per_minute BIGINT NOT NULL,
    is_dev            BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    key_hash    BYTEA NOT NULL UNIQUE,         -- SHA-256 of the key
    hint        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_by_project ON api_keys (project_id);

CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY,
    public_key         BYTEA NOT NULL,
    private_key_sealed BYTEA NOT NULL,         -- AES-256-GCM under the server secret
    created_at         BIGINT NOT NULL,
    retired_at         BIGINT                  -- NULL for the current key
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (project_id, email)
);

CREATE TABLE logins (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects (id),
    email             TEXT NOT NULL,
    token_hash        BYTEA NOT NULL UNIQUE,   -- SHA-256 of the link token
    code_hash         BYTEA,                   -- HMAC-SHA256 of the fallback code
    code_challenge    TEXT,                    -- PKCE S256 challenge
    state             TEXT,
    validation_url    TEXT NOT NULL,
    ip_address        TEXT,
    user_agent        TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    used_at           BIGINT,
    burned_at         BIGINT,
    verifier_failures BIGINT NOT NULL DEFAULT 0,
    code_failures     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX logins_by_recipient ON logins (project_id, email, created_at);
CREATE INDEX logins_by_ip ON logins (project_id, ip_address, created_at) WHERE ip_address IS NOT NULL;

-- The durable email outbox: written in the same transaction as its login.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects (id),
    login_id         TEXT,
    recipient        TEXT NOT NULL,
    payload_sealed   BYTEA,                    -- sealed content; cleared once settled
    status           TEXT NOT NULL CHECK (status IN ('queued', 'retrying', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    settled_at       BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX outbox_by_project ON outbox (project_id, created_at);
CREATE INDEX outbox_by_login ON outbox (login_id);

CREATE TABLE idempotency_keys (
    project_id       TEXT NOT NULL REFERENCES projects (id),
    key              TEXT NOT NULL,
    fingerprint      BYTEA NOT NULL,
    response_status  BIGINT NOT NULL,
    response_body    TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (project_id, key)
);

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
    created_at  BIGINT NOT NULL
);
CREATE INDEX events_by_project ON events (project_id, created_at);
