//! Email one-time codes: sending one (limits, idempotency, its queued
//! email) and verifying one, which may register a session key for the user
//! in the same transaction (see `Sessions`).

use std::future::Future;

pub use passgate_core::otp::OtpFailure;
use passgate_core::{EmailId, OtpId, ProjectId, SessionId, Timestamp, UserId};

use crate::StoreResult;
use crate::logins::{IdempotencyClaim, StartOutcome, User};
use crate::outbox::EmailLease;

/// The limits one send obeys, from the project's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpLimits {
    /// Sends per address per window.
    pub sends_per_email: i64,
    pub window_seconds: i64,
    /// Codes of the address that may be live at once.
    pub live_codes: i64,
    /// The project's emails per minute (shared with links and invites).
    pub per_project_per_minute: i64,
}

#[derive(Debug, Clone)]
pub struct NewOtp {
    pub id: OtpId,
    pub project_id: ProjectId,
    pub email: String,
    /// HMAC-SHA256 of the code under the server secret.
    pub code_hash: [u8; 32],
    /// The target key given at send (uncompressed hex), kept for verify.
    pub target_public_key: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The queued email (it holds the code, so it is sealed).
    pub email_id: EmailId,
    pub email_payload_sealed: Vec<u8>,
    pub email_lease: Option<EmailLease>,
    pub limits: OtpLimits,
    pub idempotency: Option<IdempotencyClaim>,
}

/// A session key to register if the verify succeeds and a target key is in
/// play (given at send or at verify); the caller minted it and holds its
/// private half until it is sealed.
#[derive(Debug, Clone)]
pub struct SessionOffer {
    pub id: SessionId,
    /// Hex of the 33-byte compressed public key, as stamps name it.
    pub public_key: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct VerifyOtp {
    pub project_id: ProjectId,
    pub otp_id: OtpId,
    /// Keyed hashes of the typed code under the current and (during a
    /// rotation) previous secret.
    pub code_hash_candidates: Vec<[u8; 32]>,
    /// The target key given at verify (uncompressed hex).
    pub target_public_key: Option<String>,
    /// The session key to register if a target key is in play. `None` when
    /// the caller has minted none (no target key at verify): then a code
    /// sent with a target key answers [`OtpVerifyOutcome::NeedsSessionKey`]
    /// with that key, and the caller asks again with a session key sealed
    /// to it.
    pub session: Option<SessionOffer>,
    pub now: Timestamp,
    pub new_user_id: UserId,
}

/// A session key registered by a verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSession {
    pub id: SessionId,
    pub expires_at: Timestamp,
    /// The key its credential is sealed to (uncompressed hex).
    pub target_public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOtp {
    pub otp_id: OtpId,
    pub user: User,
    pub is_new_user: bool,
    pub session: Option<CreatedSession>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpVerifyOutcome {
    Verified(VerifiedOtp),
    Failed(OtpFailure),
    /// A target key is in play (this one: the key given at send) and no
    /// session key was offered: nothing was read further, counted or
    /// written; ask again with a session key sealed to it.
    NeedsSessionKey {
        target_public_key: String,
    },
}

pub trait Otp: Clone + Send + Sync + 'static {
    /// Applies idempotency, the address's code block (S12: a blocked
    /// address gets no new code; `RateLimited` with the time left) and the
    /// limits (sends per address per window, live codes per address, the
    /// project's emails per minute), then stores the code, its queued email
    /// and its `otp.sent` event in one transaction. A refusal records
    /// `rate_limited`.
    fn send_otp(&self, otp: NewOtp) -> impl Future<Output = StoreResult<StartOutcome>> + Send;

    /// Verifies a code once (see `passgate_core::otp::decide_otp`): a
    /// wrong one counts on the code (3 lock it) and on its address's budget
    /// (shared with link codes); a right one consumes the code, finds or
    /// creates the user, clears the budget and, when a target key is in
    /// play, registers the offered session key (dropping the user's oldest
    /// live ones beyond `MAX_LIVE_SESSIONS`) — all in one transaction, with
    /// `otp.verified`, `session.created` or `otp.failed` events.
    fn verify_otp(&self, req: VerifyOtp) -> impl Future<Output = StoreResult<OtpVerifyOutcome>> + Send;
}
