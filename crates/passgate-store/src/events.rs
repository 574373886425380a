//! Events: what happened, recorded in the same transaction as the change
//! it describes.

use std::future::Future;

pub use passgate_core::EventKind;
use passgate_core::{EventId, InviteId, LoginId, OtpId, ProjectId, SessionId, Timestamp, UserId};

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub project_id: ProjectId,
    pub kind: EventKind,
    pub user_id: Option<UserId>,
    pub login_id: Option<LoginId>,
    pub invite_id: Option<InviteId>,
    pub otp_id: Option<OtpId>,
    pub session_id: Option<SessionId>,
    pub email: Option<String>,
    pub reason: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
}

/// An event to record, borrowed from what the operation already holds.
#[derive(Debug)]
pub struct NewEvent<'a> {
    pub project_id: &'a ProjectId,
    pub kind: EventKind,
    pub user_id: Option<&'a UserId>,
    pub login_id: Option<&'a LoginId>,
    pub invite_id: Option<&'a InviteId>,
    pub otp_id: Option<&'a OtpId>,
    pub session_id: Option<&'a SessionId>,
    pub email: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub ip_address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub at: Timestamp,
}

impl<'a> NewEvent<'a> {
    pub fn new(project_id: &'a ProjectId, kind: EventKind, at: Timestamp) -> Self {
        Self {
            project_id,
            kind,
            user_id: None,
            login_id: None,
            invite_id: None,
            otp_id: None,
            session_id: None,
            email: None,
            reason: None,
            ip_address: None,
            user_agent: None,
            at,
        }
    }
}

pub trait Events: Clone + Send + Sync + 'static {
    /// Events of a project, newest first (used by tests now, by the events API later).
    fn list_events(&self, project_id: &ProjectId, limit: u32) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;

    /// A user's sign-in activity, newest first: their `auth.*`, `otp.*` and
    /// `session.*` events (what `session/activity` shows them).
    fn user_activity(
        &self,
        project_id: &ProjectId,
        user_id: &UserId,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
}
