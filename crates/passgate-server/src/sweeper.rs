//! The retention sweeper: on every instance, every `PASSGATE_SWEEP_INTERVAL`,
//! removes what is past its horizon (see `passgate_store::retention`), a
//! small batch per transaction, until a batch comes back short. Several
//! instances sweeping one PostgreSQL share the work without waiting for
//! each other.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use passgate_core::Clock;
use passgate_core::limits::IDEMPOTENCY_WINDOW_SECONDS;
use passgate_store::{Store, StoreError, Sweep, SweepKind};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How long finished work is kept, and how often it is swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepConfig {
    /// `PASSGATE_RETAIN_LOGINS`: links, codes and session keys, after their
    /// expiry (a used link answers `token_used` that long).
    pub retain_logins: Duration,
    /// `PASSGATE_RETAIN_EMAILS`: sent and failed emails and webhook
    /// deliveries, after they settled.
    pub retain_emails: Duration,
    /// `PASSGATE_SWEEP_INTERVAL`.
    pub interval: Duration,
    /// Rows per transaction.
    pub batch: u32,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            retain_logins: Duration::from_secs(7 * 24 * 3600),
            retain_emails: Duration::from_secs(7 * 24 * 3600),
            interval: Duration::from_secs(60),
            batch: 500,
        }
    }
}

/// Kinds swept at once (each holds one connection while it runs).
const SWEEP_LANES: usize = 3;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub struct Sweeper<S: Store> {
    store: S,
    clock: Arc<dyn Clock>,
    config: SweepConfig,
    metrics: Arc<Metrics>,
}

impl<S: Store> std::fmt::Debug for Sweeper<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<S: Store> Sweeper<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, config: SweepConfig, metrics: Arc<Metrics>) -> Self {
        Self { store, clock, config, metrics }
    }

    /// Sweeps every interval until `shutdown` says stop.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "retention sweep stopped short; it goes on at the next interval");
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One pass over every kind, each until a batch comes back short;
    /// returns the rows removed. Kinds are swept side by side, a few at a
    /// time: one kind with a long backlog (events, three to a login) must
    /// not hold the others back until the next pass, and a few lanes keep
    /// most of the pool's connections for the hot path.
    pub async fn sweep_once(&self) -> Result<u64, StoreError> {
        let started = self.clock.now();
        let mut passes =
            futures::stream::iter(SweepKind::ALL).map(|kind| self.sweep_kind(kind)).buffer_unordered(SWEEP_LANES);
        let (mut total, mut failure) = (0, None);
        while let Some(result) = passes.next().await {
            match result {
                Ok(removed) => total += removed,
                // The other kinds go on; the first failure is reported.
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        drop(passes);
        if let Some(e) = failure {
            return Err(e);
        }
        // Files back within bounds (SQLite's WAL); a pass that could not
        // finish it leaves it to the next.
        if !self.store.compact().await? {
            tracing::debug!("the WAL checkpoint waited out its readers; the next sweep tries again");
        }
        self.metrics.sweep_finished(started);
        if total > 0 {
            tracing::debug!(removed = total, "retention sweep");
        }
        Ok(total)
    }

    /// Sweeps one kind until a batch comes back short.
    async fn sweep_kind(&self, kind: SweepKind) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let horizon = match kind {
            SweepKind::Logins | SweepKind::OtpCodes | SweepKind::Sessions => {
                now.plus_millis(-millis(self.config.retain_logins))
            }
            SweepKind::Emails | SweepKind::WebhookDeliveries => now.plus_millis(-millis(self.config.retain_emails)),
            SweepKind::IdempotencyKeys => now.plus_seconds(-IDEMPOTENCY_WINDOW_SECONDS),
            // The current minute and the one before are still counted.
            SweepKind::SendCounts => now.plus_seconds(-60),
            SweepKind::StampReplays | SweepKind::Events => now,
        };
        let mut total = 0;
        loop {
            let removed = self.store.sweep(Sweep { kind, horizon, batch: self.config.batch }).await?;
            self.metrics.swept(kind, removed);
            total += removed;
            if removed < u64::from(self.config.batch) {
                return Ok(total);
            }
            // Let the hot path in between batches.
            tokio::task::yield_now().await;
        }
    }
}
