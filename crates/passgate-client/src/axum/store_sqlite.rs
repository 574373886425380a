//! Sessions in SQLite (rusqlite, the same bundled SQLite as passgate's).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::BoxFuture;
use super::session::{SessionRecord, SessionStore, SessionStoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS passgate_sessions (
    id_hash    BLOB PRIMARY KEY,
    handle     TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL,
    email      TEXT NOT NULL,
    roles      TEXT NOT NULL,
    method     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS passgate_sessions_user ON passgate_sessions (user_id);
CREATE INDEX IF NOT EXISTS passgate_sessions_expiry ON passgate_sessions (expires_at);
";

/// A [`SessionStore`] in a SQLite file (its table is created if missing).
/// One connection behind a mutex, used from the blocking pool: session
/// reads are one indexed lookup each.
#[derive(Clone)]
pub struct SqliteSessionStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteSessionStore")
    }
}

impl SqliteSessionStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SessionStoreError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        Self::with(conn)
    }

    /// A store that lives in memory (tests, examples).
    pub fn open_in_memory() -> Result<Self, SessionStoreError> {
        Self::with(Connection::open_in_memory().map_err(err)?)
    }

    fn with(conn: Connection) -> Result<Self, SessionStoreError> {
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, SessionStoreError>> {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let guard = conn.lock().map_err(|_| SessionStoreError("connection poisoned".into()))?;
                let conn: &Connection = &guard;
                work(conn).map_err(err)
            })
            .await
            .map_err(|e| SessionStoreError(e.to_string()))?
        })
    }
}

fn err(e: rusqlite::Error) -> SessionStoreError {
    SessionStoreError(e.to_string())
}

fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    let roles: String = row.get("roles")?;
    Ok(SessionRecord {
        handle: row.get("handle")?,
        user_id: row.get("user_id")?,
        email: row.get("email")?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        method: row.get("method")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        user_agent: row.get("user_agent")?,
    })
}

impl SessionStore for SqliteSessionStore {
    fn insert<'a>(
        &'a self,
        id_hash: [u8; 32],
        record: &'a SessionRecord,
    ) -> BoxFuture<'a, Result<(), SessionStoreError>> {
        let r = record.clone();
        let roles = serde_json::to_string(&r.roles).unwrap_or_else(|_| "[]".into());
        self.run(move |c| {
            c.execute(
                "INSERT INTO passgate_sessions (id_hash, handle, user_id, email, roles, method, created_at, expires_at, user_agent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![&id_hash[..], r.handle, r.user_id, r.email, roles, r.method, r.created_at, r.expires_at, r.user_agent],
            )
            .map(drop)
        })
    }

    fn get(&self, id_hash: [u8; 32], now: i64) -> BoxFuture<'_, Result<Option<SessionRecord>, SessionStoreError>> {
        self.run(move |c| {
            c.query_row(
                "SELECT * FROM passgate_sessions WHERE id_hash = ?1 AND expires_at > ?2",
                params![&id_hash[..], now],
                read,
            )
            .optional()
        })
    }

    fn remove(&self, id_hash: [u8; 32]) -> BoxFuture<'_, Result<bool, SessionStoreError>> {
        self.run(move |c| {
            c.execute("DELETE FROM passgate_sessions WHERE id_hash = ?1", params![&id_hash[..]]).map(|n| n > 0)
        })
    }

    fn remove_handle<'a>(
        &'a self,
        user_id: &'a str,
        handle: &'a str,
    ) -> BoxFuture<'a, Result<bool, SessionStoreError>> {
        let (user_id, handle) = (user_id.to_string(), handle.to_string());
        self.run(move |c| {
            c.execute("DELETE FROM passgate_sessions WHERE user_id = ?1 AND handle = ?2", params![user_id, handle])
                .map(|n| n > 0)
        })
    }

    fn remove_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<u64, SessionStoreError>> {
        let user_id = user_id.to_string();
        self.run(move |c| {
            c.execute("DELETE FROM passgate_sessions WHERE user_id = ?1", params![user_id]).map(|n| n as u64)
        })
    }

    fn list_user<'a>(
        &'a self,
        user_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionRecord>, SessionStoreError>> {
        let user_id = user_id.to_string();
        self.run(move |c| {
            let mut statement = c.prepare(
                "SELECT * FROM passgate_sessions WHERE user_id = ?1 AND expires_at > ?2 ORDER BY created_at DESC, handle",
            )?;
            let rows = statement.query_map(params![user_id, now], read)?;
            rows.collect()
        })
    }

    fn remove_expired(&self, now: i64) -> BoxFuture<'_, Result<u64, SessionStoreError>> {
        self.run(move |c| {
            c.execute("DELETE FROM passgate_sessions WHERE expires_at <= ?1", params![now]).map(|n| n as u64)
        })
    }
}
