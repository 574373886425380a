//! `Events` for SQLite, and the one statement that records an event, which
//! every area's writes call inside their own transaction.

use passgate_core::{EventId, EventKind, InviteId, LoginId, OtpId, ProjectId, SessionId, Timestamp, UserId};
use passgate_store::{Event, Events, NewEvent, StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::{OrStoreError, SqliteStore};

pub(crate) fn insert_event(conn: &Connection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = EventId::generate();
    conn.prepare_cached(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
            ip_address, user_agent, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        id.as_str(),
        e.project_id.as_str(),
        e.kind.as_str(),
        e.user_id.map(UserId::as_str),
        e.login_id.map(LoginId::as_str),
        e.invite_id.map(InviteId::as_str),
        e.otp_id.map(OtpId::as_str),
        e.session_id.map(SessionId::as_str),
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

/// The columns an [`Event`] is read from, in [`event_of`]'s order.
const EVENT_COLUMNS: &str = "id, project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
    ip_address, user_agent, created_at";

fn event_of(r: &rusqlite::Row<'_>) -> StoreResult<Event> {
    let text = |i: usize| r.get::<_, Option<String>>(i).db();
    let kind: String = r.get(2).db()?;
    Ok(Event {
        id: EventId::from_trusted(r.get::<_, String>(0).db()?),
        project_id: ProjectId::from_trusted(r.get::<_, String>(1).db()?),
        kind: event_kind(&kind)?,
        user_id: text(3)?.map(UserId::from_trusted),
        login_id: text(4)?.map(LoginId::from_trusted),
        invite_id: text(5)?.map(InviteId::from_trusted),
        otp_id: text(6)?.map(OtpId::from_trusted),
        session_id: text(7)?.map(SessionId::from_trusted),
        email: text(8)?,
        reason: text(9)?,
        ip_address: text(10)?,
        user_agent: text(11)?,
        created_at: Timestamp(r.get(12).db()?),
    })
}

fn events_where(conn: &Connection, condition: &str, values: &[&dyn rusqlite::ToSql]) -> StoreResult<Vec<Event>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT ?");
    let mut statement = conn.prepare_cached(&sql).db()?;
    let mut rows = statement.query(values).db()?;
    let mut events = Vec::new();
    while let Some(r) = rows.next().db()? {
        events.push(event_of(r)?);
    }
    Ok(events)
}

impl Events for SqliteStore {
    async fn list_events(&self, project_id: &ProjectId, limit: u32) -> StoreResult<Vec<Event>> {
        self.read(|conn| events_where(conn, "project_id = ?", &[&project_id.as_str(), &i64::from(limit)]))
    }

    async fn user_activity(&self, project_id: &ProjectId, user_id: &UserId, limit: u32) -> StoreResult<Vec<Event>> {
        self.read(|conn| {
            events_where(
                conn,
                &format!("project_id = ? AND user_id = ? AND kind IN ({})", passgate_store::shared::ACTIVITY_KINDS_SQL),
                &[&project_id.as_str(), &user_id.as_str(), &i64::from(limit)],
            )
        })
    }
}
