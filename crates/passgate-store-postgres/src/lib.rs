//! The PostgreSQL implementation of [`Store`](passgate_store::Store), for
//! running several stateless passgate instances on one database.
//!
//! Migrations run under sqlx's advisory lock, so instances that start at the
//! same moment apply them once. The pool's size and timeouts are the
//! operator's to size (see docs/scale-out.md); a connection that sat idle
//! for a while is checked before it is handed out, so the pool recovers by
//! itself after the database comes back.
//!
//! One file per area, named as in `passgate-store` (`logins.rs` holds
//! `impl Logins for PgStore`). Hot-path writes are group-committed: the
//! generic [`writer`] runs lanes whose kinds and batched statements live in
//! `batch/`; new areas use plain transactions. API keys are cached in memory
//! and forgotten when any instance announces a change ([`key_cache`]).

mod batch;
mod database;
mod events;
mod invites;
mod key_cache;
mod logins;
mod organizations;
mod otp;
mod outbox;
mod projects;
mod retention;
mod sessions;
mod signing_keys;
mod stamps;
mod users;
mod webhooks;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use passgate_store::{StoreError, StoreResult};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// PostgreSQL-backed store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The hot-path writes, group-committed (see [`writer`] and `batch/`).
    lanes: batch::HotPath,
    /// API keys with their project, kept while PostgreSQL keeps us told of
    /// changes (see [`key_cache`]).
    keys: Arc<key_cache::KeyCache>,
}

pub use batch::BatchedCounts;
pub use key_cache::LISTENER_APPLICATION_NAME;

/// Pool sizing.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a free connection (and a new
    /// connection for the database) before failing.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(5) }
    }
}

/// A pooled connection idle this long is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::database(e)
}

impl PgStore {
    /// Connects lazily: the first query opens the first connection, so a
    /// server can start while the database is briefly unreachable and report
    /// it through `/readyz` instead of dying.
    pub fn connect_lazy(url: &str, pool: PoolSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db_err)?.application_name("passgate");
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            // Ping only connections that sat idle: a ping on every checkout
            // is a round trip per query (two per login, for the key
            // lookups), while a connection busy a moment ago is alive. One
            // that broke under load fails its query, and the pool drops it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options.clone());
        let lanes = batch::HotPath::spawn(&pool);
        Ok(Self { pool, lanes, keys: Arc::new(key_cache::KeyCache::new(options)) })
    }

    /// How long a cached API key may be used after it was read, when no
    /// notification says it changed (default one second). Tests lengthen it
    /// to show that notifications alone keep instances in step.
    pub fn set_key_cache_max_age(&self, max_age: Duration) {
        self.keys.set_max_age(max_age);
    }

    /// Whether API-key lookups are served from memory: true once the
    /// listener for key changes is connected (it starts with the first
    /// lookup), false while it is not.
    pub fn key_cache_is_live(&self) -> bool {
        self.keys.is_live()
    }

    /// The pool behind the store, for tests that look at what its
    /// connections carry.
    #[doc(hidden)]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the cluster runs autovacuum. Retention depends on it: the
    /// sweeper's deletes leave dead rows that only vacuum makes reusable.
    pub async fn autovacuum_is_on(&self) -> StoreResult<bool> {
        let setting: String =
            sqlx::query_scalar("SELECT current_setting('autovacuum')").fetch_one(&self.pool).await.map_err(db_err)?;
        Ok(setting == "on")
    }

    /// Connects and checks the database answers.
    pub async fn connect(url: &str, pool: PoolSettings) -> StoreResult<Self> {
        // One connection of our own first: when the database cannot be
        // reached, the pool only says that it timed out waiting, while a
        // connection says why ("Connection refused", a failed lookup, a
        // refused password).
        let options = PgConnectOptions::from_str(url).map_err(db_err)?.application_name("passgate");
        match tokio::time::timeout(
            pool.acquire_timeout,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await
        {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(e)) => return Err(db_err(e)),
            Err(_) => {
                return Err(StoreError::database_message(format!(
                    "no answer within {} s (is the host reachable, and the port right?)",
                    pool.acquire_timeout.as_secs_f64()
                )));
            }
        }
        let store = Self::connect_lazy(url, pool)?;
        sqlx::query("SELECT 1").execute(&store.pool).await.map_err(db_err)?;
        Ok(store)
    }

    /// Finishes the writes already queued, then closes the pool.
    pub async fn close(&self) {
        self.keys.stop_listener();
        self.lanes.close().await;
        self.pool.close().await;
    }

    pub(crate) async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }
}
