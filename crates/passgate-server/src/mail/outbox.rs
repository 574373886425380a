//! The outbox worker: sends queued emails, records the outcome, and retries
//! failures with exponential backoff until it gives up (recorded as an
//! `email.failed` event).
//!
//! Emails reach it two ways. A start on this instance stores its email
//! already leased to this worker and, once committed, hands it over in
//! memory ([`Outbox::reserve`]): no claiming transaction, no wait for the
//! next look at the table. Everything else — retries, other instances'
//! emails, leases that lapsed, starts that found the hand-off queue full —
//! is claimed from the table with a lease when it is due.
//!
//! Durability comes from the store: an email is a row written in the same
//! transaction as its login, and only the lease holder may settle it. If a
//! process dies mid-send, its lease lapses and another worker (or the same
//! server after a restart) takes the row over. A live worker never lets its
//! lease lapse on an email it is working on: it renews the lease while a
//! send is in progress, and before starting one that waited long for a free
//! connection; one it can no longer renew, it does not send. Delivery is therefore at least
//! once: a crash after the relay accepted a message but before the outcome
//! was recorded sends it again. That is the right side to err on for a
//! login email; the window is one SMTP transaction wide.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use passgate_core::secret::ServerSecret;
use passgate_core::{Clock, EmailId, IdKind, LoginId, ProjectId};
use passgate_store::{ClaimedEmail, DeliveryResult, EmailLease, Lease, Store, StoreError};
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::EmailPayload;
use super::templates::Templates;
use super::transport::{Mailer, SMTP_POOL_SIZE};
use crate::metrics::{EmailAttempt, Metrics};

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// How long a claim holds before another worker may take the email over.
    pub lease: Duration,
    /// Emails claimed at once.
    pub batch: u32,
    /// Attempts before giving up.
    pub max_attempts: i64,
    /// First retry delay; doubles per attempt up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Longest sleep between looks at the table (other instances' emails,
    /// lapsed leases); a start on this instance wakes the worker at once.
    pub idle_poll: Duration,
    /// Emails handed over by starts and not yet being sent; when full, a
    /// start queues its email for claiming instead.
    pub handoff_capacity: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            batch: 32,
            max_attempts: 8,
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(300),
            idle_poll: Duration::from_secs(1),
            handoff_capacity: 1024,
        }
    }
}

impl OutboxConfig {
    /// Delay before the next try, after `attempts` failed ones (≥ 1).
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
        self.backoff_base.saturating_mul(2u32.saturating_pow(exponent)).min(self.backoff_cap)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The worker. Cheap to clone; clones share the wake-up signal.
#[derive(Clone)]
pub struct Outbox<S: Store> {
    store: S,
    clock: Arc<dyn Clock>,
    secret: Arc<ServerSecret>,
    templates: Arc<Templates>,
    mailer: Mailer,
    config: OutboxConfig,
    owner: Arc<str>,
    wake: Arc<Notify>,
    handoff: mpsc::Sender<ClaimedEmail>,
    /// The receiving end, taken by [`Outbox::run`].
    handed_over: Arc<Mutex<Option<mpsc::Receiver<ClaimedEmail>>>>,
    /// One permit per email being sent: at most as many as SMTP connections.
    sending: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// A place reserved in the worker's queue for an email about to be
/// committed.
#[derive(Debug)]
struct Handoff {
    permit: mpsc::OwnedPermit<ClaimedEmail>,
    lease: EmailLease,
}

/// An email about to be queued in the same transaction as what it
/// announces (see [`Outbox::prepare`]): its id and sealed content to store,
/// the lease to store it under if this instance will send it itself, and,
/// once the transaction committed, [`dispatch`](Self::dispatch).
#[derive(Debug)]
pub struct PreparedEmail {
    email: ClaimedEmail,
    handoff: Option<Handoff>,
    wake: Arc<Notify>,
}

impl PreparedEmail {
    pub fn id(&self) -> &EmailId {
        &self.email.id
    }

    /// The content as stored: sealed under the server secret.
    pub fn sealed(&self) -> &[u8] {
        &self.email.payload_sealed
    }

    /// The lease to store the email under: this instance's, when its worker
    /// takes the email straight from memory after the commit.
    pub fn lease(&self) -> Option<EmailLease> {
        self.handoff.as_ref().map(|h| h.lease.clone())
    }

