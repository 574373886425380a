//! Session keys: the public halves of the P-256 keys minted by OTP
//! verifies, which sign (stamp) a client's own requests. A key is live
//! until it expires or is revoked; the store never holds a private key.

use std::future::Future;

use passgate_core::{ProjectId, SessionId, Timestamp, UserId};

use crate::StoreResult;
use crate::logins::User;

/// A live session key and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub project_id: ProjectId,
    pub user: User,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

pub trait Sessions: Clone + Send + Sync + 'static {
    /// The live (unexpired, unrevoked) session key with this public key
    /// (compressed hex), with its user.
    fn live_session(
        &self,
        public_key: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<Session>>> + Send;

    /// Revokes one session key and records `session.revoked`; `false` if it
    /// was not live.
    fn revoke_session(
        &self,
        project_id: &ProjectId,
        id: &SessionId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Revokes every live session key of a user, recording
    /// `session.revoked` for each; how many. `None` if the project has no
    /// such user.
    fn revoke_user_sessions(
        &self,
        project_id: &ProjectId,
        user_id: &UserId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<u64>>> + Send;
}
