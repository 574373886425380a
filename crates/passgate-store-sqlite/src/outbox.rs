//! `Outbox` for SQLite: emails are leased with `UPDATE … RETURNING` (one
//! writer, so no two workers ever see the same row as due) and settled by
//! their lease holder only.

use passgate_core::{EmailId, LoginId, ProjectId, Timestamp};
use passgate_store::shared::{DeliveryUpdate, claimed_email};
use passgate_store::{ClaimedEmail, DeliveryResult, EmailLease, Lease, NewEvent, NewLogin, Outbox, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::events::insert_event;
use crate::{OrStoreError, SqliteStore};

/// Queues a login's email, in the login's own transaction (and leased to
/// the starting instance, when it will send it itself).
pub(crate) fn queue_login_email(conn: &Connection, login: &NewLogin) -> StoreResult<()> {
    let email = QueuedEmail {
        id: &login.email_id,
        project_id: &login.project_id,
        login_id: Some(&login.id),
        recipient: &login.email,
        payload_sealed: &login.email_payload_sealed,
        lease: login.email_lease.as_ref(),
        at: login.created_at,
    };
    queue_email(conn, &email)
}

/// An email to queue, with the change that sends it.
pub(crate) struct QueuedEmail<'a> {
    pub id: &'a EmailId,
    pub project_id: &'a ProjectId,
    /// The login it carries (link and invite emails; a code's email has none).
    pub login_id: Option<&'a LoginId>,
    pub recipient: &'a str,
    pub payload_sealed: &'a [u8],
    pub lease: Option<&'a EmailLease>,
    pub at: Timestamp,
}

pub(crate) fn queue_email(conn: &Connection, email: &QueuedEmail<'_>) -> StoreResult<()> {
    let now_ms = email.at.millis();
    conn.prepare_cached(
        "INSERT INTO outbox (id, project_id, login_id, recipient, payload_sealed, status, next_attempt_at,
            lease_owner, lease_until, created_at)
         VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        email.id.as_str(),
        email.project_id.as_str(),
        email.login_id.map(LoginId::as_str),
        email.recipient,
        email.payload_sealed,
        now_ms,
        email.lease.map(|l| &l.owner),
        email.lease.map(|l| l.until.millis()),
        now_ms
    ])
    .db()?;
    Ok(())
}

fn claim_emails(conn: &Connection, lease: &Lease, limit: u32) -> StoreResult<Vec<ClaimedEmail>> {
    type Row = (String, String, Option<String>, String, Option<Vec<u8>>, i64);
    let (now, until) = (lease.now.millis(), lease.until.millis());
    let mut statement = conn
        .prepare_cached(
            "UPDATE outbox SET lease_owner = ?, lease_until = ?
             WHERE id IN (
                SELECT id FROM outbox
                WHERE status IN ('queued', 'retrying') AND next_attempt_at <= ?
                  AND (lease_until IS NULL OR lease_until <= ?)
                ORDER BY next_attempt_at LIMIT ?)
             RETURNING id, project_id, login_id, recipient, payload_sealed, attempts",
        )
        .db()?;
    let rows = statement
        .query_map(params![lease.owner, until, now, now, i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .db()?;
    rows.map(|row| {
        let (id, project_id, login_id, recipient, payload_sealed, attempts): Row = row.db()?;
        claimed_email(id, project_id, login_id, recipient, payload_sealed, attempts, lease.until)
    })
    .collect()
}

fn record_delivery(
    conn: &Connection,
    email_id: &EmailId,
    lease_owner: &str,
    result: &DeliveryResult,
) -> StoreResult<bool> {
    let update = DeliveryUpdate::of(result);
    let row: Option<(String, Option<String>, String)> = conn
        .prepare_cached(
            "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,
                next_attempt_at = COALESCE(?, next_attempt_at), settled_at = ?,
                payload_sealed = CASE WHEN ? IS NULL THEN payload_sealed END,
                lease_owner = NULL, lease_until = NULL
             WHERE id = ? AND lease_owner = ? AND status IN ('queued', 'retrying')
             RETURNING project_id, login_id, recipient",
        )
        .db()?
        .query_row(
            params![
                update.status,
                update.last_error,
                update.next_attempt_at,
                update.settled_at,
                update.settled_at,
                email_id.as_str(),
                lease_owner
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .db()?;
    let Some((project_id, login_id, recipient)) = row else {
        return Ok(false);
    };
    if let Some((kind, reason)) = update.event {
        let (project_id, login_id) = (ProjectId::from_trusted(project_id), login_id.map(LoginId::from_trusted));
        let event = NewEvent {
            login_id: login_id.as_ref(),
            email: Some(&recipient),
            reason,
            ..NewEvent::new(&project_id, kind, update.at)
        };
        insert_event(conn, event)?;
    }
    Ok(true)
}

impl Outbox for SqliteStore {
    async fn claim_emails(&self, lease: Lease, limit: u32) -> StoreResult<Vec<ClaimedEmail>> {
        self.write(move |conn| claim_emails(conn, &lease, limit)).await
    }

    async fn record_delivery(
        &self,
        email_id: &EmailId,
        lease_owner: &str,
        result: DeliveryResult,
    ) -> StoreResult<bool> {
        let (email_id, lease_owner) = (email_id.clone(), lease_owner.to_string());
        self.write(move |conn| record_delivery(conn, &email_id, &lease_owner, &result)).await
    }

    async fn renew_lease(&self, email_id: &EmailId, lease_owner: &str, until: Timestamp) -> StoreResult<bool> {
        let (email_id, lease_owner) = (email_id.clone(), lease_owner.to_string());
        self.write(move |conn| {
            let renewed = conn
                .prepare_cached(
                    "UPDATE outbox SET lease_until = ?
                     WHERE id = ? AND lease_owner = ? AND status IN ('queued', 'retrying')",
                )
                .db()?
                .execute(params![until.millis(), email_id.as_str(), lease_owner])
                .db()?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn queued_payloads(&self, limit: u32) -> StoreResult<Vec<Vec<u8>>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT payload_sealed FROM outbox
                     WHERE status IN ('queued', 'retrying') AND payload_sealed IS NOT NULL
                     ORDER BY next_attempt_at LIMIT ?",
                )
                .db()?;
            let rows = statement.query_map([i64::from(limit)], |r| r.get(0)).db()?;
            rows.collect::<rusqlite::Result<_>>().db()
        })
    }

    async fn next_email_due(&self) -> StoreResult<Option<Timestamp>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0)))
                 FROM outbox WHERE status IN ('queued', 'retrying')",
            )
            .db()?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .db()
            .map(|due| due.map(Timestamp))
        })
    }
}
