//! Organizations, their members, and lookup.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A first member of a new organization, by address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMemberRequest {
    /// Normalised like a start's; a user is created for a new address.
    pub email: String,
    /// 1–64 of `A-Z a-z 0-9 _ - . :`.
    pub role: String,
}

/// `POST /api/v2/organizations`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrganizationRequest {
    /// 1–200 characters.
    #[schema(example = "Acme Corp")]
    pub name: String,
    /// Up to 100 members, each address once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<NewMemberRequest>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrganizationResponse {
    #[schema(example = "org_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b")]
    pub organization_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub joined_at: String,
}

/// `GET /api/v2/organizations/{organizationId}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// In the order they joined.
    pub members: Vec<MemberView>,
}

/// `PUT /api/v2/organizations/{organizationId}/members/{userId}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetRoleRequest {
    /// 1–64 of `A-Z a-z 0-9 _ - . :`.
    #[schema(example = "admin")]
    pub role: String,
}

/// What a lookup filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LookupFilter {
    Email,
    UserId,
}

/// `POST /api/v2/lookup`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupRequest {
    pub filter_type: LookupFilter,
    /// An address (normalised like a start's) or a `usr_…` id.
    pub filter_value: String,
}

/// Who the filter names and the organizations they belong to. Grants nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LookupResponse {
    /// Absent when no user matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Empty when none (or no user).
    pub organization_ids: Vec<String>,
}
