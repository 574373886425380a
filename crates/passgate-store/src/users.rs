//! The users of a project: finding them, and erasing one.

use std::future::Future;

use passgate_core::{ProjectId, Timestamp, UserId};

use crate::StoreResult;
pub use crate::logins::User;

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// Logins to the address (links, codes and invites; pending or not).
    pub logins: u64,
    pub memberships: u64,
    /// One-time codes to the address (pending or not).
    pub one_time_codes: u64,
    /// The user's session keys (live or not).
    pub sessions: u64,
    /// Events of the user or the address whose email, IP address and user
    /// agent were removed.
    pub events_anonymised: u64,
}

pub trait Users: Clone + Send + Sync + 'static {
    fn get_user(&self, project_id: &ProjectId, id: &UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;

    /// The user with this (canonical) address.
    fn find_user(&self, project_id: &ProjectId, email: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;

    /// Erases a user in one transaction: the user, every login, invite and
    /// one-time code to their address (pending tokens and codes then answer
    /// `token_invalid` and `otp_invalid`), its emails not yet sent, their
    /// session keys, memberships and code budget; their events keep no email, IP address or user agent. Records
    /// `user.deleted` (with the user id only). `None` if the project has no
    /// such user.
    fn erase_user(
        &self,
        project_id: &ProjectId,
        id: &UserId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<Erased>>> + Send;
}
