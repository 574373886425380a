//! The shared store conformance suite, on SQLite in a temporary file.

use passgate_store::Store;
use passgate_store_sqlite::SqliteStore;

async fn fresh() -> SqliteStore {
    let path = std::env::temp_dir().join(format!("passgate-conformance-{}.db", uuid_like()));
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    store
}

fn uuid_like() -> String {
    passgate_core::ids::IdKind::Request.generate()
}

passgate_store::conformance_tests!(fresh);
