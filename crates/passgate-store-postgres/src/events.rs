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

/// An event as read back; its kind must be one we write.
#[allow(clippy::too_many_arguments)]
fn event_of(
    id: String,
    project_id: String,
    kind: String,
    user_id: Option<String>,
    ids: (Option<String>, Option<String>, Option<String>, Option<String>),
    email: Option<String>,
    reason: Option<String>,
    client: (Option<String>, Option<String>),
    created_at: i64,
) -> StoreResult<Event> {
    let (login_id, invite_id, otp_id, session_id) = ids;
    Ok(Event {
        id: EventId::from_trusted(id),
        project_id: ProjectId::from_trusted(project_id),
        kind: EventKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {kind:?}")))?,
        user_id: user_id.map(UserId::from_trusted),
        login_id: login_id.map(LoginId::from_trusted),
        invite_id: invite_id.map(InviteId::from_trusted),
        otp_id: otp_id.map(OtpId::from_trusted),
        session_id: session_id.map(SessionId::from_trusted),
        email,
        reason,
        ip_address: client.0,
        user_agent: client.1,
        created_at: Timestamp(created_at),
    })
}

impl Events for PgStore {
    async fn list_events(&self, project_id: &ProjectId, limit: u32) -> StoreResult<Vec<Event>> {
        let limit = i64::from(limit);
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
                ip_address, user_agent, created_at
             FROM events WHERE project_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"#,
            project_id.as_str(),
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                event_of(
                    r.id,
                    r.project_id,
                    r.kind,
                    r.user_id,
                    (r.login_id, r.invite_id, r.otp_id, r.session_id),
                    r.email,
                    r.reason,
                    (r.ip_address, r.user_agent),
                    r.created_at,
                )
            })
            .collect()
    }

    async fn user_activity(&self, project_id: &ProjectId, user_id: &UserId, limit: u32) -> StoreResult<Vec<Event>> {
        let limit = i64::from(limit);
        // The kinds are passgate_store::shared::ACTIVITY_KINDS_SQL (a macro
        // query needs them written out).
        let rows = sqlx::query!(
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
        rows.into_iter()
            .map(|r| {
                event_of(
                    r.id,
                    r.project_id,
                    r.kind,
                    r.user_id,
                    (r.login_id, r.invite_id, r.otp_id, r.session_id),
                    r.email,
                    r.reason,
                    (r.ip_address, r.user_agent),
                    r.created_at,
                )
            })
            .collect()
    }
}
