//! `Events` for PostgreSQL, and the one statement that records an event,
//! which every area's writes call inside their own transaction.

use passgate_core::{EventId, InviteId, LoginId, OtpId, ProjectId, SessionId, Timestamp, UserId};
use passgate_store::{Event, EventKind, Events, NewEvent, StoreError, StoreResult};
use sqlx::PgConnection;

use crate::{PgStore, db_err};

pub(crate) async fn insert_event(tx: &mut PgConnection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = EventId::generate();
    let at = e.at.millis();
    sqlx::query!(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
            ip_address, user_agent, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        at
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// An event's row as both queries below read it.
struct EventRow {
    id: String,
    project_id: String,
    kind: String,
    user_id: Option<String>,
    login_id: Option<String>,
    invite_id: Option<String>,
    otp_id: Option<String>,
    session_id: Option<String>,
    email: Option<String>,
    reason: Option<String>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    created_at: i64,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    /// An event as read back; its kind must be one we write.
    fn try_from(r: EventRow) -> StoreResult<Event> {
        Ok(Event {
            id: EventId::from_trusted(r.id),
            project_id: ProjectId::from_trusted(r.project_id),
            kind: EventKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {:?}", r.kind)))?,
            user_id: r.user_id.map(UserId::from_trusted),
            login_id: r.login_id.map(LoginId::from_trusted),
            invite_id: r.invite_id.map(InviteId::from_trusted),
            otp_id: r.otp_id.map(OtpId::from_trusted),
            session_id: r.session_id.map(SessionId::from_trusted),
            email: r.email,
            reason: r.reason,
            ip_address: r.ip_address,
            user_agent: r.user_agent,
            created_at: Timestamp(r.created_at),
        })
    }
}

impl Events for PgStore {
    async fn list_events(&self, project_id: &ProjectId, limit: u32) -> StoreResult<Vec<Event>> {
        let limit = i64::from(limit);
        let rows = sqlx::query_as!(
            EventRow,
            r#"SELECT id AS "id!", project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
                ip_address, user_agent, created_at
             FROM events WHERE project_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"#,
            project_id.as_str(),
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn user_activity(&self, project_id: &ProjectId, user_id: &UserId, limit: u32) -> StoreResult<Vec<Event>> {
        let limit = i64::from(limit);
        // The kinds are passgate_store::shared::ACTIVITY_KINDS_SQL (a macro
        // query needs them written out).
        let rows = sqlx::query_as!(
            EventRow,
            r#"SELECT id AS "id!", project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
                ip_address, user_agent, created_at
             FROM events
             WHERE project_id = $1 AND user_id = $2
               AND kind IN ('auth.verified', 'otp.verified', 'invite.accepted', 'session.created', 'session.revoked')
             ORDER BY created_at DESC, id DESC LIMIT $3"#,
            project_id.as_str(),
            user_id.as_str(),
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }
}
