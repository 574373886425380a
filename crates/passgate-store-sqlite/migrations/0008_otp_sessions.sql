-- Email one-time codes, session keys and stamp replay records.
--
-- A code is kept only as HMAC-SHA256 under the server secret (S3). Its
-- `target_public_key` (a public value) is what the session credential is
-- sealed to when the app gave one at send. A session key row holds the
-- public half of a key the server minted and sealed; the private half is
-- never stored.
ALTER TABLE events ADD COLUMN otp_id TEXT;
ALTER TABLE events ADD COLUMN session_id TEXT;
CREATE INDEX events_by_user ON events (project_id, user_id, created_at) WHERE user_id IS NOT NULL;

CREATE TABLE otp_codes (
    id                 TEXT PRIMARY KEY,
    project_id         TEXT NOT NULL REFERENCES projects (id),
    email              TEXT NOT NULL,
    code_hash          BLOB NOT NULL,
    target_public_key  TEXT,                  -- uncompressed hex, given at send
    failures           INTEGER NOT NULL DEFAULT 0,  -- wrong codes; 3 lock it
    ip_address         TEXT,
    user_agent         TEXT,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    used_at            INTEGER
) STRICT, WITHOUT ROWID;
-- The per-address limits: sends in the window, codes still live.
CREATE INDEX otp_codes_by_email ON otp_codes (project_id, email, created_at);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects (id),
    user_id      TEXT NOT NULL,
    public_key   TEXT NOT NULL UNIQUE,        -- compressed hex, as stamps name it
    otp_id       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (project_id, user_id, created_at);

-- A stamped body seen within its window (keyed on the signed content).
CREATE TABLE stamp_replays (
    digest      BLOB PRIMARY KEY,
    keep_until  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX stamp_replays_by_end ON stamp_replays (keep_until);
