//! `Database` for SQLite: migrations run alone on the writer's connection;
//! readiness reads the applied version on a reader.

use passgate_store::{Database, StoreResult};

use crate::SqliteStore;

impl Database for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.writer.alone(crate::migrate::run).await
    }

    async fn close(&self) {
        Self::close(self).await;
    }

    async fn ready(&self) -> StoreResult<()> {
        self.read(crate::migrate::check_current)
    }
}
