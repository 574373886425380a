//! `Retention` for SQLite: each batch is one statement in the writer's
//! next transaction (which it shares with whatever else is queued), so a
//! sweep holds the writer for one small batch at a time.

use passgate_core::limits::minute_bucket;
use passgate_store::{Retention, StoreResult, Sweep, SweepKind};
use rusqlite::{Connection, params};

use crate::{OrStoreError, SqliteStore};

/// Deletes what `select` (a query of keys, `?1` the horizon, `?2` the
/// batch) finds from `table`, whose key is `key`.
fn delete_keys(conn: &Connection, table: &str, key: &str, select: &str, horizon: i64, batch: i64) -> StoreResult<u64> {
    let sql = format!("DELETE FROM {table} WHERE {key} IN ({select})");
    let removed = conn.prepare_cached(&sql).db()?.execute(params![horizon, batch]).db()?;
    Ok(removed as u64)
}

fn sweep(conn: &Connection, sweep: Sweep) -> StoreResult<u64> {
    let (horizon, batch) = (sweep.horizon.millis(), i64::from(sweep.batch));
    // Oldest first, in key order: the clustered tables are read from their
    // start, where the rows past their horizon are.
    match sweep.kind {
        SweepKind::Logins => delete_keys(
            conn,
            "logins",
            "id",
            "SELECT id FROM logins WHERE expires_at < ?1 ORDER BY id LIMIT ?2",
            horizon,
            batch,
        ),
        SweepKind::OtpCodes => delete_keys(
            conn,
            "otp_codes",
            "id",
            "SELECT id FROM otp_codes WHERE expires_at < ?1 ORDER BY id LIMIT ?2",
            horizon,
            batch,
        ),
        SweepKind::Sessions => delete_keys(
            conn,
            "sessions",
            "id",
            "SELECT id FROM sessions WHERE expires_at < ?1 OR revoked_at < ?1 ORDER BY id LIMIT ?2",
            horizon,
            batch,
        ),
        SweepKind::StampReplays => delete_keys(
            conn,
            "stamp_replays",
            "digest",
            "SELECT digest FROM stamp_replays WHERE keep_until <= ?1 ORDER BY keep_until LIMIT ?2",
            horizon,
            batch,
        ),
        SweepKind::Emails => delete_keys(
            conn,
            "outbox",
            "id",
            "SELECT id FROM outbox WHERE status IN ('sent', 'failed') AND settled_at < ?1 ORDER BY id LIMIT ?2",
            horizon,
            batch,
        ),
        SweepKind::WebhookDeliveries => {
            let keys: Vec<(String, String)> = conn
                .prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE (webhook_id, event_id) IN (
                        SELECT webhook_id, event_id FROM webhook_deliveries
                        WHERE status <> 'pending' AND settled_at < ?1 ORDER BY settled_at LIMIT ?2)
                     RETURNING webhook_id, event_id",
                )
                .db()?
                .query_map(params![horizon, batch], |r| Ok((r.get(0)?, r.get(1)?)))
                .db()?
                .collect::<rusqlite::Result<_>>()
                .db()?;
            let mut attempts =
                conn.prepare_cached("DELETE FROM webhook_attempts WHERE webhook_id = ? AND event_id = ?").db()?;
            for (webhook_id, event_id) in &keys {
                attempts.execute(params![webhook_id, event_id]).db()?;
            }
            Ok(keys.len() as u64)
        }
        SweepKind::IdempotencyKeys => delete_keys(
            conn,
            "idempotency_keys",
            "(project_id, key)",
            "SELECT project_id, key FROM idempotency_keys WHERE created_at < ?1 ORDER BY created_at LIMIT ?2",
            horizon,
            batch,
        ),
        SweepKind::SendCounts => delete_keys(
            conn,
            "project_send_counts",
            "(project_id, minute)",
            "SELECT project_id, minute FROM project_send_counts WHERE minute < ?1 LIMIT ?2",
            minute_bucket(horizon),
            batch,
        ),
        SweepKind::Events => delete_keys(
            conn,
            "events",
            "id",
            "SELECT e.id FROM projects p
             JOIN events e ON e.project_id = p.id AND e.created_at < ?1 - p.event_retention_seconds * 1000
             WHERE p.event_retention_seconds > 0 LIMIT ?2",
            horizon,
            batch,
        ),
    }
}

impl Retention for SqliteStore {
    async fn sweep(&self, batch: Sweep) -> StoreResult<u64> {
        self.write(move |conn| sweep(conn, batch)).await
    }

    async fn compact(&self) -> StoreResult<bool> {
        // Outside any transaction, on the writer's connection: writes wait
        // for it (as long as the readers of the moment take to finish, at
        // most the busy timeout), then the WAL starts again from empty.
        self.writer
            .alone(|conn| {
                let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).db()?;
                Ok(busy == 0)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use passgate_core::ProjectId;
    use passgate_store::{Database, Events, Retention};

    use crate::SqliteStore;

    /// Continuous readers would starve the automatic checkpoints; after a
    /// compaction the WAL is empty again however busy the readers are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn compaction_empties_the_wal_under_continuous_reads() {
        let path = std::env::temp_dir().join(format!("passgate-wal-{}.db", passgate_core::IdKind::Request.generate()));
        let store =
            SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let project = ProjectId::from_trusted("prj_any");
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = store.list_events(&project, 10).await;
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            }));
        }
        for batch in 0..40 {
            store
                .write(move |conn| {
                    for i in 0..200 {
                        conn.execute(
                            "INSERT INTO stamp_replays (digest, keep_until) VALUES (?, ?)",
                            rusqlite::params![format!("{batch}-{i}").into_bytes(), 1i64],
                        )
                        .map_err(crate::db_err)?;
                    }
                    Ok(())
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let wal = format!("{}-wal", path.display());
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size() > 0, "the writes went to the WAL");
        let mut compacted = false;
        for _ in 0..20 {
            if store.compact().await.unwrap_or_else(|e| panic!("{e}")) {
                compacted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut reads = 0;
        for reader in readers {
            reads += reader.await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(compacted, "the checkpoint completed despite the readers");
        assert!(reads > 0);
        assert_eq!(size(), 0, "the WAL was truncated");
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
