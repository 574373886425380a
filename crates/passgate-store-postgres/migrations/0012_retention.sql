-- Retention: what the sweeper finds by time and no index led to yet.
-- Logins, codes, session keys and emails are swept in the order of their
-- ids (time-ordered UUIDv7, their primary keys), so they need no index of
-- their own; these two do.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (settled_at) WHERE status <> 'pending';

-- The tables every login writes and the sweeper deletes from turn over
-- fast: the default autovacuum trigger (20% of a table dead) lets a large
-- table carry millions of dead rows, bloating it and its indexes. Vacuum
-- and analyze after 2% instead, and never pause vacuum for cost on them.
ALTER TABLE logins SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE otp_codes SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE sessions SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE stamp_replays SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE idempotency_keys SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE webhook_deliveries SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE webhook_attempts SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
-- Updated in place by every send (one row per project and minute).
ALTER TABLE project_send_counts SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);
