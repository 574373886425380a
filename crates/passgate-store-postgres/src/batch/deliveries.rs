//! The deliveries lane: one lane; one statement ahead of the transaction
//! (`writer::Mode::Ahead`) records the batch's delivery outcomes, unless
//! one email comes twice (then each is written on its own, in order, by
//! [`record_one`]).

use std::sync::Arc;

use passgate_core::{EmailId, EventId};
use passgate_store::shared::DeliveryUpdate;
use passgate_store::{DeliveryResult, StoreResult};
use sqlx::PgConnection;

use super::{Together, WrittenAhead};
use crate::db_err;
use crate::writer::{BoxFuture, LaneKind, Mode};

/// The deliveries lane's kind.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    pub(crate) together: Together,
}

/// What a batch of outcomes shares: its outcomes, answered by email id
/// with whether each was recorded.
#[derive(Default)]
pub(crate) struct DeliveriesBatch {
    pub(crate) deliveries: WrittenAhead<PendingDelivery, bool>,
}

impl LaneKind for Deliveries {
    type Batch = DeliveriesBatch;

    const MODE: Mode = Mode::Ahead;

    /// The batch's outcomes, unless one email comes twice, in one
    /// statement; each is answered whether it was recorded.
    fn ahead<'c>(
        &'c self,
        conn: &'c mut PgConnection,
        batch: &'c mut DeliveriesBatch,
    ) -> BoxFuture<'c, StoreResult<()>> {
        Box::pin(async move {
            let together = deliveries_together(batch.deliveries.registered());
            if !together.is_empty() {
                let recorded = record_together(conn, &together).await?;
                self.together.wrote(together.len());
                let answers = together
                    .iter()
                    .map(|d| (d.email_id.to_string(), recorded.iter().any(|r| d.email_id == r.as_str())));
                batch.deliveries.answered(answers);
            }
            Ok(())
        })
    }
}

/// [`record_one`]'s statement: the outcome and its event, if any. A
/// constant, so [`PgStore::lane_plans`] can explain it; its status test names
/// the settled states for the reason given at [`record_together`].
pub(crate) const RECORD_ONE: &str = "WITH settled AS (
        UPDATE outbox SET status = $1, attempts = attempts + 1, last_error = $2,
            next_attempt_at = COALESCE($3, next_attempt_at), settled_at = $4,
            payload_sealed = CASE WHEN $4::BIGINT IS NULL THEN payload_sealed END,
            lease_owner = NULL, lease_until = NULL
        WHERE id = $5 AND lease_owner = $6 AND status NOT IN ('sent', 'failed')
        RETURNING project_id, login_id, recipient),
      recorded AS (
        INSERT INTO events (id, project_id, kind, login_id, email, reason, created_at)
        SELECT $7, project_id, $8, login_id, recipient, $9, $10 FROM settled
        WHERE $8::TEXT IS NOT NULL)
     SELECT COUNT(*) FROM settled";

