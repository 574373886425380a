//! Test databases on either backend (`passgate_testkit::TempDatabase`:
//! `PASSGATE_TEST_BACKEND=postgres` runs the server tests on PostgreSQL, a
//! fresh database per test; the default is SQLite in a temporary file), and
//! the store opened on one.

use passgate_core::{ApiKeyId, ProjectId, Timestamp};
use passgate_store::{
    ApiKeyInfo, ClaimedEmail, Database, Event, EventKind, Events, Lease, NewApiKey, NewProject, Outbox, Projects,
    SigningKeyRecord, SigningKeys, StoreResult,
};
use passgate_store_postgres::{PgStore, PoolSettings};
use passgate_store_sqlite::SqliteStore;
pub use passgate_testkit::{Backend, TempDatabase as TestDb};

/// Opens and migrates a store on `db`.
pub async fn open_store(db: &TestDb) -> TestStore {
    match db.backend {
        Backend::Sqlite => {
            let store = SqliteStore::connect(&db.url).await.unwrap_or_else(|e| panic!("{e}"));
            store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
            TestStore::Sqlite(store)
        }
        Backend::Postgres => {
            let pool = PoolSettings { max_connections: 8, ..PoolSettings::default() };
            let store = PgStore::connect(&db.url, pool).await.unwrap_or_else(|e| panic!("{e}"));
            store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
            TestStore::Postgres(store)
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
    pub async fn list_events(&self, project_id: &ProjectId, limit: u32) -> StoreResult<Vec<Event>> {
        delegate!(self, s => s.list_events(project_id, limit).await)
    }
    pub async fn list_api_keys(&self, project_id: &ProjectId) -> StoreResult<Vec<ApiKeyInfo>> {
        delegate!(self, s => s.list_api_keys(project_id).await)
    }
    pub async fn revoke_api_key(&self, key_id: &ApiKeyId, now: Timestamp) -> StoreResult<()> {
        delegate!(self, s => s.revoke_api_key(key_id, now).await)
    }
    pub async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        delegate!(self, s => s.signing_keys().await)
    }
    pub async fn rotate_signing_key(&self, key: SigningKeyRecord, now: Timestamp) -> StoreResult<()> {
        delegate!(self, s => s.rotate_signing_key(key, now).await)
    }
    pub async fn get_login(
        &self,
        project_id: &ProjectId,
        login_id: &passgate_core::LoginId,
        now: Timestamp,
    ) -> StoreResult<Option<passgate_store::LoginView>> {
        delegate!(self, s => passgate_store::Logins::get_login(s, project_id, login_id, now).await)
    }
    pub async fn claim_emails(&self, lease: Lease, limit: u32) -> StoreResult<Vec<ClaimedEmail>> {
        delegate!(self, s => s.claim_emails(lease, limit).await)
    }
    pub async fn next_email_due(&self) -> StoreResult<Option<Timestamp>> {
        delegate!(self, s => s.next_email_due().await)
    }
    /// How many events of `kind` the project has.
    pub async fn count_events(&self, project_id: &ProjectId, kind: EventKind) -> usize {
        let events = self.list_events(project_id, 10_000).await.unwrap_or_else(|e| panic!("{e}"));
        events.iter().filter(|e| e.kind == kind).count()
    }
    /// The emails still waiting to be sent, whoever holds them: claimed
    /// (and so taken from every worker) as if a day had passed.
    pub async fn unsent_emails(&self, now: Timestamp) -> Vec<ClaimedEmail> {
        let later = now.plus_seconds(86_400);
        let lease = Lease { owner: "test-probe".into(), now: later, until: later.plus_seconds(60) };
        self.claim_emails(lease, 1000).await.unwrap_or_else(|e| panic!("{e}"))
    }
    pub async fn close(&self) {
        delegate!(self, s => Database::close(s).await)
    }
}
