//! Retention: removing what is no longer needed, a small batch at a time,
//! so that a database's size and its cost stop growing with its age.
//!
//! Each call removes at most `batch` rows of one kind, in one short
//! transaction, so the hot path never waits behind more than one batch;
//! a sweeper calls again until a call removes fewer. Several sweepers on
//! one PostgreSQL take disjoint rows (`FOR UPDATE SKIP LOCKED`) and never
//! wait for each other or for a login in flight.

use std::future::Future;

use passgate_core::Timestamp;

use crate::StoreResult;

/// What a sweep removes, and from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepKind {
    /// Links (and invite links) whose expiry is before the horizon, used
    /// or not, with their fallback codes: a used one keeps answering
    /// `token_used` until then.
    Logins,
    /// One-time codes whose expiry is before the horizon.
    OtpCodes,
    /// Session keys that expired or were revoked before the horizon.
    Sessions,
    /// Stamp replay records past their window (the horizon is "now").
    StampReplays,
    /// Sent and failed emails settled before the horizon.
    Emails,
    /// Sent and failed webhook deliveries settled before the horizon, with
    /// their attempts.
    WebhookDeliveries,
    /// `Idempotency-Key` answers stored before the horizon (24 h ago).
    IdempotencyKeys,
    /// Per-minute send counters of minutes before the horizon.
    SendCounts,
    /// Events older than their project's `event_retention_seconds` (the
    /// horizon is "now"; a project with 0 keeps its events).
    Events,
}

impl SweepKind {
    pub const ALL: [SweepKind; 9] = [
        Self::Logins,
        Self::OtpCodes,
        Self::Sessions,
        Self::StampReplays,
        Self::Emails,
        Self::WebhookDeliveries,
        Self::IdempotencyKeys,
        Self::SendCounts,
        Self::Events,
    ];

    /// The name metrics and logs use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Logins => "logins",
            Self::OtpCodes => "otp_codes",
            Self::Sessions => "sessions",
            Self::StampReplays => "stamp_replays",
            Self::Emails => "emails",
            Self::WebhookDeliveries => "webhook_deliveries",
            Self::IdempotencyKeys => "idempotency_keys",
            Self::SendCounts => "send_counts",
            Self::Events => "events",
        }
    }
}

/// One batch to remove: rows of `kind` past `horizon`, at most `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub kind: SweepKind,
    pub horizon: Timestamp,
    pub batch: u32,
}

pub trait Retention: Clone + Send + Sync + 'static {
    /// Removes at most `sweep.batch` rows of its kind past its horizon, in
    /// one transaction; returns how many it removed.
    fn sweep(&self, sweep: Sweep) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Brings the database's files back within their bounds after a
    /// sweep: SQLite checkpoints its WAL and truncates it, waiting for the
    /// readers of the moment to finish (continuous reads would otherwise
    /// starve the automatic checkpoints and let the WAL grow); PostgreSQL
    /// leaves this to autovacuum (its per-table settings are in the
    /// migrations). Returns whether it completed (`false`: readers held on
    /// past the wait; the next sweep tries again).
    fn compact(&self) -> impl Future<Output = StoreResult<bool>> + Send;
}
