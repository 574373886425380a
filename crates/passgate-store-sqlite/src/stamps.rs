//! `Stamps` for SQLite: one conditional insert per stamped request.

use passgate_core::Timestamp;
use passgate_store::{Stamps, StoreResult};
use rusqlite::params;

use crate::{OrStoreError, SqliteStore};

/// Expired records removed along with each new one: more than one, so the
/// table shrinks whenever it holds expired records.
const SWEEP_BATCH: i64 = 8;

impl Stamps for SqliteStore {
    async fn record_stamp(&self, digest: [u8; 32], keep_until: Timestamp, now: Timestamp) -> StoreResult<bool> {
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM stamp_replays WHERE digest IN (
                    SELECT digest FROM stamp_replays WHERE keep_until <= ? ORDER BY keep_until LIMIT ?)",
            )
            .db()?
            .execute(params![now.millis(), SWEEP_BATCH])
            .db()?;
            // A record past its window is no replay even if the sweep has not
            // reached it yet: it is taken over rather than kept.
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO stamp_replays (digest, keep_until) VALUES (?1, ?2)
                     ON CONFLICT (digest) DO UPDATE SET keep_until = excluded.keep_until
                     WHERE stamp_replays.keep_until <= ?3",
                )
                .db()?
                .execute(params![&digest[..], keep_until.millis(), now.millis()])
                .db()?;
            Ok(inserted == 1)
        })
        .await
    }
}
