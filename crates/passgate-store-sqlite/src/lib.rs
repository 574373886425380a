//! The embedded SQLite implementation of [`Store`].
//!
//! One file, WAL mode, `synchronous=FULL`: a start that returned 202 has its
//! login and email on disk. Every write goes to one writer task that owns the
//! single write connection and commits concurrent operations together (group
//! commit, see [`writer`]); reads go through a pool of read-only connections.
//! Transactions start with `BEGIN IMMEDIATE` so a second process on the same
//! file (the CLI beside a running server) waits for the write lock instead of
//! failing.

mod store;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use passgate_store::{StoreError, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

/// SQLite-backed store. Cheap to clone (pools are reference-counted).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: writer::Writer,
    reader: SqlitePool,
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`
    /// (`sqlite://path/to/file.db`, `sqlite:file.db`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = writer::Writer::spawn(options.connect().await.map_err(db_err)?);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(db_err)?;
        Ok(Self { writer, reader })
    }

    /// Closes both pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Runs `f` in the writer's next batch transaction.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> writer::BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        self.writer.write(f).await
    }
}
