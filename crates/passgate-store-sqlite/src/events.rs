//! `Events` for SQLite, and the one statement that records an event, which
//! every area's writes call inside their own transaction.

use passgate_core::{EventId, EventKind, InviteId, LoginId, OtpId, ProjectId, SessionId, Timestamp, UserId, WebhookId};
use passgate_store::{Event, EventQuery, Events, NewEvent, StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::{OrStoreError, SqliteStore};

/// Records an event and queues its webhook deliveries, one for each enabled
/// endpoint of its project subscribed to its kind, in the caller's
/// transaction. Every event of the SQLite store is recorded here, so none
/// can miss its deliveries (PostgreSQL, whose batch statements insert
/// events in many places, leaves that to a trigger; on SQLite a trigger
/// cost a statement journal on every insert: migration 0012).
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
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, project_id, status, attempts, next_attempt_at, created_at)
         SELECT w.id, ?1, w.project_id, 'pending', 0, ?3, ?3
         FROM webhook_endpoints w
         WHERE w.project_id = ?2 AND w.disabled_at IS NULL AND instr(w.kinds, ' ' || ?4 || ' ') > 0",
    )
    .db()?
    .execute(params![id.as_str(), e.project_id.as_str(), e.at.millis(), e.kind.as_str()])
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

/// The statement of a page of events, by its shape: with a user or not,
/// and how many kinds. Each kind filtered on is its own range of
/// `events_by_kind`, limited, and the ranges are merged: a page reads at
/// most `limit` rows per kind, however many events the project has. A
/// user's events are a range of `events_by_user` with the kinds checked on
/// each (a user's events are few). Parameters, in order: project, user (if
/// any), then per range the kind (if any), the cursor's time and id and the
/// limit; see [`events_page`].
fn page_sql(by_user: bool, kinds: usize) -> String {
    let range = "(created_at, id) < (?, ?)";
    match (by_user, kinds) {
        (false, 0) => format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND {range}
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ),
        (true, _) => {
            let kind_filter =
                if kinds == 0 { String::new() } else { format!(" AND kind IN ({})", vec!["?"; kinds].join(", ")) };
            format!(
                "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_by_user
                 WHERE project_id = ? AND user_id = ? AND {range}{kind_filter}
                 ORDER BY created_at DESC, id DESC LIMIT ?"
            )
        }
        (false, kinds) => {
            let one_kind = format!(
                "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND kind = ? AND {range}
                 ORDER BY created_at DESC, id DESC LIMIT ?)"
            );
            format!(
                "SELECT * FROM ({}) ORDER BY created_at DESC, id DESC LIMIT ?",
                vec![one_kind; kinds].join(" UNION ALL ")
            )
        }
    }
}

fn events_page(conn: &Connection, q: &EventQuery<'_>) -> StoreResult<Vec<Event>> {
    // No cursor: below every possible (time, id).
    let (before_at, before_id) = q.before.map_or((i64::MAX, ""), |c| (c.at.millis(), c.id.as_str()));
    let limit = i64::from(q.limit);
    let project = q.project_id.as_str();
    let user = q.user_id.map(UserId::as_str);
    let kinds: Vec<&str> = q.kinds.iter().map(|k| k.as_str()).collect();
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::new();
    if user.is_some() {
        values.extend([&project as &dyn rusqlite::ToSql, &user, &before_at, &before_id]);
        values.extend(kinds.iter().map(|k| k as &dyn rusqlite::ToSql));
    } else if kinds.is_empty() {
        values.extend([&project as &dyn rusqlite::ToSql, &before_at, &before_id]);
    } else {
        for kind in &kinds {
            values.extend([&project as &dyn rusqlite::ToSql, kind, &before_at, &before_id, &limit]);
        }
    }
    values.push(&limit);
    let sql = page_sql(user.is_some(), kinds.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape of page reads a range of an index in order, with no sort
    /// of the project's events (only the merge of the per-kind ranges, at
    /// most `limit` rows each, is sorted): a page costs the same with ten
    /// million events as with ten.
    #[tokio::test]
    async fn every_page_is_a_range_of_an_index() {
        let path = std::env::temp_dir().join(format!("passgate-plan-{}.db", passgate_core::IdKind::Request.generate()));
        let store =
            SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap_or_else(|e| panic!("{e}"));
        passgate_store::Database::migrate(&store).await.unwrap_or_else(|e| panic!("{e}"));
        let plan = |by_user: bool, kinds: usize| {
            store
                .read(|conn| {
                    let sql = format!("EXPLAIN QUERY PLAN {}", page_sql(by_user, kinds));
                    let mut statement = conn.prepare(&sql).db()?;
                    let parameters = statement.parameter_count();
                    let values: Vec<rusqlite::types::Value> =
                        (0..parameters).map(|_| rusqlite::types::Value::Text("x".into())).collect();
                    let rows = statement
                        .query_map(rusqlite::params_from_iter(values), |r| r.get::<_, String>(3))
                        .db()?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .db()?;
                    Ok(rows.join("\n"))
                })
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // The cursor bounds the index search itself: a deep page does not
        // step over the rows before it.
        const BOUNDED: &str = "(created_at,id)<(?,?))";
        let all = plan(false, 0);
        assert!(all.contains("USING INDEX events_by_project") && all.contains(BOUNDED), "{all}");
        assert!(!all.contains("TEMP B-TREE"), "{all}");
        for kinds in [0, 1, 3] {
            let by_user = plan(true, kinds);
            assert!(by_user.contains("USING INDEX events_by_user") && by_user.contains(BOUNDED), "{by_user}");
            assert!(!by_user.contains("TEMP B-TREE"), "{by_user}");
        }
        for kinds in [1, 2, 16] {
            let by_kind = plan(false, kinds);
            // The per-kind ranges' rows (at most `limit` each) are sorted
            // for the merge; the project's events never are.
            assert_eq!(by_kind.matches(BOUNDED).count(), kinds, "{by_kind}");
            assert_eq!(by_kind.matches("USING INDEX events_by_kind").count(), kinds, "{by_kind}");
            assert!(!by_kind.contains("SCAN events"), "{by_kind}");
        }
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