    /// After the commit: hands the email to this instance's worker, or (its
    /// queue was full) wakes the worker to claim it from the table.
    /// Dropped instead (the transaction stored nothing), it frees its place.
    pub fn dispatch(self) {
        match self.handoff {
            Some(handoff) => {
                handoff.permit.send(self.email);
            }
            None => self.wake.notify_one(),
        }
    }
}

impl<S: Store> std::fmt::Debug for Outbox<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl<S: Store> Outbox<S> {
    pub fn new(
        store: S,
        clock: Arc<dyn Clock>,
        secret: Arc<ServerSecret>,
        templates: Arc<Templates>,
        mailer: Mailer,
        config: OutboxConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        // A fresh owner id per process: a restarted server must not mistake
        // its predecessor's leases for its own.
        let owner = format!("worker_{}", IdKind::Request.generate().trim_start_matches("req_")).into();
        let (handoff, handed_over) = mpsc::channel(config.handoff_capacity.max(1));
        Self {
            store,
            clock,
            secret,
            templates,
            mailer,
            config,
            metrics,
            owner,
            wake: Arc::new(Notify::new()),
            handoff,
            handed_over: Arc::new(Mutex::new(Some(handed_over))),
            sending: Arc::new(Semaphore::new(SMTP_POOL_SIZE as usize)),
        }
    }

    /// Prepares an email to queue with the write it belongs to. If the
    /// hand-off queue has room, the email is to be stored already leased to
    /// this worker, which takes it from memory once it is committed; else it
    /// is queued for claiming and the worker is woken to look.
    pub fn prepare(
        &self,
        id: EmailId,
        project_id: &ProjectId,
        login_id: Option<&LoginId>,
        recipient: &str,
        sealed: Vec<u8>,
    ) -> PreparedEmail {
        let handoff = self.handoff.clone().try_reserve_owned().ok().map(|permit| {
            let until = self.clock.now().plus_millis(millis(self.config.lease));
            Handoff { permit, lease: EmailLease { owner: self.owner.to_string(), until } }
        });
        let email = ClaimedEmail {
            id,
            project_id: project_id.clone(),
            login_id: login_id.cloned(),
            recipient: recipient.to_string(),
            payload_sealed: sealed,
            attempts: 0,
            lease_until: handoff.as_ref().map_or_else(|| self.clock.now(), |h| h.lease.until),
        };
        PreparedEmail { email, handoff, wake: Arc::clone(&self.wake) }
    }

    /// A lease of this worker's from now for the configured time.
    fn lease_from_now(&self) -> Lease {
        let now = self.clock.now();
        Lease { owner: self.owner.to_string(), now, until: now.plus_millis(millis(self.config.lease)) }
    }

    /// Claims what is due now and settles it. Returns how many emails were handled.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let claimed = self.store.claim_emails(self.lease_from_now(), self.config.batch).await?;
        let count = claimed.len();
        futures::stream::iter(claimed).for_each_concurrent(SMTP_POOL_SIZE as usize, |email| self.deliver(email)).await;
        Ok(count)
    }

    async fn deliver(&self, email: ClaimedEmail) {
        if let Some(result) = self.attempt_under_lease(&email).await {
            self.record(&email, result).await;
        }
    }

    /// Extends this worker's lease on `email` by the configured time; says
    /// whether the lease is still this worker's.
    async fn renew(&self, email: &ClaimedEmail) -> bool {
        let until = self.clock.now().plus_millis(millis(self.config.lease));
        match self.store.renew_lease(&email.id, &self.owner, until).await {
            Ok(renewed) => renewed,
            // Unknown: the send goes on; if the lease was in fact lost, the
            // outcome is refused when it is recorded.
            Err(e) => {
                tracing::warn!(email_id = %email.id, error = %e, "cannot renew an email's lease");
                true
            }
        }
    }

