//! Invite links: creating one (policy, the organization, the token and its
//! sealed email, the same limits and idempotency as a start), listing them,
//! revoking one. Accepting one is a verify (`services::logins`).

use passgate_api_types::CreateInviteResponse;
use passgate_core::email::EmailAddress;
use passgate_core::invite::{InviteMetadata, InviteStatus, InvitedBy};
use passgate_core::organization::Role;
use passgate_core::redirect::ValidationUrl;
use passgate_core::token::LinkToken;
use passgate_core::{InviteId, LoginId, OrganizationId};
use passgate_store::{Invite, InviteQuery, NewInvite, NewLogin, Project, RevokeOutcome, Store};

use super::ServiceError;
use super::logins::{
    Answered, Idempotency, check_policy, idempotency_claim, link_payload, prepare_email, send_limits, settle,
};
use crate::app::AppState;
use crate::mail::EmailPayload;

/// An invite, parsed.
#[derive(Debug)]
pub struct CreateInvite {
    pub email: EmailAddress,
    pub validation_url: ValidationUrl,
    pub ttl_seconds: i64,
    pub metadata: Option<InviteMetadata>,
    pub invited_by: Option<InvitedBy>,
    pub membership: Option<(OrganizationId, Role)>,
}

pub type Invited = Answered<CreateInviteResponse>;

/// Page sizes of `GET /invites`.
pub const PAGE_DEFAULT: u32 = 50;
pub const PAGE_MAX: u32 = 100;

/// Creates an invite: policy first, then the organization (which the email
/// names), then the store applies idempotency and the send limits and
/// stores the invite, its login and its queued email in one transaction.
pub async fn create<S: Store>(
    app: &AppState<S>,
    project: &Project,
    request: CreateInvite,
    idempotency: Option<Idempotency>,
) -> Result<Invited, ServiceError> {
    check_policy(project, &request.email)?;
    let organization = match &request.membership {
        Some((id, _)) => Some(app.store.get_organization(&project.id, id).await?.ok_or(ServiceError::NotFound)?.name),
        None => None,
    };
    let now = app.clock.now();
    let expires_at = now.plus_seconds(request.ttl_seconds);
    let (invite_id, login_id, token) = (InviteId::generate(), LoginId::generate(), LinkToken::generate());
    let payload = EmailPayload {
        invited_by: request.invited_by.as_ref().map(|i| i.as_str().to_string()),
        organization,
        ..link_payload("invite", project, &request.email, &request.validation_url, &token, request.ttl_seconds)
    };
    let response = CreateInviteResponse { invite_id: invite_id.to_string(), expires_at: expires_at.to_rfc3339() };
    let email = prepare_email(app, project, &login_id, &request.email, &payload)?;
    let login = NewLogin {
        id: login_id,
        project_id: project.id.clone(),
        email: request.email.into_string(),
        token_hash: token.hash().0,
        code_hash: None,
        code_challenge: None,
        state: None,
        validation_url: request.validation_url.as_str().to_string(),
        ip_address: None,
        ip_network: None,
        user_agent: None,
        created_at: now,
        expires_at,
        email_id: email.id().clone(),
        email_payload_sealed: email.sealed().to_vec(),
        email_lease: email.lease(),
        limits: send_limits(project),
        idempotency: idempotency_claim(idempotency, 201, &response)?,
        invite_id: Some(invite_id.clone()),
    };
    let invite = NewInvite {
        id: invite_id,
        login,
        metadata: request.metadata,
        invited_by: request.invited_by.map(InvitedBy::into_string),
        membership: request.membership.map(|(organization, role)| (organization, role.into_string())),
    };
    let outcome = app.store.create_invite(invite).await?;
    settle(app, outcome, email, response)
}

/// A page of the project's invites, newest first, and the cursor of the
/// next page if there is one.
pub async fn list<S: Store>(
    app: &AppState<S>,
    project: &Project,
    status: Option<InviteStatus>,
    before: Option<InviteId>,
    limit: u32,
) -> Result<(Vec<Invite>, Option<InviteId>), ServiceError> {
    // One more than asked for: whether it exists says if a next page does.
    let query = InviteQuery { status, before, limit: limit + 1, now: app.clock.now() };
    let mut invites = app.store.list_invites(&project.id, query).await?;
    let more = invites.len() > limit as usize;
    invites.truncate(limit as usize);
    let next = if more { invites.last().map(|i| i.id.clone()) } else { None };
    Ok((invites, next))
}

/// Revokes an invite (idempotently); an accepted one cannot be.
pub async fn revoke<S: Store>(app: &AppState<S>, project: &Project, id: &InviteId) -> Result<Invite, ServiceError> {
    match app.store.revoke_invite(&project.id, id, app.clock.now()).await? {
        None => Err(ServiceError::NotFound),
        Some(RevokeOutcome::AlreadyAccepted) => Err(ServiceError::InviteAccepted),
        Some(RevokeOutcome::Revoked(invite)) => Ok(invite),
    }
}
