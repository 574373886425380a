//! `Webhooks` for SQLite. Deliveries are written by the `events_to_webhooks`
//! trigger (migration 0009) in each event's own transaction; here they are
//! leased with `UPDATE … RETURNING` (one writer, so no two workers see the
//! same row as due) and settled by their lease holder only.

use passgate_core::{EventId, EventKind, ProjectId, Timestamp, WebhookId};
use passgate_store::{
    ClaimedWebhookDelivery, Lease, ManualRetry, NewEvent, NewWebhook, OutboxDepth, StoreResult, WebhookAttempt,
    WebhookAttemptResult, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint, WebhookNext, Webhooks,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::events::{EVENT_COLUMNS, event_kind, event_of, insert_event};
use crate::{OrStoreError, SqliteStore};

/// Kinds as the trigger matches them: each between spaces.
fn kinds_text(kinds: &[EventKind]) -> String {
    let mut text = String::from(" ");
    for kind in kinds {
        text.push_str(kind.as_str());
        text.push(' ');
    }
    text
}

fn kinds_of(text: &str) -> StoreResult<Vec<EventKind>> {
    text.split_whitespace().map(event_kind).collect()
}

const ENDPOINT_COLUMNS: &str =
    "id, project_id, url, kinds, secret_sealed, previous_secret_sealed, previous_secret_until,
    created_at, disabled_at, last_success_at";

fn endpoint_of(r: &rusqlite::Row<'_>) -> StoreResult<WebhookEndpoint> {
    let kinds: String = r.get(3).db()?;
    Ok(WebhookEndpoint {
        id: WebhookId::from_trusted(r.get::<_, String>(0).db()?),
        project_id: ProjectId::from_trusted(r.get::<_, String>(1).db()?),
        url: r.get(2).db()?,
        kinds: kinds_of(&kinds)?,
        secret_sealed: r.get(4).db()?,
        previous_secret_sealed: r.get(5).db()?,
        previous_secret_until: r.get::<_, Option<i64>>(6).db()?.map(Timestamp),
        created_at: Timestamp(r.get(7).db()?),
        disabled_at: r.get::<_, Option<i64>>(8).db()?.map(Timestamp),
        last_success_at: r.get::<_, Option<i64>>(9).db()?.map(Timestamp),
    })
}

fn endpoint(conn: &Connection, project_id: &str, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = ? AND id = ?");
    let mut statement = conn.prepare_cached(&sql).db()?;
    let mut rows = statement.query(params![project_id, id]).db()?;
    rows.next().db()?.map(endpoint_of).transpose()
}

fn attempts_of(conn: &Connection, webhook_id: &str, event_id: &str) -> StoreResult<Vec<WebhookAttempt>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT attempt, at, status_code, latency_ms, error FROM webhook_attempts
             WHERE webhook_id = ? AND event_id = ? ORDER BY attempt DESC",
        )
        .db()?;
    let rows = statement
        .query_map(params![webhook_id, event_id], |r| {
            Ok(WebhookAttempt {
                attempt: r.get(0)?,
                at: Timestamp(r.get(1)?),
                status_code: r.get::<_, Option<i64>>(2)?.and_then(|c| u16::try_from(c).ok()),
                latency_ms: r.get(3)?,
                error: r.get(4)?,
            })
        })
        .db()?;
    rows.collect::<rusqlite::Result<_>>().db()
}

