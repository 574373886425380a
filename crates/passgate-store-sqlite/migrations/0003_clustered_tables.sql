-- The tables written on every login become WITHOUT ROWID, clustered on
-- their primary key. A rowid table with a TEXT primary key keeps a second
-- b-tree (the key's unique index) beside the table, so every insert wrote
-- both, and every commit flushed both trees' pages to the WAL. Ids are
-- UUIDv7, ordered by time, so new rows land at the right edge of the tree.
-- outbox_by_project was never read; it goes.

CREATE TABLE logins_clustered (
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
) STRICT, WITHOUT ROWID;
INSERT INTO logins_clustered SELECT * FROM logins;
DROP TABLE logins;
ALTER TABLE logins_clustered RENAME TO logins;
CREATE INDEX logins_by_recipient ON logins (project_id, email, created_at);
CREATE INDEX logins_by_ip ON logins (project_id, ip_address, created_at) WHERE ip_address IS NOT NULL;

CREATE TABLE outbox_clustered (
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
) STRICT, WITHOUT ROWID;
INSERT INTO outbox_clustered SELECT * FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_clustered RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX outbox_by_login ON outbox (login_id);

CREATE TABLE users_clustered (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (project_id, email)
) STRICT, WITHOUT ROWID;
INSERT INTO users_clustered SELECT * FROM users;
DROP TABLE users;
ALTER TABLE users_clustered RENAME TO users;

CREATE TABLE events_clustered (
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
) STRICT, WITHOUT ROWID;
INSERT INTO events_clustered SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_clustered RENAME TO events;
CREATE INDEX events_by_project ON events (project_id, created_at);

CREATE TABLE project_send_counts_clustered (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    minute      INTEGER NOT NULL,          -- milliseconds since the epoch / 60000
    sent        INTEGER NOT NULL,
    PRIMARY KEY (project_id, minute)
) STRICT, WITHOUT ROWID;
INSERT INTO project_send_counts_clustered SELECT * FROM project_send_counts;
DROP TABLE project_send_counts;
ALTER TABLE project_send_counts_clustered RENAME TO project_send_counts;

CREATE TABLE idempotency_keys_clustered (
    project_id       TEXT NOT NULL REFERENCES projects (id),
    key              TEXT NOT NULL,
    fingerprint      BLOB NOT NULL,
    response_status  INTEGER NOT NULL,
    response_body    TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (project_id, key)
) STRICT, WITHOUT ROWID;
INSERT INTO idempotency_keys_clustered SELECT * FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_clustered RENAME TO idempotency_keys;
