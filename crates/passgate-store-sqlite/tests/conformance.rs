//! The shared store conformance suite, on SQLite in a temporary file.

use passgate_store::Store;
use passgate_store_sqlite::SqliteStore;

/// Removes the database files when the test ends.
struct RemoveFiles(std::path::PathBuf);

impl Drop for RemoveFiles {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn fresh() -> (SqliteStore, RemoveFiles) {
    let name = format!("passgate-conformance-{}.db", passgate_core::ids::IdKind::Request.generate());
    let path = std::env::temp_dir().join(name);
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    (store, RemoveFiles(path))
}

passgate_store::conformance_tests!(fresh);

/// API keys kept in memory (`key_cache.rs`): every change to a key or a
/// project reaches the next lookup, whoever made it.
mod key_cache {
    use passgate_core::{Timestamp, sha256};
    use passgate_store::Store;
    use passgate_store::conformance::{project, settings};
    use passgate_store::models::AuthenticatedKey;
    use passgate_store_sqlite::SqliteStore;

    use super::fresh;

    async fn lookup(store: &SqliteStore, key_hash: &[u8; 32]) -> AuthenticatedKey {
        let found = store.find_api_key(key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        found.unwrap_or_else(|| panic!("key not found"))
    }

    /// A store with a project whose key was looked up twice, so the second
    /// lookup (and any later one) may be answered from memory: the store, its
    /// files, the project's id and its key's hash.
    async fn with_cached_key() -> (SqliteStore, super::RemoveFiles, String, [u8; 32]) {
        let (server, files) = fresh().await;
        let project_id = project(&server).await;
        let key_hash = sha256(project_id.as_bytes());
        lookup(&server, &key_hash).await;
        lookup(&server, &key_hash).await;
        (server, files, project_id, key_hash)
    }

    /// A second store on the same file, as the CLI opens it beside a server.
    async fn beside(path: &std::path::Path) -> SqliteStore {
        SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn another_process_s_changes_reach_the_next_lookup() {
        let (server, files, project_id, key_hash) = with_cached_key().await;
        assert_eq!(lookup(&server, &key_hash).await.project.settings, settings("Acme"));

        let cli = beside(&files.0).await;
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

    #[tokio::test]
    async fn changes_made_in_plain_sql_reach_the_next_lookup_too() {
        let (server, files, project_id, key_hash) = with_cached_key().await;

        // Behind the store's back: the triggers, not the store's code, signal.
        let conn = rusqlite::Connection::open(&files.0).unwrap_or_else(|e| panic!("{e}"));
        conn.execute("UPDATE projects SET name = 'Edited' WHERE id = ?", [&project_id])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lookup(&server, &key_hash).await.project.settings.name, "Edited");
        conn.execute("UPDATE api_keys SET revoked_at = 5 WHERE project_id = ?", [&project_id])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lookup(&server, &key_hash).await.revoked_at, Some(Timestamp(5)));
        conn.execute("DELETE FROM api_keys WHERE project_id = ?", [&project_id]).unwrap_or_else(|e| panic!("{e}"));
        let gone = server.find_api_key(&key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(gone.is_none(), "a deleted key must not be served from memory");
        server.close().await;
    }
}
