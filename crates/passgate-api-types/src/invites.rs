//! Invite links: `POST /api/v2/invites`, `GET /api/v2/invites`,
//! `DELETE /api/v2/invites/{inviteId}`, and what `verify` returns of an invite.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /api/v2/invites`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// The invitee's address; normalised like a start's.
    #[schema(example = "grace@example.com")]
    pub email: String,
    /// Where the emailed link points; must match an allowed redirect URL of the project.
    #[schema(example = "https://app.example.com/auth/callback")]
    pub validation_url: String,
    /// Seconds until the invite expires: 60 to 604800 (7 days, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// A JSON object of at most 4 KiB (as compact JSON), kept on the server
    /// and returned only by verify: never in the email, the link, a log line or an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Who invites, as the email names them (1–200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// An organization of the project the invitee joins on accepting (with `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// The member's role in `organizationId`: 1–64 of `A-Z a-z 0-9 _ - . :`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateInviteResponse {
    #[schema(example = "inv_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b")]
    pub invite_id: String,
    pub expires_at: String,
}

/// Where an invite stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    /// Sent, not yet accepted, not expired, not revoked.
    Pending,
    /// Its link was used.
    Accepted,
    /// Not accepted before it expired.
    Expired,
    /// Revoked by the app; its link answers `token_revoked`.
    Revoked,
}

/// An invite as listed (its metadata is returned only by verify).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteView {
    pub id: String,
    pub email: String,
    pub status: InviteStatus,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    /// The user who accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// `GET /api/v2/invites`: a page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteList {
    pub invites: Vec<InviteView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The query of `GET /api/v2/invites`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InviteListQuery {
    /// Only invites in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<InviteStatus>,
    /// The `nextCursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// What verify returns of the invite whose link it accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedInviteView {
    pub id: String,
    /// The metadata given at creation (`{}` if none).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
}
