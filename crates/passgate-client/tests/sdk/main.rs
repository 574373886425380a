//! The SDK's integration tests: its client against a real `passgate dev`
//! (real SQLite, emails over real SMTP to a sink), its transport rules
//! against failing HTTP servers, and its session stores on real SQLite and
//! PostgreSQL.

mod api;
mod stores;
mod transport;

use passgate_client::{Client, SecretKey};
use passgate_testkit::DevPassgate;
use passgate_testkit::smtp::SmtpSink;

/// A `passgate dev` with its sink, and a client with its key.
pub struct World {
    pub sink: SmtpSink,
    pub passgate: DevPassgate,
    pub client: Client,
}

impl World {
    pub async fn start() -> Self {
        let sink = SmtpSink::start().await;
        let passgate = DevPassgate::start(&sink.url()).await;
        let client =
            Client::new(&passgate.base, SecretKey::new(passgate.key.clone())).unwrap_or_else(|e| panic!("{e}"));
        Self { sink, passgate, client }
    }
}

pub fn address(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{name}-{}-{}@example.com", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

pub const CALLBACK: &str = "http://localhost:3000/auth/callback";
