//! `Users` for PostgreSQL: plain transactions.

use passgate_core::{EventKind, ProjectId, Timestamp, UserId};
use passgate_store::{Erased, NewEvent, StoreResult, User, Users};

use crate::events::insert_event;
use crate::{PgStore, db_err};

impl Users for PgStore {
    async fn get_user(&self, project_id: &ProjectId, id: &UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query!(
            "SELECT id, email, created_at FROM users WHERE project_id = $1 AND id = $2",
            project_id.as_str(),
            id.as_str()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| User {
            id: UserId::from_trusted(r.id),
            project_id: project_id.clone(),
            email: r.email,
            created_at: Timestamp(r.created_at),
        }))
    }

    async fn find_user(&self, project_id: &ProjectId, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query!(
            "SELECT id, email, created_at FROM users WHERE project_id = $1 AND email = $2",
            project_id.as_str(),
            email
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| User {
            id: UserId::from_trusted(r.id),
            project_id: project_id.clone(),
            email: r.email,
            created_at: Timestamp(r.created_at),
        }))
    }

    async fn erase_user(&self, project_id: &ProjectId, id: &UserId, now: Timestamp) -> StoreResult<Option<Erased>> {
        let mut tx = self.begin().await?;
        // Locked, so a verify that would find the user waits and then
        // creates a new one.
        let email = sqlx::query_scalar!(
            "SELECT email FROM users WHERE project_id = $1 AND id = $2 FOR UPDATE",
            project_id.as_str(),
            id.as_str()
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(email) = email else { return Ok(None) };
        let p = project_id.as_str();
        // Emails to the address, sent or not (the recipient is stored in
        // clear), then its logins, invites and one-time codes: pending links
        // and codes then name nothing (`token_invalid`, `otp_invalid`).
        sqlx::query!("DELETE FROM outbox WHERE project_id = $1 AND recipient = $2", p, email)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query!(
            "DELETE FROM invites WHERE project_id = $1 AND (email = $2 OR accepted_user_id = $3)",
            p,
            email,
            id.as_str()
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let logins = sqlx::query!("DELETE FROM logins WHERE project_id = $1 AND email = $2", p, email)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let one_time_codes = sqlx::query!("DELETE FROM otp_codes WHERE project_id = $1 AND email = $2", p, email)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let sessions = sqlx::query!("DELETE FROM sessions WHERE project_id = $1 AND user_id = $2", p, id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        sqlx::query!("DELETE FROM code_budgets WHERE project_id = $1 AND email = $2", p, email)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let memberships =
            sqlx::query!("DELETE FROM memberships WHERE project_id = $1 AND user_id = $2", p, id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        let events_anonymised = sqlx::query!(
            "UPDATE events SET email = NULL, ip_address = NULL, user_agent = NULL
             WHERE project_id = $1 AND (user_id = $2 OR email = $3)
               AND (email IS NOT NULL OR ip_address IS NOT NULL OR user_agent IS NOT NULL)",
            p,
            id.as_str(),
            email
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        sqlx::query!("DELETE FROM users WHERE project_id = $1 AND id = $2", p, id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        insert_event(&mut tx, NewEvent { user_id: Some(id), ..NewEvent::new(project_id, EventKind::UserDeleted, now) })
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(Erased { logins, memberships, one_time_codes, sessions, events_anonymised }))
    }
}
