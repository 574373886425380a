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
