//! Invite links: a login whose email invites someone, with metadata kept on
//! the server and, optionally, a membership to grant. Creating one applies
//! the same idempotency and send limits as a login start (it is one, to the
//! limits); accepting one is a verify of its token (`Logins`), which also
//! grants the membership, in the same transaction as the token's use.

use std::future::Future;

pub use passgate_core::invite::{InviteMetadata, InviteStatus};
use passgate_core::{InviteId, OrganizationId, ProjectId, Timestamp, UserId};

use crate::StoreResult;
use crate::logins::{NewLogin, StartOutcome};

/// An invite to store: the login that carries its token and email, and
/// what only invites have.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub id: InviteId,
    /// Its token, expiry, queued email, limits and idempotency claim, as
    /// for a start (no code, no PKCE challenge, no state).
    pub login: NewLogin,
    pub metadata: Option<InviteMetadata>,
    pub invited_by: Option<String>,
    /// The organization (of the same project) the invitee joins, and as what.
    pub membership: Option<(OrganizationId, String)>,
}

/// An invite as listed (without its metadata, which only `verify` returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: InviteId,
    pub email: String,
    pub status: InviteStatus,
    pub invited_by: Option<String>,
    pub organization_id: Option<OrganizationId>,
    pub role: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub accepted_at: Option<Timestamp>,
    /// The user who accepted it.
    pub user_id: Option<UserId>,
    pub revoked_at: Option<Timestamp>,
}

/// Which invites to list: newest first, optionally of one status, after a
/// cursor (the last id of the previous page).
#[derive(Debug, Clone)]
pub struct InviteQuery {
    pub status: Option<InviteStatus>,
    pub before: Option<InviteId>,
    pub limit: u32,
    /// What "expired" means.
    pub now: Timestamp,
}

/// What an invite gave the verify that accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedInvite {
    pub id: InviteId,
    pub metadata: Option<InviteMetadata>,
    pub invited_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now, or already (revoking is idempotent).
    Revoked(Invite),
    /// Accepted before: there is nothing left to revoke.
    AlreadyAccepted,
}

pub trait Invites: Clone + Send + Sync + 'static {
    /// Stores the invite with its login and queued email and records
    /// `invite.created`, after idempotency and the send limits, in one
    /// transaction. [`StoreError::NotFound`] if the membership's
    /// organization is not the project's.
    ///
    /// [`StoreError::NotFound`]: crate::StoreError::NotFound
    fn create_invite(&self, invite: NewInvite) -> impl Future<Output = StoreResult<StartOutcome>> + Send;

    /// The project's invites, newest first.
    fn list_invites(
        &self,
        project_id: &ProjectId,
        query: InviteQuery,
    ) -> impl Future<Output = StoreResult<Vec<Invite>>> + Send;

    /// Revokes an invite so its token answers `token_revoked` at once, and
    /// records `invite.revoked` (once). `None` if the project has no such invite.
    fn revoke_invite(
        &self,
        project_id: &ProjectId,
        invite_id: &InviteId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<RevokeOutcome>>> + Send;
}
