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

/// A fresh database: its URL, and the guard that drops it.
async fn fresh_database() -> (String, DropDatabase) {
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
    (url, guard)
}

async fn instance(url: &str) -> PgStore {
    let settings = PoolSettings { max_connections: 8, ..PoolSettings::default() };
    PgStore::connect(url, settings).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn fresh() -> (PgStore, DropDatabase) {
    let (url, guard) = fresh_database().await;
    let store = instance(&url).await;
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    (store, guard)
}

passgate_store::conformance_tests!(fresh);

/// The lanes' statements that could scan a growing table, planned the way
/// the lanes plan them (cached generic plans) on an empty database, where a
/// plan could most easily settle on a scan that the grown table would make
/// ruinous (bench/NOTES.md, item 8): each reaches its table through the one
/// index made for its lookup, never a scan, and never the outbox's index of
/// due mail, which holds every queued email.
#[tokio::test]
async fn lane_statements_probe_their_index_even_when_planned_on_empty_tables() {
    let (store, _guard) = fresh().await;
    let plans = store.lane_plans().await.unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = plans.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["verify_together", "record_together", "record_one"]);
    for (name, plan) in &plans {
        for refused in ["Seq Scan", "Hash Join", "Merge Join", "outbox_due"] {
            assert!(!plan.contains(refused), "{name}'s plan has a {refused}:\n{plan}");
        }
    }
    let index_of = |name: &str, index: &str| {
        let (_, plan) = plans.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no plan for {name}"));
        assert!(plan.contains(&format!("Index Scan using {index}")), "{name} does not probe {index}:\n{plan}");
    };
    index_of("verify_together", "logins_token_hash_key");
    index_of("record_together", "outbox_pkey");
    index_of("record_one", "outbox_pkey");
}

/// A lane sets its plan settings for the session of the connection it
/// takes from the pool, and the starts lane chains one transaction into the
/// next while starts keep coming (src/writer.rs). A connection the lanes
/// give back carries neither: a read on it would otherwise run with
/// sequential scans off, or inside a transaction left open.
#[tokio::test]
async fn lanes_give_connections_back_without_their_settings_or_an_open_transaction() {
    use passgate_store::StartOutcome;
    use passgate_store::conformance::{T0, by_token, new_login, project};
    let (url, _guard) = fresh_database().await;
    // One connection: the lanes and the read below take turns on it.
    let settings = PoolSettings { max_connections: 1, ..PoolSettings::default() };
    let store = PgStore::connect(&url, settings).await.unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let project_id = project(&store).await;
    let mut watcher = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("{e}"))
    };
    let tokens: Vec<String> = (0..20).map(|i| format!("tok-{i}")).collect();
    let starts: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let (store, login) = (store.clone(), new_login(&project_id, &format!("u{i}@example.com"), token, T0));
            tokio::spawn(async move { store.start_login(login).await })
        })
        .collect();
    for start in starts {
        let outcome = start.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome, StartOutcome::Started);
    }
    // Chained only while more starts wait: never idle inside a transaction
    // (looked at within the 100 ms the lane keeps its connection).
    let idle_in_transaction: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&mut watcher)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(idle_in_transaction, 0, "the starts lane sits idle inside a transaction");
    let verifies: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (store, req) = (store.clone(), by_token(&project_id, token, T0.plus_seconds(1)));
            tokio::spawn(async move { store.verify_by_token(req).await })
        })
        .collect();
    for verify in verifies {
        let outcome = verify.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(outcome, passgate_store::VerifyOutcome::Verified(_)), "{outcome:?}");
    }

    // Waits until the last lane that held the one connection gave it back.
    let mut conn = store.pool().acquire().await.unwrap_or_else(|e| panic!("{e}"));
    for (setting, default) in
        [("plan_cache_mode", "auto"), ("enable_seqscan", "on"), ("enable_hashjoin", "on"), ("enable_mergejoin", "on")]
    {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value, default, "{setting} left as a lane set it");
    }
    // In a transaction begun before this statement, now() is its start. (A
    // simple query: the extended protocol restarts the statement's clock
    // between its messages.)
    let row = sqlx::raw_sql("SELECT now() <> statement_timestamp()")
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let in_transaction: bool = sqlx::Row::try_get(&row, 0).unwrap_or_else(|e| panic!("{e}"));
    assert!(!in_transaction, "a lane left a transaction open");
}

/// The API-key cache (src/key_cache.rs) on two instances of one database.
/// Entries are kept for an hour here, so only what the cache hears can make
/// an instance see another's change.
mod key_cache {
    use std::time::Duration;

