//! The shared store conformance suite on SQLite, each check on a fresh
//! file, and SQLite's own tests: one test binary (`harness = false`, see
//! `passgate_testkit::conformance`).

use passgate_store::Database;
use passgate_store_sqlite::SqliteStore;
use passgate_testkit::TempDatabase;
use passgate_testkit::conformance::{run, trial};

async fn fresh() -> (SqliteStore, TempDatabase) {
    let database = TempDatabase::sqlite().await;
    let store = SqliteStore::connect(&database.url).await.unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    (store, database)
}

fn main() {
    run(
        fresh,
        vec![
            trial(
                "key_cache::another_process_s_changes_reach_the_next_lookup",
                key_cache::another_process_s_changes_reach_the_next_lookup,
            ),
            trial(
                "key_cache::changes_made_in_plain_sql_reach_the_next_lookup_too",
                key_cache::changes_made_in_plain_sql_reach_the_next_lookup_too,
            ),
        ],
    )
}

/// API keys kept in memory (`key_cache.rs`): every change to a key or a
/// project reaches the next lookup, whoever made it.
mod key_cache {
    use passgate_core::{Timestamp, sha256};
    use passgate_store::conformance::{project, settings};
    use passgate_store::{AuthenticatedKey, Projects};
    use passgate_store_sqlite::SqliteStore;
    use passgate_testkit::TempDatabase;

    use super::fresh;

    async fn lookup(store: &SqliteStore, key_hash: &[u8; 32]) -> AuthenticatedKey {
        let found = store.find_api_key(key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        found.unwrap_or_else(|| panic!("key not found"))
    }

    /// A store with a project whose key was looked up twice, so the second
    /// lookup (and any later one) may be answered from memory: the store, its
    /// database, the project's id and its key's hash.
    async fn with_cached_key() -> (SqliteStore, TempDatabase, passgate_core::ProjectId, [u8; 32]) {
        let (server, database) = fresh().await;
        let project_id = project(&server).await;
        let key_hash = sha256(project_id.as_str().as_bytes());
        lookup(&server, &key_hash).await;
        lookup(&server, &key_hash).await;
        (server, database, project_id, key_hash)
    }

    /// A second store on the same file, as the CLI opens it beside a server.
    async fn beside(database: &TempDatabase) -> SqliteStore {
        SqliteStore::connect(&database.url).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn another_process_s_changes_reach_the_next_lookup() {
        let (server, database, project_id, key_hash) = with_cached_key().await;
        assert_eq!(lookup(&server, &key_hash).await.project.settings, settings("Acme"));

        let cli = beside(&database).await;
        let mut changed = settings("Renamed");
        changed.redirect_urls = vec!["https://renamed.example/cb".into()];
        cli.update_project(&project_id, changed.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lookup(&server, &key_hash).await.project.settings, changed);

        let keys = cli.list_api_keys(&project_id).await.unwrap_or_else(|e| panic!("{e}"));
        cli.revoke_api_key(&keys[0].id, Timestamp(1_700_000_000_000)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lookup(&server, &key_hash).await.revoked_at, Some(Timestamp(1_700_000_000_000)));
        cli.close().await;
        server.close().await;
    }

    pub async fn changes_made_in_plain_sql_reach_the_next_lookup_too() {
        let (server, database, project_id, key_hash) = with_cached_key().await;

        // Behind the store's back: the triggers, not the store's code, signal.
        let conn = rusqlite::Connection::open(database.path()).unwrap_or_else(|e| panic!("{e}"));
        conn.execute("UPDATE projects SET name = 'Edited' WHERE id = ?", [project_id.as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lookup(&server, &key_hash).await.project.settings.name, "Edited");
        conn.execute("UPDATE api_keys SET revoked_at = 5 WHERE project_id = ?", [project_id.as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lookup(&server, &key_hash).await.revoked_at, Some(Timestamp(5)));
        conn.execute("DELETE FROM api_keys WHERE project_id = ?", [project_id.as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        let gone = server.find_api_key(&key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(gone.is_none(), "a deleted key must not be served from memory");
        server.close().await;
    }
}