fn claim(conn: &Connection, lease: &Lease, limit: u32) -> StoreResult<Vec<ClaimedWebhookDelivery>> {
    let (now, until) = (lease.now.millis(), lease.until.millis());
    // A delivery whose event is gone (removed by retention) can never be
    // sent: it is settled as failed rather than left due forever.
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = 'failed', settled_at = ?1, next_attempt_at = NULL
         WHERE status = 'pending' AND next_attempt_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = webhook_deliveries.event_id)",
    )
    .db()?
    .execute(params![now])
    .db()?;
    let keys: Vec<(String, String, i64, bool)> = conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ?
             WHERE (webhook_id, event_id) IN (
                SELECT d.webhook_id, d.event_id FROM webhook_deliveries d
                JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.disabled_at IS NULL
                WHERE d.status = 'pending' AND d.next_attempt_at <= ?
                  AND (d.lease_until IS NULL OR d.lease_until <= ?)
                ORDER BY d.next_attempt_at LIMIT ?)
             RETURNING webhook_id, event_id, attempts, final_attempt",
        )
        .db()?
        .query_map(params![lease.owner, until, now, now, i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let event_sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?");
    let endpoint_sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?");
    let mut claimed = Vec::with_capacity(keys.len());
    for (webhook_id, event_id, attempts, final_attempt) in keys {
        let event = conn.prepare_cached(&event_sql).db()?.query_row([&event_id], |r| Ok(event_of(r))).db()??;
        let endpoint =
            conn.prepare_cached(&endpoint_sql).db()?.query_row([&webhook_id], |r| Ok(endpoint_of(r))).db()??;
        claimed.push(ClaimedWebhookDelivery { endpoint, event, attempts, final_attempt, lease_until: lease.until });
    }
    Ok(claimed)
}

fn record_attempt(
    conn: &Connection,
    webhook_id: &str,
    event_id: &str,
    lease_owner: &str,
    result: &WebhookAttemptResult,
) -> StoreResult<bool> {
    let at = result.attempt.at.millis();
    let (status, next_attempt_at, settled_at) = match result.next {
        WebhookNext::Delivered => ("sent", None, Some(at)),
        WebhookNext::RetryAt(due) => ("pending", Some(due.millis()), None),
        WebhookNext::GiveUp => ("failed", None, Some(at)),
    };
    let row: Option<(String, i64, i64)> = conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, settled_at = ?,
                lease_owner = NULL, lease_until = NULL, final_attempt = 0
             WHERE webhook_id = ? AND event_id = ? AND lease_owner = ? AND status = 'pending'
             RETURNING project_id, attempts, created_at",
        )
        .db()?
        .query_row(params![status, next_attempt_at, settled_at, webhook_id, event_id, lease_owner], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .db()?;
    let Some((project_id, attempt, created_at)) = row else {
        return Ok(false);
    };
    conn.prepare_cached(
        "INSERT INTO webhook_attempts (webhook_id, event_id, attempt, at, status_code, latency_ms, error)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        webhook_id,
        event_id,
        attempt,
        at,
        result.attempt.status_code,
        result.attempt.latency_ms,
        result.attempt.error
    ])
    .db()?;
    match result.next {
        WebhookNext::Delivered => {
            conn.prepare_cached("UPDATE webhook_endpoints SET last_success_at = ? WHERE id = ?")
                .db()?
                .execute(params![at, webhook_id])
                .db()?;
        }
        WebhookNext::RetryAt(_) => {}
        WebhookNext::GiveUp => {
            // Disabled only if nothing got through since this delivery was
            // created: the endpoint has been failing the whole time.
            let disabled = conn
                .prepare_cached(
                    "UPDATE webhook_endpoints SET disabled_at = ?
                     WHERE id = ? AND disabled_at IS NULL AND COALESCE(last_success_at, 0) < ?",
                )
                .db()?
                .execute(params![at, webhook_id, created_at])
                .db()?;
            if disabled == 1 {
                let (project_id, webhook_id) =
                    (ProjectId::from_trusted(project_id), WebhookId::from_trusted(webhook_id));
                let event = NewEvent {
                    webhook_id: Some(&webhook_id),
                    reason: Some("retries_exhausted"),
                    ..NewEvent::new(&project_id, EventKind::WebhookDisabled, result.attempt.at)
                };
                insert_event(conn, event)?;
            }
        }
    }
    Ok(true)
}

