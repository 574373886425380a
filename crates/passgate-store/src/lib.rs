//! The storage contract of passgate: one trait per area of the product
//! ([`Projects`], [`SigningKeys`], [`Logins`], [`Invites`],
//! [`Organizations`], [`Users`], [`Otp`], [`Sessions`], [`Stamps`],
//! [`Outbox`], [`Events`], [`Webhooks`], [`Retention`], and [`Database`]
//! for the lifecycle), each in the file of the same name with
//! its models beside it, and [`Store`], which is all of them. Both backend
//! crates mirror these file names, so an area is found in the same place
//! everywhere.
//!
//! Methods are use cases ("start a login and queue its email"), not tables,
//! so each backend owns its transactions and a handler never juggles one.
//!
//! Rules every implementation follows (and the [`conformance`] suite checks):
//! - time comes in as an argument (`now`); the database clock is never used,
//!   so one injectable clock decides every expiry;
//! - single use is one conditional `UPDATE … RETURNING`, never read, check,
//!   then write;
//! - what to do with what was read is decided by the pure functions of
//!   `passgate_core::login` (and [`shared`]), never by a backend on its own;
//! - limits are counted in the database, so they hold across instances;
//! - secrets arrive already hashed or sealed: a store never sees a token,
//!   code or key in clear.
//!
//! Every method is atomic: one transaction, or one part of a
//! group-committed batch whose result is reported only after the batch
//! committed — either way all of it or none of it is stored. Methods return
//! `impl Future + Send` so the generic server can hold them across `.await`
//! in axum handlers; implementations simply write `async fn`.

pub mod database;
pub mod events;
pub mod invites;
pub mod logins;
pub mod organizations;
pub mod otp;
pub mod outbox;
pub mod projects;
pub mod retention;
pub mod sessions;
pub mod shared;
pub mod signing_keys;
pub mod stamps;
pub mod users;
pub mod webhooks;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use database::Database;
pub use events::*;
pub use invites::*;
pub use logins::*;
pub use organizations::*;
pub use otp::*;
pub use outbox::*;
pub use projects::*;
pub use retention::*;
pub use sessions::*;
pub use signing_keys::*;
pub use stamps::Stamps;
pub use users::Erased;
pub use users::Users;
pub use webhooks::*;

/// A database error kept whole (its type and its cause chain), behind a
/// shareable handle: a group-committed batch that fails hands the same
/// error to every operation it held.
pub type DatabaseError = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// What can go wrong in a store, independent of the backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] DatabaseError),
}

impl StoreError {
    /// A database error from any error type.
    pub fn database(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Database(std::sync::Arc::new(e))
    }

    /// A database error described by a message (for failures that have no
    /// error value of their own, such as a writer that has shut down).
    pub fn database_message(message: impl Into<String>) -> Self {
        Self::Database(std::sync::Arc::new(Message(message.into())))
    }
}

/// An error that is only a message.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

pub type StoreResult<T> = Result<T, StoreError>;

/// The whole storage contract: every area. Implemented for any type that
/// implements all of them; the server is generic over one `S: Store`.
pub trait Store:
    Database
    + Projects
    + SigningKeys
    + Logins
    + Invites
    + Organizations
    + Users
    + Otp
    + Sessions
    + Stamps
    + Outbox
    + Events
    + Webhooks
    + Retention
{
}

impl<T> Store for T where
    T: Database
        + Projects
        + SigningKeys
        + Logins
        + Invites
        + Organizations
        + Users
        + Otp
        + Sessions
        + Stamps
        + Outbox
        + Events
        + Webhooks
        + Retention
{
}