    /// Sends `email` while this worker holds its lease, renewing it every
    /// third of its length for as long as the send takes (a slow relay may
    /// take longer than a lease). An email that waited for a free
    /// connection until its lease ran low is renewed before the send
    /// starts; if another worker took it over meanwhile, it is not sent
    /// again (`None`).
    async fn attempt_under_lease(&self, email: &ClaimedEmail) -> Option<DeliveryResult> {
        let lease = millis(self.config.lease);
        let left = email.lease_until.millis() - self.clock.now().millis();
        if left < lease / 2 && !self.renew(email).await {
            tracing::warn!(email_id = %email.id, "lease lapsed while the email waited; another worker has it");
            return None;
        }
        let send = self.attempt(email);
        tokio::pin!(send);
        let every = self.config.lease / 3;
        let mut renewals = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut send => return Some(result),
                _ = renewals.tick() => {
                    if !self.renew(email).await {
                        tracing::warn!(email_id = %email.id, "lease lost while the email was being sent");
                    }
                }
            }
        }
    }

    /// Renders and sends one email; says what to record.
    async fn attempt(&self, email: &ClaimedEmail) -> DeliveryResult {
        let attempt = email.attempts + 1;
        let sent = match EmailPayload::open(&self.secret, &email.payload_sealed) {
            Ok(payload) => match self.templates.render(&payload) {
                Ok(rendered) => {
                    self.mailer.send(&rendered, self.clock.now()).await.map_err(|e| (e.to_string(), e.permanent))
                }
                Err(e) => {
                    tracing::error!(email_id = %email.id, error = %e, "email template failed");
                    Err(("internal_error".to_string(), false))
                }
            },
            Err(e) => {
                tracing::error!(email_id = %email.id, error = %e, "queued email cannot be opened (was the secret key changed without PASSGATE_SECRET_KEY_PREVIOUS?)");
                Err(("internal_error".to_string(), false))
            }
        };
        let at = self.clock.now();
        match sent {
            Ok(()) => {
                tracing::info!(email_id = %email.id, login_id = login_label(email), attempt, "email sent");
                self.metrics.email_attempt(EmailAttempt::Sent);
                DeliveryResult::Sent { at }
            }
            Err((error, permanent)) if permanent || attempt >= self.config.max_attempts => {
                tracing::warn!(email_id = %email.id, login_id = login_label(email), attempt, %error, "email failed; giving up");
                self.metrics.email_attempt(EmailAttempt::GaveUp);
                DeliveryResult::GaveUp { at, error }
            }
            Err((error, _)) => {
                let retry_at = at.plus_millis(millis(self.config.backoff(attempt)));
                tracing::warn!(email_id = %email.id, login_id = login_label(email), attempt, %error, retry_at = %retry_at.to_rfc3339(), "email failed; will retry");
                self.metrics.email_attempt(EmailAttempt::Retrying);
                DeliveryResult::Retry { at, error, retry_at }
            }
        }
    }

    async fn record(&self, email: &ClaimedEmail, result: DeliveryResult) {
        match self.store.record_delivery(&email.id, &self.owner, result).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(email_id = %email.id, "lease lost before the outcome was recorded")
            }
            Err(e) => {
                tracing::error!(email_id = %email.id, error = %e, "cannot record email outcome")
            }
        }
    }

    /// How long to sleep before looking again.
    async fn idle_wait(&self) -> Duration {
        let now = self.clock.now();
        match self.store.next_email_due().await {
            Ok(Some(due)) => {
                let ms = (due.millis() - now.millis()).clamp(0, millis(self.config.idle_poll));
                Duration::from_millis(ms.unsigned_abs())
            }
            Ok(None) => self.config.idle_poll,
            Err(e) => {
                tracing::warn!(error = %e, "outbox cannot read the queue");
                self.config.idle_poll
            }
        }
    }

    /// Sends `email` on a task of its own once an SMTP slot is free (waiting
    /// for the slot is the worker's back-pressure).
    async fn spawn_delivery(&self, tasks: &mut JoinSet<()>, email: ClaimedEmail) {
        let Ok(slot) = self.sending.clone().acquire_owned().await else { return };
        let this = self.clone();
        tasks.spawn(async move {
            let result = this.attempt_under_lease(&email).await;
            // The next email may use the connection while this outcome commits.
            drop::<OwnedSemaphorePermit>(slot);
            if let Some(result) = result {
                this.record(&email, result).await;
            }
        });
    }

    /// Claims the emails due now and starts sending them.
    async fn claim_due(&self, tasks: &mut JoinSet<()>) -> usize {
        match self.store.claim_emails(self.lease_from_now(), self.config.batch).await {
            Ok(claimed) => {
                let count = claimed.len();
                for email in claimed {
                    self.spawn_delivery(tasks, email).await;
                }
                count
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox cannot claim emails");
                0
            }
        }
    }

    /// Runs until `shutdown` turns true; the emails handed over or being
    /// sent by then are finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, "outbox worker started");
        let mut handed_over = self.handed_over.lock().await.take();
        let mut tasks = JoinSet::new();
        let mut next_look = Instant::now();
        while !*shutdown.borrow() {
            tokio::select! {
                Some(email) = recv(&mut handed_over) => self.spawn_delivery(&mut tasks, email).await,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep_until(next_look) => {
                    // A read first: an idle server does not write to claim nothing.
                    let mut wait = self.idle_wait().await;
                    if wait.is_zero() && (self.claim_due(&mut tasks).await as u32) < self.config.batch {
                        // A full batch means more may be due: look again at once.
                        wait = self.idle_wait().await;
                    }
                    next_look = Instant::now() + wait;
                }
                () = self.wake.notified() => next_look = Instant::now(),
                _ = shutdown.changed() => {}
            }
        }
        if let Some(mut queue) = handed_over {
            queue.close();
            while let Some(email) = queue.recv().await {
                self.spawn_delivery(&mut tasks, email).await;
            }
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("outbox worker stopped");
    }
}

/// The login an email belongs to, for log lines.
fn login_label(email: &ClaimedEmail) -> &str {
    email.login_id.as_ref().map_or("", LoginId::as_str)
}

/// The next handed-over email; never, once there is no queue.
async fn recv(queue: &mut Option<mpsc::Receiver<ClaimedEmail>>) -> Option<ClaimedEmail> {
    match queue {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = OutboxConfig::default();
        let secs: Vec<u64> = (1..=8).map(|a| c.backoff(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
    }
}
