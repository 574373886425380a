//! The durable email outbox: emails written in the same transaction as
//! what they announce, leased to one worker at a time, settled by it.

use std::future::Future;

use passgate_core::{EmailId, LoginId, ProjectId, Timestamp};

use crate::{StoreError, StoreResult};

/// A lease taken on an email as it is queued (see `NewLogin::email_lease`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailLease {
    pub owner: String,
    pub until: Timestamp,
}

/// Where an email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailStatus {
    Queued,
    Sent,
    Retrying,
    Failed,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
        }
    }

    /// A stored status; anything else is corrupt data, never a default.
    pub fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "queued" => Ok(Self::Queued),
            "sent" => Ok(Self::Sent),
            "retrying" => Ok(Self::Retrying),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!("unknown email status {other:?}"))),
        }
    }
}

/// A worker's claim on due emails.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub now: Timestamp,
    pub until: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ClaimedEmail {
    pub id: EmailId,
    pub project_id: ProjectId,
    pub login_id: Option<LoginId>,
    pub recipient: String,
    pub payload_sealed: Vec<u8>,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Until when the claim holds, unless renewed (see [`Outbox::renew_lease`]).
    pub lease_until: Timestamp,
}

#[derive(Debug, Clone)]
pub enum DeliveryResult {
    Sent {
        at: Timestamp,
    },
    /// Failed; try again at `retry_at`.
    Retry {
        at: Timestamp,
        error: String,
        retry_at: Timestamp,
    },
    /// Failed for good; recorded as an `email.failed` event.
    GaveUp {
        at: Timestamp,
        error: String,
    },
}

pub trait Outbox: Clone + Send + Sync + 'static {
    /// Leases up to `limit` due emails to `lease.owner` until `lease.until`.
    /// A row leased to someone else is taken only once its lease has lapsed.
    fn claim_emails(&self, lease: Lease, limit: u32) -> impl Future<Output = StoreResult<Vec<ClaimedEmail>>> + Send;

    /// Records the result of one delivery attempt by the lease holder.
    /// Returns `false` (and changes nothing) if the lease was lost meanwhile.
    fn record_delivery(
        &self,
        email_id: &EmailId,
        lease_owner: &str,
        result: DeliveryResult,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Extends the lease of an email its holder is still working on (until
    /// `until`); `false` (and nothing changes) if the lease was lost, or the
    /// email settled, meanwhile.
    fn renew_lease(
        &self,
        email_id: &EmailId,
        lease_owner: &str,
        until: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The sealed content of up to `limit` emails not yet settled, oldest
    /// first: a server checks at start that its secret opens them.
    fn queued_payloads(&self, limit: u32) -> impl Future<Output = StoreResult<Vec<Vec<u8>>>> + Send;

    /// The earliest time a queued email becomes due, if any (so the worker
    /// can sleep exactly until then).
    fn next_email_due(&self) -> impl Future<Output = StoreResult<Option<Timestamp>>> + Send;
}
