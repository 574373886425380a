//! The in-process tier: the real router (real handlers, extractors and
//! middleware) over a real database, called with tower's `oneshot` instead
//! of over a socket. For fast HTTP-level tests of what a response looks
//! like; anything that needs mail to flow uses [`super::TestServer`].

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use passgate_core::secret::ServerSecret;
use passgate_core::{ManualClock, ProjectId};
use passgate_server::mail::outbox::OutboxConfig;
use passgate_server::mail::templates::Templates;
use passgate_server::mail::transport::Mailer;
use passgate_server::server::{Parts, assemble};
use serde_json::Value;
use tower::ServiceExt;

use super::{Reply, SECRET_B64, T0, TestDb, TestStore, default_settings, new_project, open_store};

/// A router with one project, and the key of that project.
pub struct InProcess {
    pub router: axum::Router,
    pub key: String,
    _db: TestDb,
}

impl InProcess {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let store = open_store(&db).await;
        let clock = ManualClock::new(T0);
        // Nothing is sent: the outbox worker does not run in this tier, so
        // the relay is never dialled.
        let relay = secrecy::SecretString::from("smtp://127.0.0.1:9".to_string());
        let from = "Acme <no-reply@acme.example>".parse().unwrap_or_else(|e| panic!("{e:?}"));
        let parts = Parts {
            clock: Arc::new(clock.clone()),
            secret: Arc::new(ServerSecret::from_base64(SECRET_B64, None).unwrap_or_else(|e| panic!("{e}"))),
            public_url: "http://passgate.test".to_string(),
            templates: Arc::new(Templates::load(None).unwrap_or_else(|e| panic!("{e}"))),
            mailer: Mailer::new(Some(&relay), None, from, None).unwrap_or_else(|e| panic!("{e}")),
            outbox: OutboxConfig::default(),
            key_refresh: std::time::Duration::ZERO,
            connections: passgate_server::http::serve::ConnectionLimits::default(),
            webhooks: passgate_server::webhooks::WebhookConfig::default(),
            retention: passgate_server::sweeper::SweepConfig::default(),
        };
        let router = match &store {
            TestStore::Sqlite(s) => {
                passgate_server::app::router(assemble(s.clone(), parts).await.unwrap_or_else(|e| panic!("{e}")))
            }
            TestStore::Postgres(s) => {
                passgate_server::app::router(assemble(s.clone(), parts).await.unwrap_or_else(|e| panic!("{e}")))
            }
        };
        let key = new_project(&store, &ProjectId::generate(), default_settings()).await;
        Self { router, key, _db: db }
    }

    /// Sends one request through the router: `body`, if any, as JSON; the
    /// project's key unless `authorized` is false.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, authorized: bool) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if authorized {
            request = request.header("authorization", format!("Bearer {}", self.key));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(serde_json::to_vec(json).unwrap_or_else(|e| panic!("{e}")))
            }
            None => Body::empty(),
        };
        let request = request.body(body).unwrap_or_else(|e| panic!("{e}"));
        let response = self.router.clone().oneshot(request).await.unwrap_or_else(|e| match e {});
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }
}
