//! The shared store conformance suite, on PostgreSQL: a fresh database per
//! test (created from `PASSGATE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use passgate_store::Store;
use passgate_store_postgres::{PgStore, PoolSettings};

mod support {
    pub fn admin_url() -> String {
        std::env::var("PASSGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
    }
}

/// Drops the test database when the test ends, passed or failed.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        // A fresh runtime on its own thread: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&support::admin_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

async fn fresh() -> (PgStore, DropDatabase) {
    use sqlx::Connection;
    let name = format!("passgate_test_{}", passgate_core::ids::IdKind::Request.generate().trim_start_matches("req_"));
    let admin_url = support::admin_url();
    let mut admin =
        sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| panic!("PostgreSQL at {admin_url}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap_or_else(|e| panic!("{e}"));
    let guard = DropDatabase(name.clone());
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("PASSGATE_TEST_POSTGRES_URL needs a database path"),
    };
    let settings = PoolSettings { max_connections: 8, ..PoolSettings::default() };
    let store = PgStore::connect(&url, settings).await.unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    (store, guard)
}

passgate_store::conformance_tests!(fresh);
