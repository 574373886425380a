//! `Database` for PostgreSQL: migrations under sqlx's advisory lock (so
//! instances that start at the same moment apply them once); readiness
//! compares the migrations applied with those this build knows, as SQLite
//! does, so a half-migrated database is not ready.

use passgate_store::{Database, StoreError, StoreResult};
use sqlx::migrate::Migrator;

use crate::{PgStore, db_err};

/// The migrations of `migrations/`, compiled in.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

impl Database for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::database)
    }

    async fn close(&self) {
        Self::close(self).await;
    }

    async fn ready(&self) -> StoreResult<()> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        match MIGRATOR.iter().find(|m| !applied.contains(&m.version)) {
            None => Ok(()),
            Some(missing) => Err(StoreError::database_message(format!(
                "the database lacks migration {} ({}); run passgate migrate",
                missing.version, missing.description
            ))),
        }
    }
}
