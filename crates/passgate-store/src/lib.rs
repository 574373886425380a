//! The storage contract of passgate: one [`Store`] trait whose methods are
//! use cases ("start a login and queue its email"), not tables, so each
//! backend owns its transactions and a handler never juggles one.
//!
//! Rules every implementation follows (and the [`conformance`] suite checks):
//! - time comes in as an argument (`now`); the database clock is never used,
//!   so one injectable clock decides every expiry;
//! - single use is one conditional `UPDATE … RETURNING`, never read, check,
//!   then write;
//! - limits are counted in the database, so they hold across instances;
//! - secrets arrive already hashed or sealed: a store never sees a token,
//!   code or key in clear.

pub mod backend;
pub mod models;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::future::Future;

pub use models::*;
use passgate_core::Timestamp;

/// What can go wrong in a store, independent of the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage contract. Every method is atomic: one transaction, or one
/// part (a savepoint, or a run that is repeated alone if the batch fails) of
/// a group-committed batch whose result is reported only after the batch
/// committed — either way all of it or none of it is stored.
///
/// Methods return `impl Future + Send` so the generic server can hold them
/// across `.await` in axum handlers; implementations simply write `async fn`.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies pending migrations (safe to call at every start).
    fn migrate(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Closes the connections, waiting for those in use to be returned.
    fn close(&self) -> impl Future<Output = ()> + Send;

    /// Whether the database answers and is migrated (for `/readyz`).
    fn ready(&self) -> impl Future<Output = StoreResult<()>> + Send;

    // --- projects and API keys ---

    /// Creates a project with its first API key. With `if_absent`, an existing
    /// project of that id is left as it is (dev mode re-runs this at start).
    fn create_project(
        &self,
        project: NewProject,
        first_key: NewApiKey,
        if_absent: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Replaces a project's settings; `NotFound` if it does not exist.
    fn update_project(&self, id: &str, settings: ProjectSettings) -> impl Future<Output = StoreResult<Project>> + Send;

    fn get_project(&self, id: &str) -> impl Future<Output = StoreResult<Option<Project>>> + Send;

    /// Adds a key to a project; `NotFound` if the project does not exist.
    fn create_api_key(&self, key: NewApiKey) -> impl Future<Output = StoreResult<()>> + Send;

    fn list_api_keys(&self, project_id: &str) -> impl Future<Output = StoreResult<Vec<ApiKeyInfo>>> + Send;

    /// Revokes a key; `NotFound` if there is no such key. Revoking twice keeps
    /// the first revocation time.
    fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> impl Future<Output = StoreResult<()>> + Send;

    /// Finds the key with this SHA-256 and its project.
    fn find_api_key(&self, key_hash: &[u8; 32]) -> impl Future<Output = StoreResult<Option<AuthenticatedKey>>> + Send;

    // --- signing keys ---

    /// Every stored signing key, newest first.
    fn signing_keys(&self) -> impl Future<Output = StoreResult<Vec<SigningKeyRecord>>> + Send;

    /// Stores `key` as current if there is no current key yet; returns
    /// whether it was stored (several instances may race at first start).
    fn insert_first_signing_key(&self, key: SigningKeyRecord) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Retires the current key at `now` and makes `key` current.
    fn rotate_signing_key(&self, key: SigningKeyRecord, now: Timestamp)
    -> impl Future<Output = StoreResult<()>> + Send;

    // --- magic-link logins ---

    /// Applies idempotency and send limits, then stores the login, its
    /// queued email and its `auth.started` event, all in one transaction.
    fn start_login(&self, login: NewLogin) -> impl Future<Output = StoreResult<StartOutcome>> + Send;

    /// Consumes a login by its token hash (see [`VerifyByToken`]).
    fn verify_by_token(&self, req: VerifyByToken) -> impl Future<Output = StoreResult<VerifyOutcome>> + Send;

    /// Consumes a login by its id and fallback code (see [`VerifyByCode`]).
    fn verify_by_code(&self, req: VerifyByCode) -> impl Future<Output = StoreResult<VerifyOutcome>> + Send;

    /// The state of one login and its email, scoped to its project.
    fn get_login(
        &self,
        project_id: &str,
        login_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<LoginView>>> + Send;

    // --- email outbox ---

    /// Leases up to `limit` due emails to `lease.owner` until `lease.until`.
    /// A row leased to someone else is taken only once its lease has lapsed.
    fn claim_emails(&self, lease: Lease, limit: u32) -> impl Future<Output = StoreResult<Vec<ClaimedEmail>>> + Send;

    /// Records the result of one delivery attempt by the lease holder.
    /// Returns `false` (and changes nothing) if the lease was lost meanwhile.
    fn record_delivery(
        &self,
        email_id: &str,
        lease_owner: &str,
        result: DeliveryResult,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The earliest time a queued email becomes due, if any (so the worker
    /// can sleep exactly until then).
    fn next_email_due(&self) -> impl Future<Output = StoreResult<Option<Timestamp>>> + Send;

    // --- events ---

    /// Events of a project, newest first (used by tests now, by the events API later).
    fn list_events(&self, project_id: &str, limit: u32) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
}
