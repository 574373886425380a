//! `Events` for SQLite, and the one statement that records an event, which
//! every area's writes call inside their own transaction.

use passgate_core::{EventId, EventKind, LoginId, ProjectId, Timestamp, UserId};
use passgate_store::{Event, Events, NewEvent, StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::{OrStoreError, SqliteStore};

pub(crate) fn insert_event(conn: &Connection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = EventId::generate();
    conn.prepare_cached(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, ip_address, user_agent, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        id.as_str(),
        e.project_id.as_str(),
        e.kind.as_str(),
        e.user_id.map(UserId::as_str),
        e.login_id.map(LoginId::as_str),
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
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
        );
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, project_id, kind, user_id, login_id, email, reason, ip_address, user_agent, created_at
                     FROM events WHERE project_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                )
                .db()?;
            let rows = statement
                .query_map(params![project_id.as_str(), i64::from(limit)], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                    ))
                })
                .db()?;
            rows.map(|row| {
                let (id, project_id, kind, user_id, login_id, email, reason, ip_address, user_agent, created_at): Row =
                    row.db()?;
                Ok(Event {
                    id: EventId::from_trusted(id),
                    project_id: ProjectId::from_trusted(project_id),
                    kind: event_kind(&kind)?,
                    user_id: user_id.map(UserId::from_trusted),
                    login_id: login_id.map(LoginId::from_trusted),
                    email,
                    reason,
                    ip_address,
                    user_agent,
                    created_at: Timestamp(created_at),
                })
            })
            .collect()
        })
    }
}
