-- Webhook endpoints and their deliveries, and the events API's indexes.
--
-- A delivery is written by a trigger in the same transaction as the event
-- it carries, whichever statement recorded the event: the durable outbox
-- of webhooks. Its body is built from the event row when it is sent, so an
-- erasure that scrubs the event also scrubs what is still to be delivered.
-- An endpoint's signing secret is sealed under the server secret (it must
-- be used, so it cannot be hashed).
ALTER TABLE events ADD COLUMN webhook_id TEXT;

-- The events API pages by (created_at, id), newest first, per project, per
-- user and per type: every page is a range of one of these indexes. (A
-- WITHOUT ROWID table's indexes end with its key, `id`.)
CREATE INDEX events_by_kind ON events (project_id, kind, created_at);

CREATE TABLE webhook_endpoints (
    id                      TEXT PRIMARY KEY,
    project_id              TEXT NOT NULL REFERENCES projects (id),
    url                     TEXT NOT NULL,
    kinds                   TEXT NOT NULL,      -- ' auth.verified otp.verified ': each kind between spaces
    secret_sealed           BLOB NOT NULL,
    previous_secret_sealed  BLOB,               -- signs beside the new one until previous_secret_until
    previous_secret_until   INTEGER,
    created_at              INTEGER NOT NULL,
    disabled_at             INTEGER,
    last_success_at         INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_endpoints_by_project ON webhook_endpoints (project_id, created_at);

-- One event for one endpoint; the event id is the `webhook-id` header, the
-- same on every attempt.
CREATE TABLE webhook_deliveries (
    webhook_id       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    project_id       TEXT NOT NULL,
    status           TEXT NOT NULL,              -- pending | sent | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    final_attempt    INTEGER NOT NULL DEFAULT 0,  -- retried by hand: one attempt, no schedule
    next_attempt_at  INTEGER,                    -- due time while pending
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    settled_at       INTEGER,
    PRIMARY KEY (webhook_id, event_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE webhook_attempts (
    webhook_id   TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    status_code  INTEGER,                        -- none when no answer came
    latency_ms   INTEGER NOT NULL,
    error        TEXT,
    PRIMARY KEY (webhook_id, event_id, attempt)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER events_to_webhooks AFTER INSERT ON events
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, project_id, status, attempts, next_attempt_at, created_at)
    SELECT w.id, NEW.id, NEW.project_id, 'pending', 0, NEW.created_at, NEW.created_at
    FROM webhook_endpoints w
    WHERE w.project_id = NEW.project_id AND w.disabled_at IS NULL AND instr(w.kinds, ' ' || NEW.kind || ' ') > 0;
END;
