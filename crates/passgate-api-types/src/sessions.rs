//! Client-signed session requests (`/api/v2/session/…`, authenticated by
//! an `X-Stamp` header, never by the secret key), and revoking a user's
//! session keys with the secret key.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::UserRecord;

/// The body every stamped request signs: `action` names the endpoint
/// (`whoami`, `revoke`, `activity`) and `timestampMs` (a string or a
/// number of milliseconds) must be within five minutes of the server's time.
/// Other members are allowed and ignored unless the endpoint names them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StampedBody {
    #[schema(example = "whoami")]
    pub action: String,
    #[schema(value_type = String, example = "1795219200000")]
    pub timestamp_ms: serde_json::Value,
}

/// `POST /api/v2/session/whoami`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoamiResponse {
    pub user: UserRecord,
    pub session_id: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// The organizations the user is a member of.
    pub organization_ids: Vec<String>,
}

/// `POST /api/v2/session/revoke`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedSessionResponse {
    pub session_id: String,
    pub revoked: bool,
}

/// One entry of a user's sign-in activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityEvent {
    /// `auth.verified`, `otp.verified`, `invite.accepted`, `session.created` or `session.revoked`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// `POST /api/v2/session/activity`: the user's recent sign-in activity, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityResponse {
    pub events: Vec<ActivityEvent>,
}

/// `POST /api/v2/users/{userId}/sessions/revoke`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedSessionsResponse {
    /// How many live session keys were revoked.
    pub revoked: u64,
}
