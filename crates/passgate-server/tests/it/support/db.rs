//! Test databases on either backend. `PASSGATE_TEST_BACKEND=postgres` runs
//! the server tests on PostgreSQL (a fresh database per test, dropped when
//! the test ends); the default is SQLite in a temporary file.

use passgate_store::{ApiKeyInfo, Event, NewApiKey, NewProject, Store, StoreResult};
use passgate_store_postgres::{PgStore, PoolSettings};
use passgate_store_sqlite::SqliteStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    match std::env::var("PASSGATE_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("PASSGATE_TEST_BACKEND={other}: use sqlite or postgres"),
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("PASSGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database for one test; removed (file or database) when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    name: String,
}

impl TestDb {
    /// A fresh database on the backend under test.
    pub async fn new() -> Self {
        Self::on(backend()).await
    }

    pub async fn on(backend: Backend) -> Self {
        let name = passgate_core::ids::IdKind::Request.generate().trim_start_matches("req_").to_string();
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("passgate-it-{name}.db"));
                Self { url: format!("sqlite://{}", path.display()), backend, name: path.display().to_string() }
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let name = format!("passgate_it_{name}");
                let admin = postgres_admin_url();
                let mut conn =
                    sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
                Self { url: format!("{base}/{name}"), backend, name }
            }
        }
    }

    /// Opens and migrates a store on this database.
    pub async fn store(&self) -> TestStore {
        match self.backend {
            Backend::Sqlite => {
                let store = SqliteStore::connect(&self.url).await.unwrap_or_else(|e| panic!("{e}"));
                store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
                TestStore::Sqlite(store)
            }
            Backend::Postgres => {
                let pool = PoolSettings { max_connections: 8, ..PoolSettings::default() };
                let store = PgStore::connect(&self.url, pool).await.unwrap_or_else(|e| panic!("{e}"));
                store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
                TestStore::Postgres(store)
            }
        }
    }

    /// Everything the database holds, as text (for "no secret at rest" checks).
    pub fn dump(&self) -> String {
        match self.backend {
            Backend::Sqlite => {
                let mut bytes = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    if let Ok(b) = std::fs::read(format!("{}{suffix}", self.name)) {
                        bytes.extend(b);
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Backend::Postgres => {
                let out = std::process::Command::new("pg_dump")
                    .args(["--data-only", "--inserts", &self.url])
                    .output()
                    .unwrap_or_else(|e| panic!("pg_dump: {e}"));
                assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.name));
                }
            }
            Backend::Postgres => {
                let name = self.name.clone();
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(&drop).execute(&mut conn).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// The store under test, whichever backend it is. Tests only; the server
/// itself is generic and never branches on the backend.
#[derive(Clone)]
pub enum TestStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            TestStore::Sqlite($s) => $call,
            TestStore::Postgres($s) => $call,
        }
    };
}

impl TestStore {
    pub async fn create_project(&self, p: NewProject, k: NewApiKey, if_absent: bool) -> StoreResult<()> {
        delegate!(self, s => s.create_project(p, k, if_absent).await)
    }
    pub async fn list_events(&self, project_id: &str, limit: u32) -> StoreResult<Vec<Event>> {
        delegate!(self, s => s.list_events(project_id, limit).await)
    }
    pub async fn list_api_keys(&self, project_id: &str) -> StoreResult<Vec<ApiKeyInfo>> {
        delegate!(self, s => s.list_api_keys(project_id).await)
    }
    pub async fn revoke_api_key(&self, key_id: &str, now: passgate_core::Timestamp) -> StoreResult<()> {
        delegate!(self, s => s.revoke_api_key(key_id, now).await)
    }
    pub async fn signing_keys(&self) -> StoreResult<Vec<passgate_store::SigningKeyRecord>> {
        delegate!(self, s => s.signing_keys().await)
    }
    pub async fn rotate_signing_key(
        &self,
        key: passgate_store::SigningKeyRecord,
        now: passgate_core::Timestamp,
    ) -> StoreResult<()> {
        delegate!(self, s => s.rotate_signing_key(key, now).await)
    }
    pub async fn close(&self) {
        delegate!(self, s => Store::close(s).await)
    }
}
