//! `Retention` for PostgreSQL: each batch is one statement, its rows
//! chosen with `FOR UPDATE SKIP LOCKED`, so two instances sweeping at once
//! take disjoint rows, and a row a login is writing at that moment is left
//! for the next sweep rather than waited for.

use passgate_core::limits::minute_bucket;
use passgate_store::{Retention, StoreResult, Sweep, SweepKind};

use crate::{PgStore, db_err};

impl Retention for PgStore {
    async fn sweep(&self, sweep: Sweep) -> StoreResult<u64> {
        let (horizon, batch) = (sweep.horizon.millis(), i64::from(sweep.batch));
        // Oldest first, in key order where the key is time-ordered (UUIDv7
        // ids): the scan starts where the rows past their horizon are.
        let result = match sweep.kind {
            SweepKind::Logins => {
                sqlx::query!(
                    "DELETE FROM logins WHERE id IN (
                        SELECT id FROM logins WHERE expires_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    horizon,
                    batch
                )
                .execute(&self.pool)
                .await
            }
            SweepKind::OtpCodes => {
                sqlx::query!(
                    "DELETE FROM otp_codes WHERE id IN (
                        SELECT id FROM otp_codes WHERE expires_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    horizon,
                    batch
                )
                .execute(&self.pool)
                .await
            }
            SweepKind::Sessions => {
                sqlx::query!(
                    "DELETE FROM sessions WHERE id IN (
                        SELECT id FROM sessions WHERE expires_at < $1 OR revoked_at < $1
                        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    horizon,
                    batch
                )
                .execute(&self.pool)
                .await
            }
            SweepKind::StampReplays => {
                sqlx::query!(
                    "DELETE FROM stamp_replays WHERE digest IN (
                        SELECT digest FROM stamp_replays WHERE keep_until <= $1
                        ORDER BY keep_until LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    horizon,
                    batch
                )
                .execute(&self.pool)
                .await
            }
            SweepKind::Emails => {
                sqlx::query!(
                    "DELETE FROM outbox WHERE id IN (
                        SELECT id FROM outbox WHERE status IN ('sent', 'failed') AND settled_at < $1
                        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    horizon,
                    batch
                )
                .execute(&self.pool)
                .await
            }
            SweepKind::WebhookDeliveries => {
                // With their attempts; the count is the deliveries'.
                let removed = sqlx::query_scalar!(
                    r#"WITH removed AS (
                        DELETE FROM webhook_deliveries d USING (
                            SELECT webhook_id, event_id FROM webhook_deliveries
                            WHERE status <> 'pending' AND settled_at < $1
                            ORDER BY settled_at LIMIT $2 FOR UPDATE SKIP LOCKED) old
                        WHERE d.webhook_id = old.webhook_id AND d.event_id = old.event_id
                        RETURNING d.webhook_id, d.event_id),
                     attempts AS (
                        DELETE FROM webhook_attempts a USING removed r
                        WHERE a.webhook_id = r.webhook_id AND a.event_id = r.event_id)
                     SELECT count(*) AS "removed!" FROM removed"#,
                    horizon,
                    batch
                )
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
                return Ok(u64::try_from(removed).unwrap_or(0));
            }
            SweepKind::IdempotencyKeys => {
                sqlx::query!(
                    "DELETE FROM idempotency_keys k USING (
                        SELECT project_id, key FROM idempotency_keys WHERE created_at < $1
                        ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) old
                     WHERE k.project_id = old.project_id AND k.key = old.key",
                    horizon,
                    batch
                )
                .execute(&self.pool)
                .await
            }
            SweepKind::SendCounts => {
                sqlx::query!(
                    "DELETE FROM project_send_counts c USING (
                        SELECT project_id, minute FROM project_send_counts WHERE minute < $1
                        LIMIT $2 FOR UPDATE SKIP LOCKED) old
                     WHERE c.project_id = old.project_id AND c.minute = old.minute",
                    minute_bucket(horizon),
                    batch
                )
                .execute(&self.pool)
                .await
            }
            SweepKind::Events => {
                // Per project, each a range of `events_by_project`.
                sqlx::query!(
                    "DELETE FROM events WHERE id IN (
                        SELECT e.id FROM projects p
                        CROSS JOIN LATERAL (
                            SELECT id FROM events
                            WHERE project_id = p.id AND created_at < $1 - p.event_retention_seconds * 1000
                            ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) e
                        WHERE p.event_retention_seconds > 0
                        LIMIT $2)",
                    horizon,
                    batch
                )
                .execute(&self.pool)
                .await
            }
        };
        Ok(result.map_err(db_err)?.rows_affected())
    }

    async fn compact(&self) -> StoreResult<bool> {
        // Autovacuum's (per-table settings in migration 0012).
        Ok(true)
    }
}
