//! Events: what happened, recorded in the same transaction as the change
//! it describes.

use std::future::Future;

pub use passgate_core::EventKind;
use passgate_core::{EventId, InviteId, LoginId, OtpId, ProjectId, SessionId, Timestamp, UserId, WebhookId};

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
    pub webhook_id: Option<WebhookId>,
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
    pub webhook_id: Option<&'a WebhookId>,
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
            webhook_id: None,
            email: None,
            reason: None,
            ip_address: None,
            user_agent: None,
            at,
        }
    }
}

/// Where a page of events continues: below the last event of the page
/// before, in the order (time, id) that never changes once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    pub at: Timestamp,
    pub id: EventId,
}

impl EventCursor {
    pub fn after(event: &Event) -> Self {
        Self { at: event.created_at, id: event.id.clone() }
    }
}

/// A page of a project's events, newest first.
#[derive(Debug, Clone)]
pub struct EventQuery<'a> {
    pub project_id: &'a ProjectId,
    /// Only this user's events.
    pub user_id: Option<&'a UserId>,
    /// Only these kinds; empty means every kind.
    pub kinds: &'a [EventKind],
    /// Only events older than this one (the previous page's last).
    pub before: Option<&'a EventCursor>,
    pub limit: u32,
}

pub trait Events: Clone + Send + Sync + 'static {
    /// One page of a project's events, newest first, ordered by (time, id):
    /// a range of an index whatever the filters, so a page costs the same
    /// however many events the table holds.
    fn events_page(&self, query: EventQuery<'_>) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;

    /// Events of a project, newest first.
    fn list_events(&self, project_id: &ProjectId, limit: u32) -> impl Future<Output = StoreResult<Vec<Event>>> + Send {
        self.events_page(EventQuery { project_id, user_id: None, kinds: &[], before: None, limit })
    }

    /// A user's sign-in activity, newest first: their `auth.*`, `otp.*` and
    /// `session.*` events (what `session/activity` shows them).
    fn user_activity(
        &self,
        project_id: &ProjectId,
        user_id: &UserId,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
}
