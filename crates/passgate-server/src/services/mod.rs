//! Services: the orchestration of each area, between the HTTP handlers
//! (which parse requests into domain types and map results to responses)
//! and the store (which reads and writes). A service applies project
//! policy, makes and seals secrets, hands emails to the outbox, counts what
//! happened, and signs results; it never sees HTTP.
//!
//! One error enum for the layer, [`ServiceError`], which the HTTP edge maps
//! to problem documents.

pub mod events;
pub mod invites;
pub mod logins;
pub mod organizations;
pub mod otp;
pub mod sessions;
pub mod users;
pub mod webhooks;

use passgate_core::limits::LimitKind;
use passgate_core::login::VerifyFailure;
use passgate_core::otp::OtpFailure;
use passgate_core::stamp::StampError;
use passgate_store::StoreError;

use crate::keys::KeyError;

/// What a service can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The project's policy does not admit this address.
    #[error("the project does not accept this address")]
    EmailNotAllowed,
    /// The same `Idempotency-Key` came with another request.
    #[error("the idempotency key was used with another request")]
    IdempotencyConflict,
    #[error("the {} limit is reached; retry after {retry_after_seconds} s", limit.as_str())]
    RateLimited { limit: LimitKind, retry_after_seconds: i64 },
    #[error("verification failed: {}", .0.reason())]
    Verify(VerifyFailure),
    /// Too many wrong codes for the address in a row: its codes are not
    /// checked for this long.
    #[error("codes for this address are blocked for {retry_after_seconds} s")]
    CodesBlocked { retry_after_seconds: i64 },
    /// A one-time code was refused.
    #[error("code verification failed: {}", .0.reason())]
    Otp(OtpFailure),
    /// A stamped request's stamp or body did not check out.
    #[error("stamp refused: {0}")]
    Stamp(StampError),
    /// A stamped body seen before, within its window.
    #[error("the stamped request was already used")]
    StampReplayed,
    /// The stamp's key is no live session key.
    #[error("no live session has this key")]
    SessionInvalid,
    /// A request field the service refused; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A webhook URL refused (its rules, or the addresses it resolves to).
    #[error("webhook URL not allowed: {0}")]
    WebhookUrl(String),
    /// The project has as many webhook endpoints as allowed.
    #[error("too many webhook endpoints")]
    WebhookLimit,
    /// A delivery retried by hand that is still pending.
    #[error("the delivery is still pending")]
    DeliveryPending,
    /// No such resource in the caller's project.
    #[error("not found")]
    NotFound,
    /// An accepted invite cannot be revoked.
    #[error("the invite was already accepted")]
    InviteAccepted,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Something that must not happen did (a value that cannot be
    /// serialised, say); the cause is kept for the log.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

impl ServiceError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }
}
