//! A webhook receiver on loopback for the tests: records every request it
//! gets (headers and body) and answers with the status it is told to, or
//! never answers at all ("hang").

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::future::BoxFuture;
use passgate_server::webhooks::NameResolver;
use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Checks the signature with the `standardwebhooks` crate, an
    /// implementation of the specification that is not ours.
    pub fn verifies_with(&self, secret: &str) -> bool {
        let Ok(webhook) = standardwebhooks::Webhook::new(secret) else { return false };
        let mut headers = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            if let Ok(value) = http::HeaderValue::from_str(self.header(name)) {
                headers.insert(name, value);
            }
        }
        webhook.verify(&self.body, &headers).is_ok()
    }
}

/// Never answer: the sender waits until its timeout (or is killed).
pub const HANG: u16 = 0;

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    /// Sent as `Location` with every answer (for redirects).
    location: Arc<Mutex<Option<String>>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    shared.received.lock().unwrap_or_else(|e| e.into_inner()).push(Received { headers, body });
    let status = match shared.status.load(Ordering::SeqCst) {
        HANG => futures::future::pending().await,
        code => StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
    };
    let location = shared.location.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match location {
        Some(to) => (status, [(axum::http::header::LOCATION, to)]).into_response(),
        None => status.into_response(),
    }
}

impl Receiver {
    /// Listens on 127.0.0.1, answering `status` (or [`HANG`]).
    pub async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let shared =
            Shared { received: Arc::default(), status: Arc::new(AtomicU16::new(status)), location: Arc::default() };
        let app = axum::Router::new().fallback(receive).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/passgate", self.addr)
    }

    /// Answers `status` with a `Location` header (a redirect).
    pub fn redirect(&self, status: u16, to: &str) {
        *self.shared.location.lock().unwrap_or_else(|e| e.into_inner()) = Some(to.to_string());
        self.answer(status);
    }

    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `count` requests arrived; returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..400 {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the receiver got {} requests, expected {count}", self.received().len());
    }
}

/// A resolver that answers what the test says, and can change its mind
/// (DNS rebinding).
#[derive(Clone, Default)]
pub struct ScriptedDns(Arc<Mutex<HashMap<String, Vec<IpAddr>>>>);

impl ScriptedDns {
    pub fn answer(&self, host: &str, addresses: &[&str]) {
        let parsed = addresses.iter().map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}"))).collect();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(host.to_string(), parsed);
    }
}

impl NameResolver for ScriptedDns {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let found = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(host).cloned();
        Box::pin(async move {
            let addresses = found.ok_or_else(|| std::io::Error::other("no such host"))?;
            Ok(addresses.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
        })
    }
}
