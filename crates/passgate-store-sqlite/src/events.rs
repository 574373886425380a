//! `Events` for SQLite, and the one statement that records an event, which
//! every area's writes call inside their own transaction.

use passgate_core::{EventId, EventKind, InviteId, LoginId, ProjectId, Timestamp, UserId};
use passgate_store::{Event, Events, NewEvent, StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::{OrStoreError, SqliteStore};

pub(crate) fn insert_event(conn: &Connection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = EventId::generate();
    conn.prepare_cached(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, invite_id, email, reason, ip_address, user_agent,
            created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        id.as_str(),
        e.project_id.as_str(),
        e.kind.as_str(),
        e.user_id.map(UserId::as_str),
        e.login_id.map(LoginId::as_str),
        e.invite_id.map(InviteId::as_str),
        e.email,
        e.reason,
        e.ip_address,
        e.user_agent,
        e.at.millis()
    ])
    .db()?;
    Ok(())
}

/// An event's kind as stored; anything else is corrupt data.
pub(crate) fn event_kind(stored: &str) -> StoreResult<EventKind> {
    EventKind::parse(stored).ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {stored:?}")))
}

impl Events for SqliteStore {
    async fn list_events(&self, project_id: &ProjectId, limit: u32) -> StoreResult<Vec<Event>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, project_id, kind, user_id, login_id, invite_id, email, reason, ip_address, user_agent,
                        created_at
                     FROM events WHERE project_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                )
                .db()?;
            let mut rows = statement.query(params![project_id.as_str(), i64::from(limit)]).db()?;
            let mut events = Vec::new();
            while let Some(r) = rows.next().db()? {
                let text = |i: usize| r.get::<_, Option<String>>(i).db();
                let kind: String = r.get(2).db()?;
                events.push(Event {
                    id: EventId::from_trusted(r.get::<_, String>(0).db()?),
                    project_id: ProjectId::from_trusted(r.get::<_, String>(1).db()?),
                    kind: event_kind(&kind)?,
                    user_id: text(3)?.map(UserId::from_trusted),
                    login_id: text(4)?.map(LoginId::from_trusted),
                    invite_id: text(5)?.map(InviteId::from_trusted),
                    email: text(6)?,
                    reason: text(7)?,
                    ip_address: text(8)?,
                    user_agent: text(9)?,
                    created_at: Timestamp(r.get(10).db()?),
                });
            }
            Ok(events)
        })
    }
}
