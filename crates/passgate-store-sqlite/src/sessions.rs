//! `Sessions` for SQLite: session keys are read by their public key and
//! revoked with `UPDATE … RETURNING`, each revocation recorded as an event.

use passgate_core::{EventKind, ProjectId, SessionId, Timestamp, UserId};
use passgate_store::{NewEvent, Session, Sessions, StoreResult, User};
use rusqlite::{Connection, OptionalExtension, params};

use crate::events::insert_event;
use crate::{OrStoreError, SqliteStore};

fn record_revoked(
    conn: &Connection,
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
    insert_event(conn, event)
}

impl Sessions for SqliteStore {
    async fn live_session(&self, public_key: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT s.id, s.project_id, s.created_at, s.expires_at, u.id, u.email, u.created_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.public_key = ? AND s.revoked_at IS NULL AND s.expires_at > ?",
            )
            .db()?
            .query_row(params![public_key, now.millis()], |r| {
                let project_id = ProjectId::from_trusted(r.get::<_, String>(1)?);
                Ok(Session {
                    id: SessionId::from_trusted(r.get::<_, String>(0)?),
                    created_at: Timestamp(r.get(2)?),
                    expires_at: Timestamp(r.get(3)?),
                    user: User {
                        id: UserId::from_trusted(r.get::<_, String>(4)?),
                        project_id: project_id.clone(),
                        email: r.get(5)?,
                        created_at: Timestamp(r.get(6)?),
                    },
                    project_id,
                })
            })
            .optional()
            .db()
        })
    }

    async fn revoke_session(&self, project_id: &ProjectId, id: &SessionId, now: Timestamp) -> StoreResult<bool> {
        let (project_id, id) = (project_id.clone(), id.clone());
        self.write(move |conn| {
            let user_id: Option<String> = conn
                .prepare_cached(
                    "UPDATE sessions SET revoked_at = ?1
                     WHERE project_id = ?2 AND id = ?3 AND revoked_at IS NULL AND expires_at > ?1
                     RETURNING user_id",
                )
                .db()?
                .query_row(params![now.millis(), project_id.as_str(), id.as_str()], |r| r.get(0))
                .optional()
                .db()?;
            let Some(user_id) = user_id else { return Ok(false) };
            record_revoked(conn, &project_id, &UserId::from_trusted(user_id), &id, now)?;
            Ok(true)
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        project_id: &ProjectId,
        user_id: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<u64>> {
        let (project_id, user_id) = (project_id.clone(), user_id.clone());
        self.write(move |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM users WHERE project_id = ? AND id = ?")
                .db()?
                .exists(params![project_id.as_str(), user_id.as_str()])
                .db()?;
            if !exists {
                return Ok(None);
            }
            let revoked: Vec<String> = {
                let mut statement = conn
                    .prepare_cached(
                        "UPDATE sessions SET revoked_at = ?1
                         WHERE project_id = ?2 AND user_id = ?3 AND revoked_at IS NULL AND expires_at > ?1
                         RETURNING id",
                    )
                    .db()?;
                let rows = statement
                    .query_map(params![now.millis(), project_id.as_str(), user_id.as_str()], |r| r.get(0))
                    .db()?;
                rows.collect::<Result<_, _>>().db()?
            };
            for id in &revoked {
                record_revoked(conn, &project_id, &user_id, &SessionId::from_trusted(id.clone()), now)?;
            }
            Ok(Some(revoked.len() as u64))
        })
        .await
    }
}
