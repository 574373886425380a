//! `Outbox` for PostgreSQL: due emails are claimed with `FOR UPDATE SKIP
//! LOCKED`, so each goes to one worker; outcomes go to the deliveries lane
//! (see `batch/deliveries.rs`), which records a batch of them in one
//! statement.

use std::sync::Arc;

use passgate_core::{EmailId, Timestamp};
use passgate_store::shared::claimed_email;
use passgate_store::{ClaimedEmail, DeliveryResult, Lease, Outbox, StoreResult};

use crate::batch::deliveries::{Deliveries, PendingDelivery, record_one};
use crate::writer::{Answer, Register};
use crate::{PgStore, db_err};

impl Outbox for PgStore {
    async fn claim_emails(&self, lease: Lease, limit: u32) -> StoreResult<Vec<ClaimedEmail>> {
        let mut tx = self.begin().await?;
        let (now, until) = (lease.now.millis(), lease.until.millis());
        let limit = i64::from(limit);
        let rows = sqlx::query!(
            r#"UPDATE outbox SET lease_owner = $1, lease_until = $2
             WHERE id IN (
                SELECT id FROM outbox
                WHERE status IN ('queued', 'retrying') AND next_attempt_at <= $3
                  AND (lease_until IS NULL OR lease_until <= $4)
                ORDER BY next_attempt_at LIMIT $5
                FOR UPDATE SKIP LOCKED)
             RETURNING id AS "id!", project_id AS "project_id!", login_id, recipient AS "recipient!",
                payload_sealed, attempts AS "attempts!""#,
            lease.owner,
            until,
            now,
            now,
            limit
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                claimed_email(r.id, r.project_id, r.login_id, r.recipient, r.payload_sealed, r.attempts, lease.until)
            })
            .collect()
    }

    async fn record_delivery(
        &self,
        email_id: &EmailId,
        lease_owner: &str,
        result: DeliveryResult,
    ) -> StoreResult<bool> {
        let email_id_of_answer = email_id.to_string();
        let delivery =
            Arc::new(PendingDelivery { email_id: email_id.clone(), lease_owner: lease_owner.to_string(), result });
        let registered = Arc::clone(&delivery);
        let register: Register<Deliveries> = Box::new(move |batch| batch.deliveries.register(Arc::clone(&registered)));
        let answer: Answer<Deliveries, bool> = Box::new(move |batch| batch.deliveries.answer(&email_id_of_answer));
        self.lanes
            .deliveries
            .write(Some(register), Some(answer), move |tx, _| {
                let delivery = Arc::clone(&delivery);
                // Not written by the lane's statement ahead of the
                // transaction: the batch holds this email twice, or the
                // statement failed.
                Box::pin(async move { record_one(&mut *tx, &delivery).await })
            })
            .await
    }

    async fn renew_lease(&self, email_id: &EmailId, lease_owner: &str, until: Timestamp) -> StoreResult<bool> {
        let renewed = sqlx::query!(
            "UPDATE outbox SET lease_until = $1
             WHERE id = $2 AND lease_owner = $3 AND status NOT IN ('sent', 'failed')",
            until.millis(),
            email_id.as_str(),
            lease_owner
        )
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(renewed == 1)
    }

    async fn queued_payloads(&self, limit: u32) -> StoreResult<Vec<Vec<u8>>> {
        let rows = sqlx::query_scalar!(
            r#"SELECT payload_sealed AS "payload_sealed!" FROM outbox
             WHERE status IN ('queued', 'retrying') AND payload_sealed IS NOT NULL
             ORDER BY next_attempt_at LIMIT $1"#,
            i64::from(limit)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows)
    }

    async fn next_email_due(&self) -> StoreResult<Option<Timestamp>> {
        let due = sqlx::query_scalar!(
            r#"SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) AS "due?: i64"
             FROM outbox WHERE status IN ('queued', 'retrying')"#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(due.map(Timestamp))
    }
}
