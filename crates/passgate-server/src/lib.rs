//! The passgate server: HTTP API (axum), email outbox worker, configuration
//! and the operator CLI behind the `passgate` binary.
//!
//! Layout: [`config`] turns files and environment into checked settings;
//! [`server`] assembles and runs a server; [`app`] is the router, built
//! from one list of routes; [`http`] holds the thin handlers, extractors and
//! the error type; [`services`] the orchestration of each area between
//! handlers and the store; [`mail`] the outbox,
//! templates and SMTP; [`keys`] the JWT signing key ring; [`cli`] the
//! operator commands; [`devmode`] what `passgate dev` adds; [`metrics`] the
//! Prometheus counters served on their own listener.

pub mod app;
pub mod cli;
pub mod config;
pub mod devmode;
pub mod http;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod server;
pub mod services;
pub mod sweeper;
pub mod telemetry;
pub mod webhooks;

use passgate_core::{Clock, Timestamp};

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }
}
