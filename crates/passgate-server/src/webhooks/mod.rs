//! Webhooks: the guarded client deliveries go through ([`client`]) and the
//! worker that sends them ([`sender`]). Endpoints and the delivery outbox
//! live in the store; a delivery row is written by the database in the
//! same transaction as its event.

pub mod client;
pub mod sender;

use std::sync::Arc;
use std::time::Duration;

pub use client::{GuardedResolver, NameResolver, SystemResolver};

/// How webhooks are sent.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `PASSGATE_WEBHOOK_ALLOW_PRIVATE`: lifts the address check and the
    /// `https` rule (development only; `passgate dev` sets it).
    pub allow_private: bool,
    /// How long a claim holds before another worker may take a delivery
    /// over (the outbox lease, `PASSGATE_OUTBOX_LEASE`).
    pub lease: Duration,
    /// Longest sleep between looks at the table.
    pub idle_poll: Duration,
    /// Deliveries in flight at once per instance (and claimed at once).
    pub concurrency: u32,
    /// How often the outbox depth gauges are refreshed.
    pub depth_sample: Duration,
    /// The resolver names are looked up with, before the guard checks them.
    pub resolver: Arc<dyn NameResolver>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("allow_private", &self.allow_private)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_secs(1),
            concurrency: 16,
            depth_sample: Duration::from_secs(5),
            resolver: Arc::new(SystemResolver),
        }
    }
}

impl WebhookConfig {
    /// Each call's timeout: 10 s, or half the lease if that is shorter, so
    /// an attempt always ends (and is recorded) while its lease holds.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(10).min(self.lease / 2)
    }

    pub fn guard(&self) -> GuardedResolver {
        GuardedResolver::new(self.resolver.clone(), self.allow_private)
    }
}

/// The largest part of a receiver's answer that is read (the rest is
/// dropped with the connection): a receiver cannot make us buffer more.
pub const RESPONSE_BODY_CAP: usize = 64 * 1024;

/// Endpoints a project may register.
pub const MAX_ENDPOINTS_PER_PROJECT: usize = 20;

/// How long the secret before a rotation keeps signing beside the new one.
pub const PREVIOUS_SECRET_OVERLAP_SECONDS: i64 = 24 * 60 * 60;
