-- Webhook endpoints and their deliveries, and the events API's indexes.
--
-- A delivery is written by a trigger in the same transaction as the event
-- it carries, whichever statement recorded the event (one statement-level
-- trigger, so a batch of events costs one join): the durable outbox of
-- webhooks. Its body is built from the event row when it is sent, so an
-- erasure that scrubs the event also scrubs what is still to be delivered.
-- An endpoint's signing secret is sealed under the server secret (it must
-- be used, so it cannot be hashed). Deliveries carry no foreign key to
-- their endpoint: a login must never fail because an endpoint was deleted
-- while its event was being written.
ALTER TABLE events ADD COLUMN webhook_id TEXT;

-- The events API pages by (created_at, id), newest first, per project, per
-- user and per type: every page is a range of one of these indexes.
DROP INDEX events_by_project;
CREATE INDEX events_by_project ON events (project_id, created_at, id);
DROP INDEX events_by_user;
CREATE INDEX events_by_user ON events (project_id, user_id, created_at, id) WHERE user_id IS NOT NULL;
CREATE INDEX events_by_kind ON events (project_id, kind, created_at, id);

CREATE TABLE webhook_endpoints (
    id                      TEXT PRIMARY KEY,
    project_id              TEXT NOT NULL REFERENCES projects (id),
    url                     TEXT NOT NULL,
    kinds                   TEXT[] NOT NULL,
    secret_sealed           BYTEA NOT NULL,
    previous_secret_sealed  BYTEA,              -- signs beside the new one until previous_secret_until
    previous_secret_until   BIGINT,
    created_at              BIGINT NOT NULL,
    disabled_at             BIGINT,
    last_success_at         BIGINT
);
CREATE INDEX webhook_endpoints_by_project ON webhook_endpoints (project_id, created_at);

-- One event for one endpoint; the event id is the `webhook-id` header, the
-- same on every attempt.
CREATE TABLE webhook_deliveries (
    webhook_id       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    project_id       TEXT NOT NULL,
    status           TEXT NOT NULL,              -- pending | sent | failed
    attempts         BIGINT NOT NULL DEFAULT 0,
    final_attempt    BOOLEAN NOT NULL DEFAULT FALSE,  -- retried by hand: one attempt, no schedule
    next_attempt_at  BIGINT,                     -- due time while pending
    lease_owner      TEXT,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    settled_at       BIGINT,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE webhook_attempts (
    webhook_id   TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    status_code  INTEGER,                        -- none when no answer came
    latency_ms   BIGINT NOT NULL,
    error        TEXT,
    PRIMARY KEY (webhook_id, event_id, attempt)
);

CREATE FUNCTION events_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, project_id, status, attempts, next_attempt_at, created_at)
    SELECT w.id, e.id, e.project_id, 'pending', 0, e.created_at, e.created_at
    FROM new_events e
    JOIN webhook_endpoints w
      ON w.project_id = e.project_id AND w.disabled_at IS NULL AND e.kind = ANY (w.kinds);
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_to_webhooks AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_to_webhooks();
