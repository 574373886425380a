//! Organizations, their members, and lookup.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use passgate_api_types::{
    CreateOrganizationRequest, CreateOrganizationResponse, ErrorCode, LookupFilter, LookupRequest, LookupResponse,
    MemberView, OrganizationView, Problem, SetRoleRequest,
};
use passgate_core::email::EmailAddress;
use passgate_core::organization::{INITIAL_MEMBERS_MAX, OrganizationName, Role};
use passgate_core::{OrganizationId, UserId};
use passgate_store::{Member, Store};

use super::error::ApiError;
use super::extract::{ApiJson, Project, path_id};
use super::inputs;
use crate::app::App;
use crate::services::organizations::{self, CreateOrganization, Lookup};

fn member_view(member: Member) -> MemberView {
    MemberView {
        user_id: member.user_id.into_string(),
        email: member.email,
        role: member.role,
        joined_at: member.joined_at.to_rfc3339(),
    }
}

fn role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).map_err(|e| ApiError::invalid_request(format!("role: {e}")))
}

/// Create an organization, with its first members by address.
///
/// A member whose address has no user yet gets one (who later signs in as
/// that user). The project's allowed domains and addresses apply to members.
#[utoipa::path(
    post,
    path = "/api/v2/organizations",
    tag = "organizations",
    request_body = CreateOrganizationRequest,
    responses(
        (status = 201, description = "Created", body = CreateOrganizationResponse),
        (status = 400, description = "invalid_request (a bad name or role, an address listed twice, over 100 members), invalid_email", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 403, description = "email_not_allowed: a member's address", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn create_organization<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiJson(body): ApiJson<CreateOrganizationRequest>,
) -> Result<(StatusCode, Json<CreateOrganizationResponse>), ApiError> {
    let name = OrganizationName::parse(&body.name).map_err(|e| ApiError::invalid_request(format!("name: {e}")))?;
    let requested = body.members.unwrap_or_default();
    if requested.len() > INITIAL_MEMBERS_MAX {
        return Err(ApiError::invalid_request(format!("members: at most {INITIAL_MEMBERS_MAX}; add more one by one")));
    }
    let mut members: Vec<(EmailAddress, Role)> = Vec::with_capacity(requested.len());
    for (i, member) in requested.iter().enumerate() {
        let email = EmailAddress::parse(&member.email)
            .map_err(|e| ApiError::new(ErrorCode::InvalidEmail, format!("members[{i}].email: {e}")))?;
        if members.iter().any(|(seen, _)| seen == &email) {
            return Err(ApiError::invalid_request(format!("members[{i}].email: listed twice")));
        }
        let role =
            Role::parse(&member.role).map_err(|e| ApiError::invalid_request(format!("members[{i}].role: {e}")))?;
        members.push((email, role));
    }
    let id = organizations::create(&app, &project, CreateOrganization { name, members }).await?;
    Ok((StatusCode::CREATED, Json(CreateOrganizationResponse { organization_id: id.into_string() })))
}

/// An organization and its members.
#[utoipa::path(
    get,
    path = "/api/v2/organizations/{organization_id}",
    tag = "organizations",
    params(("organization_id" = String, Path, description = "An `org_…` id")),
    responses(
        (status = 200, description = "The organization", body = OrganizationView),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found (also for another project's organization)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn get_organization<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    organization_id: Result<Path<String>, PathRejection>,
) -> Result<Json<OrganizationView>, ApiError> {
    let Ok(Path(organization_id)) = organization_id else { return Err(ApiError::not_found()) };
    let id = path_id(&organization_id, OrganizationId::parse)?;
    let organization = organizations::get(&app, &project, &id).await?;
    Ok(Json(OrganizationView {
        id: organization.id.into_string(),
        name: organization.name,
        created_at: organization.created_at.to_rfc3339(),
        members: organization.members.into_iter().map(member_view).collect(),
    }))
}

/// Set a member's role; a user of the project who is not a member becomes one.
#[utoipa::path(
    put,
    path = "/api/v2/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    params(
        ("organization_id" = String, Path, description = "An `org_…` id"),
        ("user_id" = String, Path, description = "A `usr_…` id"),
    ),
    request_body = SetRoleRequest,
    responses(
        (status = 200, description = "The member", body = MemberView),
        (status = 400, description = "invalid_request: a bad role", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found: the organization or the user is not the project's", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn set_member_role<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ids: Result<Path<(String, String)>, PathRejection>,
    ApiJson(body): ApiJson<SetRoleRequest>,
) -> Result<Json<MemberView>, ApiError> {
    let Ok(Path((organization_id, user_id))) = ids else { return Err(ApiError::not_found()) };
    let (organization_id, user_id) =
        (path_id(&organization_id, OrganizationId::parse)?, path_id(&user_id, UserId::parse)?);
    let member = organizations::set_role(&app, &project, &organization_id, &user_id, role(&body.role)?).await?;
    Ok(Json(member_view(member)))
}

/// Remove a member from an organization.
#[utoipa::path(
    delete,
    path = "/api/v2/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    params(
        ("organization_id" = String, Path, description = "An `org_…` id"),
        ("user_id" = String, Path, description = "A `usr_…` id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found: no such member of an organization of the project", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn remove_member<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path((organization_id, user_id))) = ids else { return Err(ApiError::not_found()) };
    let (organization_id, user_id) =
        (path_id(&organization_id, OrganizationId::parse)?, path_id(&user_id, UserId::parse)?);
    organizations::remove_member(&app, &project, &organization_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which user an address or id names, and their organizations.
///
/// For a backend that routes a request before it authenticates anyone.
/// Lookup grants nothing: authorize against memberships only after the
/// user signed in (their JWT's `sub`).
#[utoipa::path(
    post,
    path = "/api/v2/lookup",
    tag = "organizations",
    request_body = LookupRequest,
    responses(
        (status = 200, description = "The user (if any) and their organizations (empty when none)", body = LookupResponse),
        (status = 400, description = "invalid_request, invalid_email", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn lookup<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiJson(body): ApiJson<LookupRequest>,
) -> Result<Json<LookupResponse>, ApiError> {
    let lookup = match body.filter_type {
        LookupFilter::Email => Lookup::Email(inputs::email_address(&body.filter_value)?),
        LookupFilter::UserId => Lookup::User(UserId::parse(&body.filter_value)),
    };
    let (user_id, organization_ids) = organizations::lookup(&app, &project, lookup).await?;
    Ok(Json(LookupResponse {
        user_id: user_id.map(UserId::into_string),
        organization_ids: organization_ids.into_iter().map(OrganizationId::into_string).collect(),
    }))
}
