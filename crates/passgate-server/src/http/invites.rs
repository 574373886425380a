//! Invite links: create, list, revoke. Each handler parses the request into
//! domain types, calls the invites service, and maps the result.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use passgate_api_types::{
    CreateInviteRequest, CreateInviteResponse, InviteList, InviteListQuery, InviteStatus as WireStatus, InviteView,
    Problem,
};
use passgate_core::invite::{InviteMetadata, InviteStatus, InvitedBy, invite_ttl};
use passgate_core::organization::Role;
use passgate_core::{InviteId, OrganizationId, Timestamp};
use passgate_store::{Invite, Store};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, IdempotencyKey, Project, path_id};
use super::inputs;
use crate::app::App;
use crate::services::invites::{self, CreateInvite, PAGE_DEFAULT, PAGE_MAX};

fn wire_status(status: InviteStatus) -> WireStatus {
    match status {
        InviteStatus::Pending => WireStatus::Pending,
        InviteStatus::Accepted => WireStatus::Accepted,
        InviteStatus::Expired => WireStatus::Expired,
        InviteStatus::Revoked => WireStatus::Revoked,
    }
}

fn invite_view(invite: Invite) -> InviteView {
    InviteView {
        id: invite.id.into_string(),
        email: invite.email,
        status: wire_status(invite.status),
        created_at: invite.created_at.to_rfc3339(),
        expires_at: invite.expires_at.to_rfc3339(),
        invited_by: invite.invited_by,
        organization_id: invite.organization_id.map(OrganizationId::into_string),
        role: invite.role,
        accepted_at: invite.accepted_at.map(Timestamp::to_rfc3339),
        user_id: invite.user_id.map(passgate_core::UserId::into_string),
        revoked_at: invite.revoked_at.map(Timestamp::to_rfc3339),
    }
}

/// Invite someone by email.
///
/// Sends a single-use link exactly like a login's (the same allowlist,
/// policy, send limits and idempotency); `metadata` stays on the server and
/// comes back only from verify, which also makes the invitee a member of
/// `organizationId` with `role`.
#[utoipa::path(
    post,
    path = "/api/v2/invites",
    tag = "invites",
    request_body = CreateInviteRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key: a repeat within 24 h returns the first response and sends nothing")),
    responses(
        (status = 201, description = "Invite created; its email is queued", body = CreateInviteResponse),
        (status = 400, description = "invalid_request, invalid_email, validation_url_not_allowed", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 403, description = "email_not_allowed", body = Problem),
        (status = 404, description = "not_found: organizationId is not an organization of the project", body = Problem),
        (status = 409, description = "idempotency_key_reused", body = Problem),
        (status = 429, description = "rate_limited (with Retry-After)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn create_invite<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<CreateInviteRequest>,
) -> Result<Response, ApiError> {
    let idempotency = inputs::idempotency(key, &body)?;
    let email = inputs::email_address(&body.email)?;
    let validation_url = inputs::validation_url(&project, &body.validation_url)?;
    let membership = match (body.organization_id, body.role) {
        (None, None) => None,
        (Some(organization), Some(role)) => {
            let role = Role::parse(&role).map_err(|e| ApiError::invalid_request(format!("role: {e}")))?;
            // An id of the wrong shape names no organization of the project.
            let organization = OrganizationId::parse(&organization).ok_or_else(ApiError::not_found)?;
            Some((organization, role))
        }
        _ => return Err(ApiError::invalid_request("send organizationId and role together, or neither")),
    };
    let request = CreateInvite {
        email,
        validation_url,
        ttl_seconds: invite_ttl(body.expires_in).map_err(ApiError::invalid_input)?,
        metadata: body.metadata.as_ref().map(InviteMetadata::parse).transpose().map_err(ApiError::invalid_input)?,
        invited_by: body.invited_by.as_deref().map(InvitedBy::parse).transpose().map_err(ApiError::invalid_input)?,
        membership,
    };
    Ok(inputs::answered(invites::create(&app, &project, request, idempotency).await?, StatusCode::CREATED))
}

/// List the project's invites, newest first.
///
/// Cursor-paginated: pass a page's `nextCursor` as `cursor` for the next.
#[utoipa::path(
    get,
    path = "/api/v2/invites",
    tag = "invites",
    params(InviteListQuery),
    responses(
        (status = 200, description = "A page of invites", body = InviteList),
        (status = 400, description = "invalid_request: an unknown parameter or status, a bad cursor or limit", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn list_invites<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiQuery(query): ApiQuery<InviteListQuery>,
) -> Result<Json<InviteList>, ApiError> {
    let status = query.status.map(|status| match status {
        WireStatus::Pending => InviteStatus::Pending,
        WireStatus::Accepted => InviteStatus::Accepted,
        WireStatus::Expired => InviteStatus::Expired,
        WireStatus::Revoked => InviteStatus::Revoked,
    });
    let before = query
        .cursor
        .map(|cursor| {
            InviteId::parse(&cursor).ok_or_else(|| ApiError::invalid_request("cursor: not a cursor of this list"))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid_request(format!("limit must be between 1 and {PAGE_MAX}")));
    }
    let (page, next) = invites::list(&app, &project, status, before, limit).await?;
    Ok(Json(InviteList {
        invites: page.into_iter().map(invite_view).collect(),
        next_cursor: next.map(InviteId::into_string),
    }))
}

/// Revoke an invite: its link answers `token_revoked` at once.
///
/// Idempotent: revoking a revoked invite answers the same.
#[utoipa::path(
    delete,
    path = "/api/v2/invites/{invite_id}",
    tag = "invites",
    params(("invite_id" = String, Path, description = "The `inv_…` id returned by create")),
    responses(
        (status = 200, description = "The invite, revoked", body = InviteView),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found (also for another project's invite)", body = Problem),
        (status = 409, description = "invite_accepted: an accepted invite cannot be revoked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn revoke_invite<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    invite_id: Result<Path<String>, PathRejection>,
) -> Result<Json<InviteView>, ApiError> {
    let Ok(Path(invite_id)) = invite_id else { return Err(ApiError::not_found()) };
    let invite_id = path_id(&invite_id, InviteId::parse)?;
    Ok(Json(invite_view(invites::revoke(&app, &project, &invite_id).await?)))
}
