//! `Webhooks` for PostgreSQL. Deliveries are written by the
//! `events_to_webhooks` trigger (migration 0010) in each event's own
//! transaction; here they are claimed with `FOR UPDATE SKIP LOCKED`, so each
//! goes to one worker of one instance, and settled by their lease holder
//! only.

use passgate_core::{EventId, EventKind, ProjectId, Timestamp, WebhookId};
use passgate_store::{
    ClaimedWebhookDelivery, Event, Lease, ManualRetry, NewEvent, NewWebhook, OutboxDepth, StoreError, StoreResult,
    WebhookAttempt, WebhookAttemptResult, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint, WebhookNext,
    Webhooks,
};

use crate::events::{EventRow, insert_event};
use crate::{PgStore, db_err};

/// An endpoint's row as every query below reads it.
struct EndpointRow {
    id: String,
    project_id: String,
    url: String,
    kinds: Vec<String>,
    secret_sealed: Vec<u8>,
    previous_secret_sealed: Option<Vec<u8>>,
    previous_secret_until: Option<i64>,
    created_at: i64,
    disabled_at: Option<i64>,
    last_success_at: Option<i64>,
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = StoreError;

    fn try_from(r: EndpointRow) -> StoreResult<Self> {
        let kinds = r
            .kinds
            .iter()
            .map(|k| EventKind::parse(k).ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {k:?}"))))
            .collect::<StoreResult<_>>()?;
        Ok(Self {
            id: WebhookId::from_trusted(r.id),
            project_id: ProjectId::from_trusted(r.project_id),
            url: r.url,
            kinds,
            secret_sealed: r.secret_sealed,
            previous_secret_sealed: r.previous_secret_sealed,
            previous_secret_until: r.previous_secret_until.map(Timestamp),
            created_at: Timestamp(r.created_at),
            disabled_at: r.disabled_at.map(Timestamp),
            last_success_at: r.last_success_at.map(Timestamp),
        })
    }
}

fn kind_of(stored: &str) -> StoreResult<EventKind> {
    EventKind::parse(stored).ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {stored:?}")))
}

impl Webhooks for PgStore {
    async fn create_webhook(&self, w: NewWebhook<'_>) -> StoreResult<bool> {
        let kinds: Vec<String> = w.kinds.iter().map(|k| k.as_str().to_string()).collect();
        let limit = i64::try_from(w.limit).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        // Creations for one project take turns on its row, so two at once
        // cannot both count room for one more.
        crate::projects::lock_project(&mut tx, w.project_id).await?;
        let count = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM webhook_endpoints WHERE project_id = $1"#,
            w.project_id.as_str()
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if count >= limit {
            return Ok(false);
        }
        sqlx::query!(
            "INSERT INTO webhook_endpoints (id, project_id, url, kinds, secret_sealed, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            w.id.as_str(),
            w.project_id.as_str(),
            w.url,
            &kinds,
            w.secret_sealed,
            w.at.millis()
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn list_webhooks(&self, project_id: &ProjectId) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query_as!(
            EndpointRow,
            "SELECT id, project_id, url, kinds, secret_sealed, previous_secret_sealed, previous_secret_until,
                created_at, disabled_at, last_success_at
             FROM webhook_endpoints WHERE project_id = $1 ORDER BY created_at, id",
            project_id.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(WebhookEndpoint::try_from).collect()
    }

    async fn get_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query_as!(
            EndpointRow,
            "SELECT id, project_id, url, kinds, secret_sealed, previous_secret_sealed, previous_secret_until,
                created_at, disabled_at, last_success_at
             FROM webhook_endpoints WHERE project_id = $1 AND id = $2",
            project_id.as_str(),
            id.as_str()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(WebhookEndpoint::try_from).transpose()
    }

    async fn delete_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query!(
            "DELETE FROM webhook_endpoints WHERE project_id = $1 AND id = $2",
            project_id.as_str(),
            id.as_str()
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if deleted == 1 {
            sqlx::query!("DELETE FROM webhook_deliveries WHERE webhook_id = $1", id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query!("DELETE FROM webhook_attempts WHERE webhook_id = $1", id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(deleted == 1)
    }

    async fn rotate_webhook_secret(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        secret_sealed: &[u8],
        previous_until: Timestamp,
    ) -> StoreResult<bool> {
        let rotated = sqlx::query!(
            "UPDATE webhook_endpoints
             SET previous_secret_sealed = secret_sealed, previous_secret_until = $1, secret_sealed = $2
             WHERE project_id = $3 AND id = $4",
            previous_until.millis(),
            secret_sealed,
            project_id.as_str(),
            id.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(rotated == 1)
    }

    async fn enable_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> StoreResult<bool> {
        let enabled = sqlx::query!(
            "UPDATE webhook_endpoints SET disabled_at = NULL WHERE project_id = $1 AND id = $2",
            project_id.as_str(),
            id.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(enabled == 1)
    }

    async fn list_webhook_deliveries(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let deliveries = sqlx::query!(
            r#"SELECT d.event_id, e.kind, d.status, d.attempts, d.next_attempt_at, d.created_at, d.settled_at
             FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.webhook_id = $1 AND d.project_id = $2
             ORDER BY d.created_at DESC, d.event_id DESC LIMIT $3"#,
            id.as_str(),
            project_id.as_str(),
            i64::from(limit)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let event_ids: Vec<String> = deliveries.iter().map(|d| d.event_id.clone()).collect();
        let attempts = sqlx::query!(
            "SELECT event_id, attempt, at, status_code, latency_ms, error FROM webhook_attempts
             WHERE webhook_id = $1 AND event_id = ANY ($2) ORDER BY attempt DESC",
            id.as_str(),
            &event_ids
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        deliveries
            .into_iter()
            .map(|d| {
                let attempt_log = attempts
                    .iter()
                    .filter(|a| a.event_id == d.event_id)
                    .map(|a| WebhookAttempt {
                        attempt: a.attempt,
                        at: Timestamp(a.at),
                        status_code: a.status_code.and_then(|c| u16::try_from(c).ok()),
                        latency_ms: a.latency_ms,
                        error: a.error.clone(),
                    })
                    .collect();
                Ok(WebhookDelivery {
                    webhook_id: id.clone(),
                    kind: kind_of(&d.kind)?,
                    event_id: EventId::from_trusted(d.event_id),
                    status: WebhookDeliveryStatus::parse(&d.status)?,
                    attempts: d.attempts,
                    next_attempt_at: d.next_attempt_at.map(Timestamp),
                    created_at: Timestamp(d.created_at),
                    settled_at: d.settled_at.map(Timestamp),
                    attempt_log,
                })
            })
            .collect()
    }

    async fn retry_webhook_delivery(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        event_id: &EventId,
        now: Timestamp,
    ) -> StoreResult<ManualRetry> {
        // One statement: re-queued only if settled; the status before it
        // tells the caller why not otherwise.
        let row = sqlx::query!(
            r#"WITH found AS (
                SELECT status FROM webhook_deliveries
                WHERE project_id = $1 AND webhook_id = $2 AND event_id = $3 FOR UPDATE),
             requeued AS (
                UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, settled_at = NULL,
                    final_attempt = TRUE
                WHERE project_id = $1 AND webhook_id = $2 AND event_id = $3 AND status <> 'pending'
                RETURNING 1)
             SELECT (SELECT status FROM found) AS "status?", (SELECT count(*) FROM requeued) AS "requeued!""#,
            project_id.as_str(),
            id.as_str(),
            event_id.as_str(),
            now.millis()
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(match (row.status.as_deref(), row.requeued) {
            (None, _) => ManualRetry::NotFound,
            (Some(_), 1) => ManualRetry::Queued,
            (Some(_), _) => ManualRetry::StillPending,
        })
    }

    async fn claim_webhook_deliveries(&self, lease: Lease, limit: u32) -> StoreResult<Vec<ClaimedWebhookDelivery>> {
        let (now, until) = (lease.now.millis(), lease.until.millis());
        let mut tx = self.begin().await?;
        // A delivery whose event is gone (removed by retention) can never be
        // sent: it is settled as failed rather than left due forever.
        sqlx::query!(
            "UPDATE webhook_deliveries d SET status = 'failed', settled_at = $1, next_attempt_at = NULL
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1
               AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)",
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let claimed = sqlx::query!(
            r#"UPDATE webhook_deliveries d SET lease_owner = $1, lease_until = $2
             FROM (SELECT d.webhook_id, d.event_id FROM webhook_deliveries d
                   JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.disabled_at IS NULL
                   WHERE d.status = 'pending' AND d.next_attempt_at <= $3
                     AND (d.lease_until IS NULL OR d.lease_until <= $3)
                   ORDER BY d.next_attempt_at LIMIT $4
                   FOR UPDATE OF d SKIP LOCKED) due
             WHERE d.webhook_id = due.webhook_id AND d.event_id = due.event_id
             RETURNING d.webhook_id, d.event_id, d.attempts, d.final_attempt"#,
            lease.owner,
            until,
            now,
            i64::from(limit)
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let event_ids: Vec<String> = claimed.iter().map(|c| c.event_id.clone()).collect();
        let webhook_ids: Vec<String> = claimed.iter().map(|c| c.webhook_id.clone()).collect();
        let events = sqlx::query_as!(
            EventRow,
            r#"SELECT id AS "id!", project_id, kind, user_id, login_id, invite_id, otp_id, session_id, email, reason,
                ip_address, user_agent, created_at, webhook_id
             FROM events WHERE id = ANY ($1)"#,
            &event_ids
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(Event::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
        let endpoints = sqlx::query_as!(
            EndpointRow,
            "SELECT id, project_id, url, kinds, secret_sealed, previous_secret_sealed, previous_secret_until,
                created_at, disabled_at, last_success_at
             FROM webhook_endpoints WHERE id = ANY ($1)",
            &webhook_ids
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(WebhookEndpoint::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
        // An event or endpoint deleted since the claim: left to lapse.
        Ok(claimed
            .into_iter()
            .filter_map(|c| {
                let event = events.iter().find(|e| e.id == c.event_id.as_str())?;
                let endpoint = endpoints.iter().find(|w| w.id == c.webhook_id.as_str())?;
                Some(ClaimedWebhookDelivery {
                    endpoint: endpoint.clone(),
                    event: event.clone(),
                    attempts: c.attempts,
                    final_attempt: c.final_attempt,
                    lease_until: lease.until,
                })
            })
            .collect())
    }

    async fn record_webhook_attempt(
        &self,
        id: &WebhookId,
        event_id: &EventId,
        lease_owner: &str,
        result: WebhookAttemptResult,
    ) -> StoreResult<bool> {
        let at = result.attempt.at.millis();
        let (status, next_attempt_at, settled_at) = match result.next {
            WebhookNext::Delivered => ("sent", None, Some(at)),
            WebhookNext::RetryAt(due) => ("pending", Some(due.millis()), None),
            WebhookNext::GiveUp => ("failed", None, Some(at)),
        };
        let mut tx = self.begin().await?;
        let settled = sqlx::query!(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, settled_at = $3,
                lease_owner = NULL, lease_until = NULL, final_attempt = FALSE
             WHERE webhook_id = $4 AND event_id = $5 AND lease_owner = $6 AND status = 'pending'
             RETURNING project_id, attempts, created_at",
            status,
            next_attempt_at,
            settled_at,
            id.as_str(),
            event_id.as_str(),
            lease_owner
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(settled) = settled else {
            return Ok(false);
        };
        sqlx::query!(
            "INSERT INTO webhook_attempts (webhook_id, event_id, attempt, at, status_code, latency_ms, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            id.as_str(),
            event_id.as_str(),
            settled.attempts,
            at,
            result.attempt.status_code.map(i32::from),
            result.attempt.latency_ms,
            result.attempt.error
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        match result.next {
            WebhookNext::Delivered => {
                sqlx::query!(
                    "UPDATE webhook_endpoints SET last_success_at = GREATEST(COALESCE(last_success_at, 0), $1)
                     WHERE id = $2",
                    at,
                    id.as_str()
                )
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            WebhookNext::RetryAt(_) => {}
            WebhookNext::GiveUp => {
                // Disabled only if nothing got through since this delivery
                // was created: the endpoint has been failing the whole time.
                let disabled = sqlx::query!(
                    "UPDATE webhook_endpoints SET disabled_at = $1
                     WHERE id = $2 AND disabled_at IS NULL AND COALESCE(last_success_at, 0) < $3",
                    at,
                    id.as_str(),
                    settled.created_at
                )
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                if disabled == 1 {
                    let project_id = ProjectId::from_trusted(settled.project_id);
                    let event = NewEvent {
                        webhook_id: Some(id),
                        reason: Some("retries_exhausted"),
                        ..NewEvent::new(&project_id, EventKind::WebhookDisabled, result.attempt.at)
                    };
                    insert_event(&mut tx, event).await?;
                }
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn next_webhook_delivery_due(&self) -> StoreResult<Option<Timestamp>> {
        let due = sqlx::query_scalar!(
            r#"SELECT MIN(GREATEST(d.next_attempt_at, COALESCE(d.lease_until, 0))) AS "due?: i64"
             FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.disabled_at IS NULL
             WHERE d.status = 'pending'"#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(due.map(Timestamp))
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let depth = sqlx::query!(
            r#"SELECT
                (SELECT count(*) FROM outbox WHERE status IN ('queued', 'retrying')) AS "emails!",
                (SELECT MIN(next_attempt_at) FROM outbox WHERE status IN ('queued', 'retrying')) AS "oldest_email?: i64",
                (SELECT count(*) FROM webhook_deliveries d
                   JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.disabled_at IS NULL
                   WHERE d.status = 'pending') AS "deliveries!",
                (SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d
                   JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.disabled_at IS NULL
                   WHERE d.status = 'pending') AS "oldest_delivery?: i64""#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(OutboxDepth {
            emails: depth.emails,
            oldest_email_due: depth.oldest_email.map(Timestamp),
            webhook_deliveries: depth.deliveries,
            oldest_webhook_delivery_due: depth.oldest_delivery.map(Timestamp),
        })
    }
}
