//! `Stamps` for PostgreSQL: one conditional insert per stamped request, so
//! two instances that receive the same body accept it once (the second
//! insert waits for the first to commit and then conflicts).

use passgate_core::Timestamp;
use passgate_store::{Stamps, StoreResult};

use crate::{PgStore, db_err};

/// Expired records removed along with each new one: more than one, so the
/// table shrinks whenever it holds expired records.
const SWEEP_BATCH: i64 = 8;

impl Stamps for PgStore {
    async fn record_stamp(&self, digest: [u8; 32], keep_until: Timestamp, now: Timestamp) -> StoreResult<bool> {
        // Sweeping takes no lock another instance waits on (SKIP LOCKED),
        // and runs in the same statement as the insert: one round trip. The
        // statement's parts do not see each other's changes (the sweep may
        // even run after the insert), so the sweep leaves this digest alone
        // and the insert itself takes over its record if it is past its
        // window: such a record is no replay, swept yet or not. A racing
        // instance waits on that update and then sees a live record.
        let inserted = sqlx::query_scalar!(
            r#"WITH swept AS (
                DELETE FROM stamp_replays WHERE digest IN (
                    SELECT digest FROM stamp_replays WHERE keep_until <= $3 AND digest <> $1
                    ORDER BY keep_until LIMIT $4 FOR UPDATE SKIP LOCKED))
             INSERT INTO stamp_replays (digest, keep_until) VALUES ($1, $2)
             ON CONFLICT (digest) DO UPDATE SET keep_until = excluded.keep_until
             WHERE stamp_replays.keep_until <= $3
             RETURNING 1 AS "one!""#,
            &digest[..],
            keep_until.millis(),
            now.millis(),
            SWEEP_BATCH
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(inserted.is_some())
    }
}
