//! `Events` for PostgreSQL, and the one statement that records an event,
//! which every area's writes call inside their own transaction.

use passgate_core::{EventId, InviteId, LoginId, OtpId, ProjectId, SessionId, Timestamp, UserId, WebhookId};
use passgate_store::{Event, EventKind, EventQuery, Events, NewEvent, StoreError, StoreResult};
use sqlx::PgConnection;

use crate::{PgStore, db_err};

pub(crate) async fn insert_event(tx: &mut PgConnection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = EventId::generate();
    let at = e.at.millis();
    sqlx::query!(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
            ip_address, user_agent, created_at, webhook_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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
        at,
        e.webhook_id.map(WebhookId::as_str)
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// An event's row as both queries below read it.
pub(crate) struct EventRow {
    pub(crate) id: String,
    pub(crate) project_id: String,
    pub(crate) kind: String,
    pub(crate) user_id: Option<String>,
    pub(crate) login_id: Option<String>,
    pub(crate) invite_id: Option<String>,
    pub(crate) otp_id: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) ip_address: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) webhook_id: Option<String>,
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
            webhook_id: r.webhook_id.map(WebhookId::from_trusted),
        })
    }
}

impl Events for PgStore {
    /// Each kind filtered on is its own range of `events_by_kind`, limited,
    /// and the ranges are merged (one lateral subquery per kind): a page
    /// reads at most `limit` rows per kind however many events the project
    /// has. A user's events are a range of `events_by_user`, kinds checked
    /// on each (a user's events are few).
    async fn events_page(&self, q: EventQuery<'_>) -> StoreResult<Vec<Event>> {
        // No cursor: below every possible (time, id).
        let (before_at, before_id) = q.before.map_or((i64::MAX, ""), |c| (c.at.millis(), c.id.as_str()));
        let limit = i64::from(q.limit);
        let kinds: Vec<String> = q.kinds.iter().map(|k| k.as_str().to_string()).collect();
        let rows =
            match (q.user_id, kinds.is_empty()) {
                (None, true) => sqlx::query_as!(
                    EventRow,
                    r#"SELECT id AS "id!", project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email,
                        reason, ip_address, user_agent, created_at, webhook_id
                     FROM events WHERE project_id = $1 AND (created_at, id) < ($2, $3)
                     ORDER BY created_at DESC, id DESC LIMIT $4"#,
                    q.project_id.as_str(),
                    before_at,
                    before_id,
                    limit
                )
                .fetch_all(&self.pool)
                .await,
                (Some(user_id), _) => sqlx::query_as!(
                    EventRow,
                    r#"SELECT id AS "id!", project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email,
                        reason, ip_address, user_agent, created_at, webhook_id
                     FROM events
                     WHERE project_id = $1 AND user_id = $2 AND (created_at, id) < ($3, $4)
                       AND (cardinality($5::text[]) = 0 OR kind = ANY ($5))
                     ORDER BY created_at DESC, id DESC LIMIT $6"#,
                    q.project_id.as_str(),
                    user_id.as_str(),
                    before_at,
                    before_id,
                    &kinds,
                    limit
                )
                .fetch_all(&self.pool)
                .await,
                (None, false) => sqlx::query_as!(
                    EventRow,
                    r#"SELECT e.id AS "id!", e.project_id AS "project_id!", e.kind AS "kind!", e.user_id, e.login_id,
                        e.invite_id, e.otp_id, e.session_id, e.email, e.reason, e.ip_address, e.user_agent,
                        e.created_at AS "created_at!", e.webhook_id
                     FROM unnest($2::text[]) AS k (kind)
                     CROSS JOIN LATERAL (
                        SELECT * FROM events
                        WHERE project_id = $1 AND kind = k.kind AND (created_at, id) < ($3, $4)
                        ORDER BY created_at DESC, id DESC LIMIT $5) e
                     ORDER BY e.created_at DESC, e.id DESC LIMIT $5"#,
                    q.project_id.as_str(),
                    &kinds,
                    before_at,
                    before_id,
                    limit
                )
                .fetch_all(&self.pool)
                .await,
            }
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
                ip_address, user_agent, created_at, webhook_id
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
