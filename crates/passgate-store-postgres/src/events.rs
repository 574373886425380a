//! `Events` for PostgreSQL, and the one statement that records an event,
//! which every area's writes call inside their own transaction.

use passgate_core::{EventId, InviteId, LoginId, ProjectId, Timestamp, UserId};
use passgate_store::{Event, EventKind, Events, NewEvent, StoreError, StoreResult};
use sqlx::PgConnection;

use crate::{PgStore, db_err};

pub(crate) async fn insert_event(tx: &mut PgConnection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = EventId::generate();
    let at = e.at.millis();
    sqlx::query!(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, invite_id, email, reason, ip_address, user_agent,
            created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        at
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

impl Events for PgStore {
    async fn list_events(&self, project_id: &ProjectId, limit: u32) -> StoreResult<Vec<Event>> {
        let limit = i64::from(limit);
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", project_id, kind, user_id, login_id, invite_id, email, reason, ip_address, user_agent,
                created_at
             FROM events WHERE project_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"#,
            project_id.as_str(),
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                Ok(Event {
                    id: EventId::from_trusted(r.id),
                    project_id: ProjectId::from_trusted(r.project_id),
                    kind: EventKind::parse(&r.kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {:?}", r.kind)))?,
                    user_id: r.user_id.map(UserId::from_trusted),
                    login_id: r.login_id.map(LoginId::from_trusted),
                    invite_id: r.invite_id.map(InviteId::from_trusted),
                    email: r.email,
                    reason: r.reason,
                    ip_address: r.ip_address,
                    user_agent: r.user_agent,
                    created_at: Timestamp(r.created_at),
                })
            })
            .collect()
    }
}
