//! Webhooks: a project's endpoints, and the durable outbox of their
//! deliveries.
//!
//! A delivery is stored in the same transaction as the event it carries (a
//! database trigger on the events table writes one per enabled endpoint
//! that subscribed to the event's kind, whichever statement recorded the
//! event), leased to one worker at a time, and settled by it. Its body is
//! built from the event row when it is sent.

use std::future::Future;

use passgate_core::{EventId, EventKind, ProjectId, Timestamp, WebhookId};

use crate::{Event, Lease, StoreError, StoreResult};

/// An endpoint to register. Its signing secret arrives sealed under the
/// server secret: it must be used to sign, so it cannot be hashed.
#[derive(Debug)]
pub struct NewWebhook<'a> {
    pub id: &'a WebhookId,
    pub project_id: &'a ProjectId,
    pub url: &'a str,
    pub kinds: &'a [EventKind],
    pub secret_sealed: &'a [u8],
    pub at: Timestamp,
    /// The project may have at most this many endpoints, this one
    /// included: at the limit nothing is stored.
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: WebhookId,
    pub project_id: ProjectId,
    pub url: String,
    pub kinds: Vec<EventKind>,
    pub secret_sealed: Vec<u8>,
    /// After a rotation, the secret before it, which keeps signing beside
    /// the new one until `previous_secret_until`.
    pub previous_secret_sealed: Option<Vec<u8>>,
    pub previous_secret_until: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Set when a delivery spent its retries with no success since it was
    /// created; disabled endpoints get no new deliveries.
    pub disabled_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
}

impl WebhookEndpoint {
    /// The sealed secrets that sign a delivery at `now`: the current one,
    /// and the previous one while its overlap lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&[u8]> {
        let mut secrets = vec![self.secret_sealed.as_slice()];
        if let (Some(previous), Some(until)) = (&self.previous_secret_sealed, self.previous_secret_until)
            && now < until
        {
            secrets.push(previous.as_slice());
        }
        secrets
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookDeliveryStatus {
    Pending,
    Sent,
    Failed,
}

impl WebhookDeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    /// A stored status; anything else is corrupt data.
    pub fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!("unknown webhook delivery status {other:?}"))),
        }
    }
}

/// One attempt to deliver, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub attempt: i64,
    pub at: Timestamp,
    /// The receiver's answer; none when none came (timeout, refused
    /// address, connection error).
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// A delivery with its attempts, as `GET /webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub kind: EventKind,
    pub status: WebhookDeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub settled_at: Option<Timestamp>,
    /// Newest first.
    pub attempt_log: Vec<WebhookAttempt>,
}

/// A delivery leased to a worker: everything it needs to sign and send.
#[derive(Debug, Clone)]
pub struct ClaimedWebhookDelivery {
    pub endpoint: WebhookEndpoint,
    pub event: Event,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Retried by hand: this attempt is the only one, whatever the schedule.
    pub final_attempt: bool,
    pub lease_until: Timestamp,
}

/// What became of one attempt, and what to do next.
#[derive(Debug, Clone)]
pub struct WebhookAttemptResult {
    pub attempt: WebhookAttempt,
    pub next: WebhookNext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookNext {
    /// A 2xx answer: settled.
    Delivered,
    /// Failed; try again at this time.
    RetryAt(Timestamp),
    /// Failed and the retries are spent: settled as failed. If the endpoint
    /// has had no success since this delivery was created, it is disabled
    /// (recorded as a `webhook.disabled` event).
    GiveUp,
}

/// What a retry by hand found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualRetry {
    /// Queued for one more attempt, due now.
    Queued,
    /// Still pending: it is already going to be attempted.
    StillPending,
    NotFound,
}

/// How much work waits in the outboxes (for the metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    pub emails: i64,
    pub oldest_email_due: Option<Timestamp>,
    pub webhook_deliveries: i64,
    pub oldest_webhook_delivery_due: Option<Timestamp>,
}

pub trait Webhooks: Clone + Send + Sync + 'static {
    /// Stores an endpoint unless its project already has `webhook.limit`;
    /// `false` then. Concurrent creations for one project take turns, so
    /// the limit holds however many arrive at once.
    fn create_webhook(&self, webhook: NewWebhook<'_>) -> impl Future<Output = StoreResult<bool>> + Send;

    /// A project's endpoints, oldest first.
    fn list_webhooks(&self, project_id: &ProjectId) -> impl Future<Output = StoreResult<Vec<WebhookEndpoint>>> + Send;

    fn get_webhook(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
    ) -> impl Future<Output = StoreResult<Option<WebhookEndpoint>>> + Send;

    /// Deletes an endpoint with its deliveries; `false` if it did not exist.
    fn delete_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Makes `secret_sealed` the signing secret; the one before it keeps
    /// signing beside it until `previous_until`. `false` if there is no
    /// such endpoint.
    fn rotate_webhook_secret(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        secret_sealed: &[u8],
        previous_until: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Enables a disabled endpoint again (its failed deliveries stay failed
    /// until retried by hand). `false` if there is no such endpoint.
    fn enable_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> impl Future<Output = StoreResult<bool>> + Send;

    /// An endpoint's deliveries, newest first, with their attempts.
    fn list_webhook_deliveries(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<WebhookDelivery>>> + Send;

    /// Queues a settled delivery (sent or failed) for one more attempt, due
    /// at `now` (its endpoint must be enabled for it to go); a failure
    /// settles it as failed again at once.
    fn retry_webhook_delivery(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        event_id: &EventId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<ManualRetry>> + Send;

    /// Leases up to `limit` due deliveries of enabled endpoints to
    /// `lease.owner` until `lease.until`; one leased to someone else is
    /// taken only once its lease has lapsed. A delivery whose event no
    /// longer exists (removed by retention) is settled as failed instead.
    fn claim_webhook_deliveries(
        &self,
        lease: Lease,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ClaimedWebhookDelivery>>> + Send;

    /// Records one attempt by the lease holder and what follows from it.
    /// Returns `false` (and changes nothing) if the lease was lost.
    fn record_webhook_attempt(
        &self,
        id: &WebhookId,
        event_id: &EventId,
        lease_owner: &str,
        result: WebhookAttemptResult,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The earliest time a pending delivery becomes due, if any.
    fn next_webhook_delivery_due(&self) -> impl Future<Output = StoreResult<Option<Timestamp>>> + Send;

    /// Rows waiting in both outboxes, and the oldest due time of each.
    fn outbox_depth(&self) -> impl Future<Output = StoreResult<OutboxDepth>> + Send;
}