/// One delivery outcome and its event, if any: one statement.
pub(crate) async fn record_one(tx: &mut PgConnection, delivery: &PendingDelivery) -> StoreResult<bool> {
    let PendingDelivery { email_id, lease_owner, result } = delivery;
    let update = DeliveryUpdate::of(result);
    let (kind, reason) = (update.event_kind(), update.event_reason());
    let event_id = EventId::generate().into_string();
    let recorded: i64 = sqlx::query_scalar(RECORD_ONE)
        .bind(update.status)
        .bind(update.last_error)
        .bind(update.next_attempt_at)
        .bind(update.settled_at)
        .bind(email_id.as_str())
        .bind(lease_owner)
        .bind(&event_id)
        .bind(kind)
        .bind(reason)
        .bind(update.at.millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(recorded == 1)
}

/// A delivery outcome waiting in a write batch.
pub(crate) struct PendingDelivery {
    pub(crate) email_id: EmailId,
    pub(crate) lease_owner: String,
    pub(crate) result: DeliveryResult,
}

/// The batch's outcomes, unless one email comes twice (then none: each is
/// written on its own, in order).
fn deliveries_together(registered: &[Arc<PendingDelivery>]) -> Vec<Arc<PendingDelivery>> {
    let mut ids: Vec<&str> = registered.iter().map(|d| d.email_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() == registered.len() { registered.to_vec() } else { Vec::new() }
}

/// [`record_together`]'s statement (a constant, so [`PgStore::lane_plans`] can explain it).
pub(crate) const RECORD_TOGETHER: &str = "WITH input AS (
        SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[],
            $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BIGINT[])
          AS t(email_id, lease_owner, status, last_error, next_attempt_at, settled_at, event_id, kind, reason, at)),
      settled AS (
        UPDATE outbox SET status = input.status, attempts = outbox.attempts + 1, last_error = input.last_error,
            next_attempt_at = COALESCE(input.next_attempt_at, outbox.next_attempt_at),
            settled_at = input.settled_at,
            payload_sealed = CASE WHEN input.settled_at IS NULL THEN outbox.payload_sealed END,
            lease_owner = NULL, lease_until = NULL
        FROM input
        WHERE outbox.id = input.email_id AND outbox.lease_owner = input.lease_owner
          AND outbox.status NOT IN ('sent', 'failed')
        RETURNING outbox.id, outbox.project_id, outbox.login_id, outbox.recipient,
            input.event_id, input.kind, input.reason, input.at),
      recorded AS (
        INSERT INTO events (id, project_id, kind, login_id, email, reason, created_at)
        SELECT event_id, project_id, kind, login_id, recipient, reason, at FROM settled WHERE kind IS NOT NULL)
     SELECT id FROM settled";

/// Many delivery outcomes, each of a different email, in one statement:
/// the same conditional update as [`record_one`], row by row. Returns the
/// ids of the emails whose outcome was recorded (the lease still theirs).
///
/// Runs on a cached generic plan (the lane's `LANE_SETTINGS`: no sequential
/// scan, hash or merge join), so the one plan is a primary-key probe per
/// input row. The status test names the settled states, not the pending
/// ones: `status IN ('queued', 'retrying')` is the `outbox_due` index's
/// predicate, and a plan made while the table was young could scan that
/// whole index for every row instead (bench/NOTES.md, items 8 and 13).
async fn record_together(tx: &mut PgConnection, deliveries: &[Arc<PendingDelivery>]) -> StoreResult<Vec<String>> {
    let updates: Vec<DeliveryUpdate<'_>> = deliveries.iter().map(|d| DeliveryUpdate::of(&d.result)).collect();
    let email_ids: Vec<&str> = deliveries.iter().map(|d| d.email_id.as_str()).collect();
    let owners: Vec<&str> = deliveries.iter().map(|d| d.lease_owner.as_str()).collect();
    let statuses: Vec<&str> = updates.iter().map(|u| u.status).collect();
    let errors: Vec<Option<&str>> = updates.iter().map(|u| u.last_error).collect();
    let next_attempts: Vec<Option<i64>> = updates.iter().map(|u| u.next_attempt_at).collect();
    let settled: Vec<Option<i64>> = updates.iter().map(|u| u.settled_at).collect();
    let event_ids: Vec<String> = updates.iter().map(|_| EventId::generate().into_string()).collect();
    let kinds: Vec<Option<&str>> = updates.iter().map(DeliveryUpdate::event_kind).collect();
    let reasons: Vec<Option<&str>> = updates.iter().map(DeliveryUpdate::event_reason).collect();
    let ats: Vec<i64> = updates.iter().map(|u| u.at.millis()).collect();
    let rows = sqlx::query_scalar::<_, String>(RECORD_TOGETHER)
        .persistent(true)
        .bind(&email_ids)
        .bind(&owners)
        .bind(&statuses)
        .bind(&errors)
        .bind(&next_attempts)
        .bind(&settled)
        .bind(&event_ids)
        .bind(&kinds)
        .bind(&reasons)
        .bind(&ats)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(rows)
}
