//! Sessions in PostgreSQL (sqlx), for an app with several instances.

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Row, query};

use super::BoxFuture;
use super::session::{SessionRecord, SessionStore, SessionStoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS passgate_sessions (
    id_hash    BYTEA PRIMARY KEY,
    handle     TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL,
    email      TEXT NOT NULL,
    roles      TEXT NOT NULL,
    method     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT
);
CREATE INDEX IF NOT EXISTS passgate_sessions_user ON passgate_sessions (user_id);
CREATE INDEX IF NOT EXISTS passgate_sessions_expiry ON passgate_sessions (expires_at);
";

/// A [`SessionStore`] in PostgreSQL (its table is created if missing).
#[derive(Debug, Clone)]
pub struct PostgresSessionStore {
    pool: PgPool,
}

impl PostgresSessionStore {
    /// Connects to `url` and creates the table if it is missing.
    pub async fn connect(url: &str) -> Result<Self, SessionStoreError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await.map_err(err)?;
        Self::with_pool(pool).await
    }

    /// Uses an existing pool (the app's own) and creates the table if missing.
    pub async fn with_pool(pool: PgPool) -> Result<Self, SessionStoreError> {
        // Two instances starting at once may race to create the table; a
        // transaction-scoped advisory lock makes one wait for the other.
        let mut tx = pool.begin().await.map_err(err)?;
        query("SELECT pg_advisory_xact_lock(7301003)").execute(&mut *tx).await.map_err(err)?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Self { pool })
    }
}

fn err(e: sqlx::Error) -> SessionStoreError {
    SessionStoreError(e.to_string())
}

fn read(row: &PgRow) -> Result<SessionRecord, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    Ok(SessionRecord {
        handle: row.try_get("handle")?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        method: row.try_get("method")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        user_agent: row.try_get("user_agent")?,
    })
}

impl SessionStore for PostgresSessionStore {
    fn insert<'a>(
        &'a self,
        id_hash: [u8; 32],
        record: &'a SessionRecord,
    ) -> BoxFuture<'a, Result<(), SessionStoreError>> {
        Box::pin(async move {
            let roles = serde_json::to_string(&record.roles).unwrap_or_else(|_| "[]".into());
            query(
                "INSERT INTO passgate_sessions (id_hash, handle, user_id, email, roles, method, created_at, expires_at, user_agent)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&id_hash[..])
            .bind(&record.handle)
            .bind(&record.user_id)
            .bind(&record.email)
            .bind(roles)
            .bind(&record.method)
            .bind(record.created_at)
            .bind(record.expires_at)
            .bind(&record.user_agent)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(err)
        })
    }

    fn get(&self, id_hash: [u8; 32], now: i64) -> BoxFuture<'_, Result<Option<SessionRecord>, SessionStoreError>> {
        Box::pin(async move {
            let row = query("SELECT * FROM passgate_sessions WHERE id_hash = $1 AND expires_at > $2")
                .bind(&id_hash[..])
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
            row.as_ref().map(read).transpose().map_err(err)
        })
    }

    fn remove(&self, id_hash: [u8; 32]) -> BoxFuture<'_, Result<bool, SessionStoreError>> {
        Box::pin(async move {
            let done = query("DELETE FROM passgate_sessions WHERE id_hash = $1")
                .bind(&id_hash[..])
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn remove_handle<'a>(
        &'a self,
        user_id: &'a str,
        handle: &'a str,
    ) -> BoxFuture<'a, Result<bool, SessionStoreError>> {
        Box::pin(async move {
            let done = query("DELETE FROM passgate_sessions WHERE user_id = $1 AND handle = $2")
                .bind(user_id)
                .bind(handle)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn remove_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<u64, SessionStoreError>> {
        Box::pin(async move {
            let done = query("DELETE FROM passgate_sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(done.rows_affected())
        })
    }

    fn list_user<'a>(
        &'a self,
        user_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionRecord>, SessionStoreError>> {
        Box::pin(async move {
            let rows = query(
                "SELECT * FROM passgate_sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, handle",
            )
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
            rows.iter().map(read).collect::<Result<_, _>>().map_err(err)
        })
    }

    fn remove_expired(&self, now: i64) -> BoxFuture<'_, Result<u64, SessionStoreError>> {
        Box::pin(async move {
            let done = query("DELETE FROM passgate_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(done.rows_affected())
        })
    }
}
