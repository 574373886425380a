//! `Events` for SQLite, and the one statement that records an event, which
//! every area's writes call inside their own transaction.

use passgate_core::{EventId, EventKind, InviteId, LoginId, OtpId, ProjectId, SessionId, Timestamp, UserId, WebhookId};
use passgate_store::{Event, EventQuery, Events, NewEvent, StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::{OrStoreError, SqliteStore};

pub(crate) fn insert_event(conn: &Connection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = EventId::generate();
    conn.prepare_cached(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, invite_id, otp_id, session_id, webhook_id,
            email, reason, ip_address, user_agent, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        e.webhook_id.map(WebhookId::as_str),
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
pub(crate) const EVENT_COLUMNS: &str = "id, project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email,
    reason, ip_address, user_agent, created_at, webhook_id";

pub(crate) fn event_of(r: &rusqlite::Row<'_>) -> StoreResult<Event> {
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
        webhook_id: text(13)?.map(WebhookId::from_trusted),
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

/// A page of events. Each kind filtered on is its own range of
/// `events_by_kind`, limited, and the ranges are merged: a page reads at
/// most `limit` rows per kind, however many events the project has. A
/// user's events are a range of `events_by_user` with the kinds checked on
/// each (a user's events are few).
fn events_page(conn: &Connection, q: &EventQuery<'_>) -> StoreResult<Vec<Event>> {
    // No cursor: below every possible (time, id).
    let (before_at, before_id) = q.before.map_or((i64::MAX, ""), |c| (c.at.millis(), c.id.as_str()));
    let limit = i64::from(q.limit);
    let project = q.project_id.as_str();
    let user = q.user_id.map(UserId::as_str);
    let range = "(created_at, id) < (?, ?)";
    let kinds: Vec<&str> = q.kinds.iter().map(|k| k.as_str()).collect();
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::new();
    let sql = match (q.user_id, kinds.as_slice()) {
        (None, []) => {
            values.extend([&project as &dyn rusqlite::ToSql, &before_at, &before_id, &limit]);
            format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND {range}
                 ORDER BY created_at DESC, id DESC LIMIT ?"
            )
        }
        (Some(_), _) => {
            values.extend([&project as &dyn rusqlite::ToSql, &user, &before_at, &before_id]);
            let kind_filter = if kinds.is_empty() {
                String::new()
            } else {
                values.extend(kinds.iter().map(|k| k as &dyn rusqlite::ToSql));
                format!(" AND kind IN ({})", vec!["?"; kinds.len()].join(", "))
            };
            values.push(&limit);
            format!(
                "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_by_user
                 WHERE project_id = ? AND user_id = ? AND {range}{kind_filter}
                 ORDER BY created_at DESC, id DESC LIMIT ?"
            )
        }
        (None, kinds) => {
            let one_kind = format!(
                "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND kind = ? AND {range}
                 ORDER BY created_at DESC, id DESC LIMIT ?)"
            );
            for kind in kinds {
                values.extend([
                    &project as &dyn rusqlite::ToSql,
                    kind as &dyn rusqlite::ToSql,
                    &before_at,
                    &before_id,
                    &limit,
                ]);
            }
            values.push(&limit);
            format!(
                "SELECT * FROM ({}) ORDER BY created_at DESC, id DESC LIMIT ?",
                vec![one_kind; kinds.len()].join(" UNION ALL ")
            )
        }
    };
    let mut statement = conn.prepare_cached(&sql).db()?;
    let mut rows = statement.query(values.as_slice()).db()?;
    let mut events = Vec::new();
    while let Some(r) = rows.next().db()? {
        events.push(event_of(r)?);
    }
    Ok(events)
}

impl Events for SqliteStore {
    async fn events_page(&self, query: EventQuery<'_>) -> StoreResult<Vec<Event>> {
        self.read(|conn| events_page(conn, &query))
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
