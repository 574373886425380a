//! Events: pages of a project's activity, and the one wire form of an
//! event that both the events API and webhook deliveries use.

use passgate_api_types::EventRecord;
use passgate_core::UserId;
use passgate_store::{Event, EventCursor, EventKind, EventQuery, Project, Store};

use super::ServiceError;
use crate::app::AppState;

/// A page of events and where the next one starts.
#[derive(Debug)]
pub struct Page {
    pub events: Vec<Event>,
    pub next: Option<EventCursor>,
}

/// One page, newest first. `limit` is already within bounds.
pub async fn page<S: Store>(
    app: &AppState<S>,
    project: &Project,
    user_id: Option<&UserId>,
    kinds: &[EventKind],
    before: Option<&EventCursor>,
    limit: u32,
) -> Result<Page, ServiceError> {
    let query = EventQuery { project_id: &project.id, user_id, kinds, before, limit };
    let events = app.store.events_page(query).await?;
    // A full page may have more behind it; a short one is the last.
    let next = (events.len() == limit as usize).then(|| events.last().map(EventCursor::after)).flatten();
    Ok(Page { events, next })
}

/// An event as the API and webhooks show it: what the app passed and what
/// happened, never a secret (none is ever stored in an event).
pub fn record_of(event: &Event) -> EventRecord {
    let text = |s: &Option<String>| s.clone();
    EventRecord {
        id: event.id.to_string(),
        kind: event.kind.as_str().to_string(),
        timestamp: event.created_at.to_rfc3339(),
        user_id: event.user_id.as_ref().map(ToString::to_string),
        email: text(&event.email),
        login_id: event.login_id.as_ref().map(ToString::to_string),
        otp_id: event.otp_id.as_ref().map(ToString::to_string),
        invite_id: event.invite_id.as_ref().map(ToString::to_string),
        session_id: event.session_id.as_ref().map(ToString::to_string),
        webhook_id: event.webhook_id.as_ref().map(ToString::to_string),
        reason: text(&event.reason),
        ip_address: text(&event.ip_address),
        user_agent: text(&event.user_agent),
    }
}
