//! `Users` for SQLite.

use passgate_core::{EventKind, ProjectId, Timestamp, UserId};
use passgate_store::{Erased, NewEvent, StoreResult, User, Users};
use rusqlite::{Connection, OptionalExtension, params};

use crate::events::insert_event;
use crate::{OrStoreError, SqliteStore};

fn user_where(conn: &Connection, condition: &str, project_id: &ProjectId, value: &str) -> StoreResult<Option<User>> {
    conn.prepare_cached(&format!("SELECT id, email, created_at FROM users WHERE project_id = ? AND {condition} = ?"))
        .db()?
        .query_row(params![project_id.as_str(), value], |r| {
            Ok(User {
                id: UserId::from_trusted(r.get::<_, String>(0)?),
                project_id: project_id.clone(),
                email: r.get(1)?,
                created_at: Timestamp(r.get(2)?),
            })
        })
        .optional()
        .db()
}

impl Users for SqliteStore {
    async fn get_user(&self, project_id: &ProjectId, id: &UserId) -> StoreResult<Option<User>> {
        self.read(|conn| user_where(conn, "id", project_id, id.as_str()))
    }

    async fn find_user(&self, project_id: &ProjectId, email: &str) -> StoreResult<Option<User>> {
        self.read(|conn| user_where(conn, "email", project_id, email))
    }

    async fn erase_user(&self, project_id: &ProjectId, id: &UserId, now: Timestamp) -> StoreResult<Option<Erased>> {
        let (project_id, id) = (project_id.clone(), id.clone());
        self.write(move |conn| {
            let Some(user) = user_where(conn, "id", &project_id, id.as_str())? else { return Ok(None) };
            let (p, email, user_id) = (project_id.as_str(), user.email.as_str(), id.as_str());
            let run = |sql: &str, values: &[&dyn rusqlite::ToSql]| -> StoreResult<u64> {
                Ok(conn.prepare_cached(sql).db()?.execute(values).db()? as u64)
            };
            // Emails to the address, sent or not (the recipient is stored in
            // clear), then its logins, invites and one-time codes: pending
            // links and codes then name nothing (`token_invalid`, `otp_invalid`).
            run("DELETE FROM outbox WHERE project_id = ? AND recipient = ?", &[&p, &email])?;
            run(
                "DELETE FROM invites WHERE project_id = ? AND (email = ? OR accepted_user_id = ?)",
                &[&p, &email, &user_id],
            )?;
            let logins = run("DELETE FROM logins WHERE project_id = ? AND email = ?", &[&p, &email])?;
            let one_time_codes = run("DELETE FROM otp_codes WHERE project_id = ? AND email = ?", &[&p, &email])?;
            let sessions = run("DELETE FROM sessions WHERE project_id = ? AND user_id = ?", &[&p, &user_id])?;
            run("DELETE FROM code_budgets WHERE project_id = ? AND email = ?", &[&p, &email])?;
            let memberships = run("DELETE FROM memberships WHERE project_id = ? AND user_id = ?", &[&p, &user_id])?;
            let events_anonymised = run(
                "UPDATE events SET email = NULL, ip_address = NULL, user_agent = NULL
                 WHERE project_id = ? AND (user_id = ? OR email = ?)
                   AND (email IS NOT NULL OR ip_address IS NOT NULL OR user_agent IS NOT NULL)",
                &[&p, &user_id, &email],
            )?;
            run("DELETE FROM users WHERE id = ? AND project_id = ?", &[&user_id, &p])?;
            insert_event(
                conn,
                NewEvent { user_id: Some(&id), ..NewEvent::new(&project_id, EventKind::UserDeleted, now) },
            )?;
            Ok(Some(Erased { logins, memberships, one_time_codes, sessions, events_anonymised }))
        })
        .await
    }
}