    use passgate_core::{Timestamp, sha256};
    use passgate_store::Store;
    use passgate_store::conformance::{project, settings};
    use passgate_store::models::AuthenticatedKey;
    use passgate_store_postgres::{LISTENER_APPLICATION_NAME, PgStore};

    use super::{fresh_database, instance};

    const PATIENCE: Duration = Duration::from_secs(10);

    async fn lookup(store: &PgStore, key_hash: &[u8; 32]) -> AuthenticatedKey {
        let found = store.find_api_key(key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        found.unwrap_or_else(|| panic!("key not found"))
    }

    /// Two instances; `reader` has looked the project's first key up, with
    /// its listener live, so the key is in its cache.
    async fn two_instances() -> (PgStore, PgStore, String, Database) {
        let (url, guard) = fresh_database().await;
        let writer = instance(&url).await;
        writer.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let reader = instance(&url).await;
        reader.set_key_cache_max_age(Duration::from_secs(3600));
        let project_id = project(&writer).await;
        let key_hash = sha256(project_id.as_bytes());
        lookup(&reader, &key_hash).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !reader.key_cache_is_live() {
            assert!(tokio::time::Instant::now() < deadline, "the key cache's listener never connected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lookup(&reader, &key_hash).await;
        (writer, reader, project_id, Database { url, _guard: guard })
    }

    struct Database {
        url: String,
        _guard: super::DropDatabase,
    }

    impl Database {
        /// Runs SQL behind the stores' backs.
        async fn execute(&self, sql: &str, project_id: &str) -> u64 {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("{e}"));
            let done = sqlx::query(sql).bind(project_id).execute(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
            done.rows_affected()
        }
    }

    /// Looks the key up on `store` until `seen` holds, or fails after a while.
    async fn until_seen(store: &PgStore, key_hash: &[u8; 32], what: &str, seen: impl Fn(&AuthenticatedKey) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !seen(&lookup(store, key_hash).await) {
            assert!(tokio::time::Instant::now() < deadline, "{what} never reached the other instance");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn another_instance_hears_of_revocations_and_project_changes() {
        let (writer, reader, project_id, _database) = two_instances().await;
        let key_hash = sha256(project_id.as_bytes());

        let mut changed = settings("Renamed");
        changed.redirect_urls = vec!["https://renamed.example/cb".into()];
        writer.update_project(&project_id, changed.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        until_seen(&reader, &key_hash, "a project change", |k| k.project.settings == changed).await;

        let keys = writer.list_api_keys(&project_id).await.unwrap_or_else(|e| panic!("{e}"));
        writer.revoke_api_key(&keys[0].id, Timestamp(1_700_000_000_000)).await.unwrap_or_else(|e| panic!("{e}"));
        until_seen(&reader, &key_hash, "a revocation", |k| k.revoked_at.is_some()).await;
        assert!(reader.key_cache_is_live());
    }

    /// Notifications sent while the listener's connection is down are lost;
    /// the cache must not trust what it held before the reconnection.
    #[tokio::test]
    async fn a_lost_listener_connection_empties_the_cache() {
        let (writer, reader, project_id, database) = two_instances().await;
        let key_hash = sha256(project_id.as_bytes());
        // Cut the listener, and revoke behind the store's back: no
        // notification is sent, as if it had gone out during the outage.
        let cut = database
            .execute(
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = '{LISTENER_APPLICATION_NAME}' AND datname = current_database()
                       AND $1 <> ''"
                ),
                &project_id,
            )
            .await;
        assert_eq!(cut, 1, "one listener for the one instance that looked a key up");
        database.execute("UPDATE api_keys SET revoked_at = 1 WHERE project_id = $1", &project_id).await;
        until_seen(&reader, &key_hash, "a change made while the listener was cut", |k| k.revoked_at.is_some()).await;
        drop(writer);
    }

    /// Without the listener's news, an entry still expires.
    #[tokio::test]
    async fn entries_expire_without_news() {
        let (_writer, reader, project_id, database) = two_instances().await;
        let key_hash = sha256(project_id.as_bytes());
        reader.set_key_cache_max_age(Duration::from_millis(50));
        lookup(&reader, &key_hash).await;
        database.execute("UPDATE api_keys SET revoked_at = 1 WHERE project_id = $1", &project_id).await;
        until_seen(&reader, &key_hash, "a change nobody announced", |k| k.revoked_at.is_some()).await;
    }
}
