-- Retention: what the sweeper finds by time and no index led to yet.
-- Logins, codes, session keys and emails are swept in the order of their
-- ids (time-ordered UUIDv7, the tables' clustering keys), so they need no
-- index of their own; these two do.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (settled_at) WHERE status <> 'pending';
