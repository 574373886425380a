//! The webhook worker: claims due deliveries with a lease, signs and sends
//! them, records each attempt, and retries failures on the contract's
//! schedule until they are delivered or spent.
//!
//! Durability comes from the store: a delivery is a row written in the same
//! transaction as its event, and only the lease holder may settle it. If a
//! process dies mid-delivery, its lease lapses and another worker (or the
//! same server after a restart) attempts it again, with the same
//! `webhook-id`: delivery is at least once, and receivers deduplicate on
//! that id. Each call ends (timeout) well inside its lease.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use passgate_core::secret::{Purpose, ServerSecret};
use passgate_core::webhook::{self, WebhookSecret, is_blocked_ip, parse_webhook_url};
use passgate_core::{Clock, IdKind, Timestamp};
use passgate_store::{
    ClaimedWebhookDelivery, Event, Lease, Store, StoreError, WebhookAttempt, WebhookAttemptResult, WebhookNext,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{AddressRefusal, http_client};
use super::{RESPONSE_BODY_CAP, WebhookConfig};
use crate::metrics::{Metrics, WebhookOutcome};
use crate::services::events::record_of;

pub struct WebhookSender<S: Store> {
    store: S,
    clock: Arc<dyn Clock>,
    secret: Arc<ServerSecret>,
    config: WebhookConfig,
    client: reqwest::Client,
    owner: Arc<str>,
    metrics: Arc<Metrics>,
}

impl<S: Store> Clone for WebhookSender<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
            secret: self.secret.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            owner: self.owner.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for WebhookSender<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender").field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// The body of a delivery: `{type, timestamp, data}`, the event's fields in
/// `data`. Built from the event row as it is now, so an erased user's
/// deliveries carry nothing of them.
pub fn payload(event: &Event) -> Vec<u8> {
    let record = record_of(event);
    let mut data = serde_json::to_value(&record).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.remove("type");
        fields.remove("timestamp");
    }
    let body = serde_json::json!({ "type": record.kind, "timestamp": record.timestamp, "data": data });
    body.to_string().into_bytes()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What one call came to, before the schedule decides what follows.
struct Answer {
    status_code: Option<u16>,
    error: Option<String>,
}

impl<S: Store> WebhookSender<S> {
    pub fn new(
        store: S,
        clock: Arc<dyn Clock>,
        secret: Arc<ServerSecret>,
        config: WebhookConfig,
        metrics: Arc<Metrics>,
    ) -> reqwest::Result<Self> {
        let client = http_client(config.guard(), config.timeout())?;
        // A fresh owner id per process, as for emails: a restarted server
        // must not mistake its predecessor's leases for its own.
        let owner = format!("webhooks_{}", IdKind::Request.generate().trim_start_matches("req_")).into();
        Ok(Self { store, clock, secret, config, client, owner, metrics })
    }

    /// Sends what is due until `shutdown` says stop; finishes the attempts
    /// in flight before returning.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, "webhook worker started");
        let mut next_sample = Instant::now();
        while !*shutdown.borrow() {
            if Instant::now() >= next_sample {
                self.sample_depth().await;
                next_sample = Instant::now() + self.config.depth_sample;
            }
            // A read first: an idle server does not write to claim nothing.
            let mut wait = self.idle_wait().await;
            if wait.is_zero() {
                let claimed = match self.run_once().await {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim webhook deliveries");
                        0
                    }
                };
                if claimed as u32 >= self.config.concurrency {
                    continue; // a full batch: more may be due
                }
                wait = self.idle_wait().await;
                if claimed == 0 {
                    // Due by the table, yet nothing to claim (a lease that
                    // lapses this very millisecond): no spinning on it.
                    wait = wait.max(Duration::from_millis(10));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait.min(self.config.depth_sample)) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(owner = %self.owner, "webhook worker stopped");
    }

    /// Claims what is due now and attempts it all; returns how many.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease = Lease { owner: self.owner.to_string(), now, until: now.plus_millis(millis(self.config.lease)) };
        let claimed = self.store.claim_webhook_deliveries(lease, self.config.concurrency.max(1)).await?;
        let count = claimed.len();
        futures::stream::iter(claimed)
            .for_each_concurrent(self.config.concurrency.max(1) as usize, |delivery| self.deliver(delivery))
            .await;
        Ok(count)
    }

    /// How long to sleep: until the next delivery is due, at most the idle poll.
    async fn idle_wait(&self) -> Duration {
        match self.store.next_webhook_delivery_due().await {
            Ok(Some(due)) => {
                let ms = (due.millis() - self.clock.now().millis()).clamp(0, millis(self.config.idle_poll));
                Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            }
            Ok(None) => self.config.idle_poll,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read when the next webhook delivery is due");
                self.config.idle_poll
            }
        }
    }

    async fn sample_depth(&self) {
        match self.store.outbox_depth().await {
            Ok(depth) => self.metrics.set_outbox_depth(depth, self.clock.now()),
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox depth"),
        }
    }

    async fn deliver(&self, delivery: ClaimedWebhookDelivery) {
        let started = self.clock.now();
        let began = Instant::now();
        let answer = self.call(&delivery, started).await;
        let latency_ms = i64::try_from(began.elapsed().as_millis()).unwrap_or(i64::MAX);
        let at = self.clock.now();
        let delivered = answer.status_code.is_some_and(|code| (200..300).contains(&code));
        let attempts_made = delivery.attempts + 1;
        let next = if delivered {
            WebhookNext::Delivered
        } else {
            let jitter = f64::from(passgate_core::random::bytes::<4>()[0]) / 256.0;
            match webhook::retry_delay_millis(attempts_made, jitter) {
                Some(delay) if !delivery.final_attempt => WebhookNext::RetryAt(at.plus_millis(delay)),
                _ => WebhookNext::GiveUp,
            }
        };
        self.metrics.count_webhook(match next {
            WebhookNext::Delivered => WebhookOutcome::Delivered,
            WebhookNext::RetryAt(_) => WebhookOutcome::Retrying,
            WebhookNext::GiveUp => WebhookOutcome::Failed,
        });
        let attempt = WebhookAttempt {
            attempt: attempts_made,
            at,
            status_code: answer.status_code,
            latency_ms,
            error: answer.error.clone(),
        };
        let (webhook_id, event_id) = (&delivery.endpoint.id, &delivery.event.id);
        match self
            .store
            .record_webhook_attempt(webhook_id, event_id, &self.owner, WebhookAttemptResult { attempt, next })
            .await
        {
            Ok(true) => {
                tracing::debug!(%webhook_id, %event_id, attempt = attempts_made, status = ?answer.status_code, "webhook attempt recorded");
            }
            Ok(false) => tracing::warn!(%webhook_id, %event_id, "webhook lease lost before the attempt was recorded"),
            Err(e) => tracing::warn!(%webhook_id, %event_id, error = %e, "cannot record a webhook attempt"),
        }
        if let (WebhookNext::GiveUp, Some(error)) = (next, &answer.error) {
            tracing::info!(%webhook_id, %event_id, error = %error, "webhook delivery failed for good");
        }
    }

    /// Signs and sends one delivery; what the receiver answered, or why
    /// nothing came back. Never logs or returns the URL (it may hold a
    /// receiver's own secret) or the signing secrets.
    async fn call(&self, delivery: &ClaimedWebhookDelivery, now: Timestamp) -> Answer {
        let fail = |error: String| Answer { status_code: None, error: Some(error) };
        let url = match parse_webhook_url(&delivery.endpoint.url, self.config.allow_private) {
            Ok(url) => url,
            Err(refusal) => return fail(format!("URL refused: {refusal}")),
        };
        // IP-literal hosts never reach the resolver: checked here.
        if let Some(ip) = url.host_ip()
            && !self.config.allow_private
            && is_blocked_ip(ip)
        {
            return fail(format!("address refused: {}", AddressRefusal::Blocked));
        }
        let mut secrets = Vec::new();
        for sealed in delivery.endpoint.signing_secrets(now) {
            match self.secret.open(Purpose::WebhookSecret, sealed).ok().and_then(|b| WebhookSecret::from_bytes(&b)) {
                Some(secret) => secrets.push(secret),
                None => return fail("the endpoint's signing secret cannot be opened with the server secret".into()),
            }
        }
        let body = payload(&delivery.event);
        let timestamp = now.millis().div_euclid(1000);
        let msg_id = delivery.event.id.as_str();
        let signature = webhook::signature_header(&secrets.iter().collect::<Vec<_>>(), msg_id, timestamp, &body);
        let request = self
            .client
            .post(url.url().clone())
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read at most the cap, then let the connection go.
                let mut read = 0usize;
                while read < RESPONSE_BODY_CAP {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        Ok(None) | Err(_) => break,
                    }
                }
                let error = (!(200..300).contains(&status)).then(|| format!("answered {status}"));
                Answer { status_code: Some(status), error }
            }
            Err(e) => fail(describe(&e.without_url())),
        }
    }
}

/// A failed call in a few words, with the guard's refusal when it was one.
/// (The resolver's error reaches us wrapped by the HTTP stack, as text in
/// the cause chain, so it is recognised by its message.)
fn describe(e: &reqwest::Error) -> String {
    let chain = crate::http::error::cause_chain(e);
    for refusal in [AddressRefusal::Blocked, AddressRefusal::NoAddress] {
        if chain.contains(&refusal.to_string()) {
            return format!("address refused: {refusal}");
        }
    }
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        format!("cannot connect: {chain}")
    } else {
        chain
    }
}