fn deliveries(conn: &Connection, project_id: &str, webhook_id: &str, limit: u32) -> StoreResult<Vec<WebhookDelivery>> {
    type Row = (String, String, String, i64, Option<i64>, i64, Option<i64>);
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT d.event_id, e.kind, d.status, d.attempts, d.next_attempt_at, d.created_at, d.settled_at
             FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.webhook_id = ? AND d.project_id = ?
             ORDER BY d.created_at DESC, d.event_id DESC LIMIT ?",
        )
        .db()?
        .query_map(params![webhook_id, project_id, i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    rows.into_iter()
        .map(|(event_id, kind, status, attempts, next_attempt_at, created_at, settled_at)| {
            Ok(WebhookDelivery {
                attempt_log: attempts_of(conn, webhook_id, &event_id)?,
                webhook_id: WebhookId::from_trusted(webhook_id),
                event_id: EventId::from_trusted(event_id),
                kind: event_kind(&kind)?,
                status: WebhookDeliveryStatus::parse(&status)?,
                attempts,
                next_attempt_at: next_attempt_at.map(Timestamp),
                created_at: Timestamp(created_at),
                settled_at: settled_at.map(Timestamp),
            })
        })
        .collect()
}

impl Webhooks for SqliteStore {
    async fn create_webhook(&self, w: NewWebhook<'_>) -> StoreResult<bool> {
        let (id, project_id, url) = (w.id.to_string(), w.project_id.to_string(), w.url.to_string());
        let (kinds, secret, at) = (kinds_text(w.kinds), w.secret_sealed.to_vec(), w.at.millis());
        let limit = i64::try_from(w.limit).unwrap_or(i64::MAX);
        // One writer job: the count and the insert see no other write between them.
        self.write(move |conn| {
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM webhook_endpoints WHERE project_id = ?")
                .db()?
                .query_row([&project_id], |r| r.get(0))
                .db()?;
            if count >= limit {
                return Ok(false);
            }
            conn.prepare_cached(
                "INSERT INTO webhook_endpoints (id, project_id, url, kinds, secret_sealed, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .db()?
            .execute(params![id, project_id, url, kinds, secret, at])
            .db()?;
            Ok(true)
        })
        .await
    }

    async fn list_webhooks(&self, project_id: &ProjectId) -> StoreResult<Vec<WebhookEndpoint>> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = ? ORDER BY created_at, id"
            );
            let mut statement = conn.prepare_cached(&sql).db()?;
            let mut rows = statement.query([project_id.as_str()]).db()?;
            let mut endpoints = Vec::new();
            while let Some(r) = rows.next().db()? {
                endpoints.push(endpoint_of(r)?);
            }
            Ok(endpoints)
        })
    }

    async fn get_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> StoreResult<Option<WebhookEndpoint>> {
        self.read(|conn| endpoint(conn, project_id.as_str(), id.as_str()))
    }

    async fn delete_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> StoreResult<bool> {
        let (project_id, id) = (project_id.to_string(), id.to_string());
        self.write(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM webhook_endpoints WHERE project_id = ? AND id = ?")
                .db()?
                .execute(params![project_id, id])
                .db()?;
            if deleted == 1 {
                for table in ["webhook_deliveries", "webhook_attempts"] {
                    conn.prepare_cached(&format!("DELETE FROM {table} WHERE webhook_id = ?"))
                        .db()?
                        .execute([&id])
                        .db()?;
                }
            }
            Ok(deleted == 1)
        })
        .await
    }

    async fn rotate_webhook_secret(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        secret_sealed: &[u8],
        previous_until: Timestamp,
    ) -> StoreResult<bool> {
        let (project_id, id, secret) = (project_id.to_string(), id.to_string(), secret_sealed.to_vec());
        self.write(move |conn| {
            let rotated = conn
                .prepare_cached(
                    "UPDATE webhook_endpoints
                     SET previous_secret_sealed = secret_sealed, previous_secret_until = ?, secret_sealed = ?
                     WHERE project_id = ? AND id = ?",
                )
                .db()?
                .execute(params![previous_until.millis(), secret, project_id, id])
                .db()?;
            Ok(rotated == 1)
        })
        .await
    }

    async fn enable_webhook(&self, project_id: &ProjectId, id: &WebhookId) -> StoreResult<bool> {
        let (project_id, id) = (project_id.to_string(), id.to_string());
        self.write(move |conn| {
            let enabled = conn
                .prepare_cached("UPDATE webhook_endpoints SET disabled_at = NULL WHERE project_id = ? AND id = ?")
                .db()?
                .execute(params![project_id, id])
                .db()?;
            Ok(enabled == 1)
        })
        .await
    }

    async fn list_webhook_deliveries(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        self.read(|conn| deliveries(conn, project_id.as_str(), id.as_str(), limit))
    }

    async fn retry_webhook_delivery(
        &self,
        project_id: &ProjectId,
        id: &WebhookId,
        event_id: &EventId,
        now: Timestamp,
    ) -> StoreResult<ManualRetry> {
        let (project_id, id, event_id) = (project_id.to_string(), id.to_string(), event_id.to_string());
        self.write(move |conn| {
            let status: Option<String> = conn
                .prepare_cached(
                    "SELECT status FROM webhook_deliveries WHERE project_id = ? AND webhook_id = ? AND event_id = ?",
                )
                .db()?
                .query_row(params![project_id, id, event_id], |r| r.get(0))
                .optional()
                .db()?;
            match status.as_deref().map(WebhookDeliveryStatus::parse).transpose()? {
                None => Ok(ManualRetry::NotFound),
                Some(WebhookDeliveryStatus::Pending) => Ok(ManualRetry::StillPending),
                Some(_) => {
                    // One attempt: a failure settles it again at once.
                    conn.prepare_cached(
                        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, settled_at = NULL,
                            final_attempt = 1
                         WHERE webhook_id = ? AND event_id = ?",
                    )
                    .db()?
                    .execute(params![now.millis(), id, event_id])
                    .db()?;
                    Ok(ManualRetry::Queued)
                }
            }
        })
        .await
    }

    async fn claim_webhook_deliveries(&self, lease: Lease, limit: u32) -> StoreResult<Vec<ClaimedWebhookDelivery>> {
        self.write(move |conn| claim(conn, &lease, limit)).await
    }

    async fn record_webhook_attempt(
        &self,
        id: &WebhookId,
        event_id: &EventId,
        lease_owner: &str,
        result: WebhookAttemptResult,
    ) -> StoreResult<bool> {
        let (id, event_id, owner) = (id.to_string(), event_id.to_string(), lease_owner.to_string());
        self.write(move |conn| record_attempt(conn, &id, &event_id, &owner, &result)).await
    }

    async fn next_webhook_delivery_due(&self) -> StoreResult<Option<Timestamp>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT MIN(MAX(d.next_attempt_at, COALESCE(d.lease_until, 0)))
                 FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.disabled_at IS NULL
                 WHERE d.status = 'pending'",
            )
            .db()?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .db()
            .map(|due| due.map(Timestamp))
        })
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        self.read(|conn| {
            let (emails, oldest_email): (i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT COUNT(*), MIN(next_attempt_at) FROM outbox WHERE status IN ('queued', 'retrying')",
                )
                .db()?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .db()?;
            let (deliveries, oldest_delivery): (i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT COUNT(*), MIN(d.next_attempt_at)
                     FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.disabled_at IS NULL
                     WHERE d.status = 'pending'",
                )
                .db()?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .db()?;
            Ok(OutboxDepth {
                emails,
                oldest_email_due: oldest_email.map(Timestamp),
                webhook_deliveries: deliveries,
                oldest_webhook_delivery_due: oldest_delivery.map(Timestamp),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use passgate_store::StoreError;

    use super::*;

    #[test]
    fn kinds_round_trip_through_their_text() {
        let kinds = [EventKind::AuthVerified, EventKind::OtpVerified];
        let text = kinds_text(&kinds);
        assert_eq!(text, " auth.verified otp.verified ");
        assert_eq!(kinds_of(&text).ok(), Some(kinds.to_vec()));
        assert!(matches!(kinds_of(" nope "), Err(StoreError::Corrupt(_))));
    }
}
