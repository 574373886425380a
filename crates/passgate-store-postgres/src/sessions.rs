//! `Sessions` for PostgreSQL: session keys are read by their public key and
//! revoked with `UPDATE … RETURNING`, each revocation recorded as an event.

use passgate_core::{EventKind, ProjectId, SessionId, Timestamp, UserId};
use passgate_store::{NewEvent, Session, Sessions, StoreResult, User};
use sqlx::PgConnection;

use crate::events::insert_event;
use crate::{PgStore, db_err};

async fn record_revoked(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    user_id: &UserId,
    id: &SessionId,
    now: Timestamp,
) -> StoreResult<()> {
    let event = NewEvent {
        user_id: Some(user_id),
        session_id: Some(id),
        ..NewEvent::new(project_id, EventKind::SessionRevoked, now)
    };
    insert_event(tx, event).await
}

impl Sessions for PgStore {
    async fn live_session(&self, public_key: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        let row = sqlx::query!(
            r#"SELECT s.id, s.project_id, s.created_at, s.expires_at,
                u.id AS user_id, u.email, u.created_at AS user_created_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.public_key = $1 AND s.revoked_at IS NULL AND s.expires_at > $2"#,
            public_key,
            now.millis()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| {
            let project_id = ProjectId::from_trusted(r.project_id);
            Session {
                id: SessionId::from_trusted(r.id),
                created_at: Timestamp(r.created_at),
                expires_at: Timestamp(r.expires_at),
                user: User {
                    id: UserId::from_trusted(r.user_id),
                    project_id: project_id.clone(),
                    email: r.email,
                    created_at: Timestamp(r.user_created_at),
                },
                project_id,
            }
        }))
    }

    async fn revoke_session(&self, project_id: &ProjectId, id: &SessionId, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let user_id = sqlx::query_scalar!(
            "UPDATE sessions SET revoked_at = $1
             WHERE project_id = $2 AND id = $3 AND revoked_at IS NULL AND expires_at > $1
             RETURNING user_id",
            now.millis(),
            project_id.as_str(),
            id.as_str()
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(user_id) = user_id else { return Ok(false) };
        record_revoked(&mut tx, project_id, &UserId::from_trusted(user_id), id, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn revoke_user_sessions(
        &self,
        project_id: &ProjectId,
        user_id: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<u64>> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query_scalar!(
            "SELECT 1 AS one FROM users WHERE project_id = $1 AND id = $2",
            project_id.as_str(),
            user_id.as_str()
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if exists.is_none() {
            return Ok(None);
        }
        let revoked = sqlx::query_scalar!(
            "UPDATE sessions SET revoked_at = $1
             WHERE project_id = $2 AND user_id = $3 AND revoked_at IS NULL AND expires_at > $1
             RETURNING id",
            now.millis(),
            project_id.as_str(),
            user_id.as_str()
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for id in &revoked {
            record_revoked(&mut tx, project_id, user_id, &SessionId::from_trusted(id.clone()), now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Some(revoked.len() as u64))
    }
}
