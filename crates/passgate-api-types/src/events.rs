//! Activity and webhooks: `GET /api/v2/events` and the webhook endpoints.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One recorded event. Never carries a token, code, key, credential or
/// invite metadata; `ipAddress` and `userAgent` are what the app passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// `evt_…`; also the `webhook-id` of its deliveries.
    pub id: String,
    /// `auth.started`, `email.sent`, `email.failed`, `auth.verified`, `auth.failed`, `otp.sent`,
    /// `otp.verified`, `otp.failed`, `invite.created`, `invite.accepted`, `invite.revoked`,
    /// `session.created`, `session.revoked`, `rate_limited`, `user.deleted`, `webhook.disabled`.
    #[serde(rename = "type")]
    #[schema(example = "auth.verified")]
    pub kind: String,
    /// When it happened, RFC 3339 UTC.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The address concerned (removed when the user is erased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// A detail of the event: why, for failures (`auth.failed`, `otp.failed`, `email.failed`,
    /// `rate_limited`, `webhook.disabled`); how, for `auth.verified` (`email_link`, `email_otp`);
    /// `session_limit` for a `session.revoked` that made room for a new session key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The query of `GET /api/v2/events`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventListQuery {
    /// Only this user's events.
    pub user_id: Option<String>,
    /// Only events of these types: the parameter repeated, or one value with commas
    /// (`type=auth.verified,otp.verified`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// The `next` cursor of the page before (opaque).
    pub after: Option<String>,
    /// Events per page: 1–200, default 50.
    pub limit: Option<u32>,
}

/// `GET /api/v2/events`: a page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Pass as `after` for the next (older) page. Absent when this page was not full (it is
    /// the last); a full last page is followed by an empty one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /api/v2/webhooks`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https` (plain `http` only under `PASSGATE_WEBHOOK_ALLOW_PRIVATE=1`); no credentials, no fragment.
    #[schema(example = "https://app.example.com/hooks/passgate")]
    pub url: String,
    /// The event types to deliver (at least one; see `EventRecord.type`).
    pub events: Vec<String>,
}

/// A webhook endpoint. Its secret is shown only when created or rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRecord {
    /// `whk_…`
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
    /// Set when the endpoint was disabled after a delivery spent its retries
    /// with nothing delivered since; `POST …/enable` turns it back on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// Until when the secret before the last rotation still signs beside the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
}

/// `POST /api/v2/webhooks` → 201, and `POST /api/v2/webhooks/{id}/rotate-secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookWithSecret {
    pub webhook_id: String,
    /// `whsec_…` (standard base64 of 32 bytes): shown this once.
    pub secret: String,
    pub url: String,
    pub events: Vec<String>,
}

/// `GET /api/v2/webhooks`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub webhooks: Vec<WebhookRecord>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttemptRecord {
    /// 1 for the first attempt.
    pub attempt: i64,
    pub timestamp: String,
    /// The receiver's HTTP status; absent when no answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// Why it failed: `answered 503`, or, when no answer came, the timeout, refused address or
    /// connection error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    /// The event's id: the `webhook-id` header of every attempt.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    /// Newest first.
    pub attempt_log: Vec<DeliveryAttemptRecord>,
}

/// `GET /api/v2/webhooks/{id}/deliveries`: the newest deliveries (at most 100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryRecord>,
}
