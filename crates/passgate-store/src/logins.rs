//! Magic-link logins: starting one (limits, idempotency, its queued email),
//! verifying it by token or by fallback code, and reading its state.

use std::future::Future;

pub use passgate_core::limits::LimitKind;
pub use passgate_core::login::{AuthMethod, LoginStatus, VerifyFailure};
use passgate_core::{EmailId, InviteId, LoginId, ProjectId, Timestamp, UserId};

use crate::StoreResult;
use crate::outbox::{EmailLease, EmailStatus};

/// The send limits that apply to one start, from the project's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub per_recipient: i64,
    pub per_recipient_window_seconds: i64,
    pub per_project_per_minute: i64,
    pub per_ip_per_minute: i64,
}

/// A caller's `Idempotency-Key` and what to answer on a repeat.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    /// SHA-256 of the request body as parsed (so whitespace and field order
    /// do not matter): the same key with another body is a conflict.
    pub fingerprint: [u8; 32],
    /// The response to store for repeats (it carries no secret).
    pub response_status: u16,
    pub response_body: String,
}

#[derive(Debug, Clone)]
pub struct NewLogin {
    pub id: LoginId,
    pub project_id: ProjectId,
    pub email: String,
    pub token_hash: [u8; 32],
    /// Keyed hash of the fallback code, with `includeCode`.
    pub code_hash: Option<[u8; 32]>,
    pub code_challenge: Option<String>,
    pub state: Option<String>,
    pub validation_url: String,
    /// The end user's address as the app passed it (canonical), for events.
    pub ip_address: Option<String>,
    /// What the per-IP limit counts: the IPv4 address, or the IPv6 /64
    /// (`ClientIp::limit_key`). Stored on the login; events never see it.
    pub ip_network: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The queued email: its id and its content sealed under the server
    /// secret (it holds the link, so it is never stored in clear).
    pub email_id: EmailId,
    pub email_payload_sealed: Vec<u8>,
    /// Stores the email already leased, so the starting instance can hand it
    /// straight to its own sender after the commit instead of having its
    /// worker claim it in a second transaction. If that instance dies first,
    /// the lease lapses and any worker claims the email as usual.
    pub email_lease: Option<EmailLease>,
    pub limits: SendLimits,
    pub idempotency: Option<IdempotencyClaim>,
    /// Set on the login that carries an invite (see `Invites`): a plain
    /// verify never consumes it, and its start is `invite.created`.
    pub invite_id: Option<InviteId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// The same `Idempotency-Key` and request were seen before: answer this.
    Replayed {
        status: u16,
        body: String,
    },
    /// The same key came with a different request.
    IdempotencyConflict,
    RateLimited {
        limit: LimitKind,
        retry_after_seconds: i64,
    },
}

/// Verify with a link token.
#[derive(Debug, Clone)]
pub struct VerifyByToken {
    pub project_id: ProjectId,
    pub token_hash: [u8; 32],
    /// S256 challenge computed from the presented `codeVerifier`, if any.
    /// Challenges are public values (the app sent one at start), so matching
    /// it in SQL reveals nothing secret.
    pub verifier_challenge: Option<String>,
    pub now: Timestamp,
    /// The id to give the user if this login creates them.
    pub new_user_id: UserId,
}

/// Verify with a login id and its fallback code.
#[derive(Debug, Clone)]
pub struct VerifyByCode {
    pub project_id: ProjectId,
    pub login_id: LoginId,
    /// Keyed hashes of the presented code under the current and (during a
    /// rotation) previous secret; compared in constant time to the stored one.
    pub code_hash_candidates: Vec<[u8; 32]>,
    pub verifier_challenge: Option<String>,
    pub now: Timestamp,
    pub new_user_id: UserId,
}

/// A user of a project, as a verify found or created them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub project_id: ProjectId,
    pub email: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLogin {
    pub login_id: LoginId,
    pub user: User,
    pub is_new_user: bool,
    pub state: Option<String>,
    pub method: AuthMethod,
    /// The invite the token belonged to, if it was an invite's.
    pub invite: Option<crate::invites::AcceptedInvite>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    Verified(VerifiedLogin),
    Failed(VerifyFailure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailView {
    pub status: EmailStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginView {
    pub id: LoginId,
    pub status: LoginStatus,
    pub email: EmailView,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub verified_at: Option<Timestamp>,
}

pub trait Logins: Clone + Send + Sync + 'static {
    /// Applies idempotency and send limits, then stores the login, its
    /// queued email and its `auth.started` event, all in one transaction.
    fn start_login(&self, login: NewLogin) -> impl Future<Output = StoreResult<StartOutcome>> + Send;

    /// Consumes a login by its token hash (see [`VerifyByToken`]).
    fn verify_by_token(&self, req: VerifyByToken) -> impl Future<Output = StoreResult<VerifyOutcome>> + Send;

    /// Consumes a login by its id and fallback code (see [`VerifyByCode`]).
    fn verify_by_code(&self, req: VerifyByCode) -> impl Future<Output = StoreResult<VerifyOutcome>> + Send;

    /// The state of one login and its email, scoped to its project.
    fn get_login(
        &self,
        project_id: &ProjectId,
        login_id: &LoginId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<LoginView>>> + Send;

    /// Dev mode only (`passgate dev --reset-limits`): forgets a dev
    /// project's logins, so its send limits and wrong-code budgets count from
    /// zero. Removes the project's logins and one-time codes, their
    /// idempotency records, its per-minute send counts and code budgets, and
    /// emails not yet sent (their links would lead nowhere); users, session
    /// keys, events and sent emails stay. Returns
    /// how many logins were forgotten; [`StoreError::NotFound`] for a project
    /// that is not a dev project, which is left untouched.
    ///
    /// [`StoreError::NotFound`]: crate::StoreError::NotFound
    fn forget_dev_logins(&self, project_id: &ProjectId) -> impl Future<Output = StoreResult<u64>> + Send;
}
