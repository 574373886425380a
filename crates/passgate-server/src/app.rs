//! The application: shared state, the router, and serving it on a
//! pre-bound listener with graceful shutdown.
//!
//! Everything is generic over the [`Store`]: the binary picks the backend
//! once from the database URL and the compiler builds one server per backend,
//! with no backend checks at run time.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use passgate_core::Clock;
use passgate_core::secret::ServerSecret;
use passgate_store::Store;
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::http::{auth, dev, error::ApiError, ops, request_id};
use crate::keys::KeyRing;
use crate::mail::outbox::Outbox;
use crate::mail::transport::DevMailbox;
use crate::metrics::{self, Metrics};

/// Largest request body accepted (64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState<S: Store> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub secret: Arc<ServerSecret>,
    pub keys: KeyRing,
    /// JWT `iss`.
    pub public_url: String,
    pub outbox: Outbox<S>,
    /// Present only in dev mode.
    pub dev_mailbox: Option<DevMailbox>,
    /// Served on the metrics listener, never on the public one.
    pub metrics: Arc<Metrics>,
}

impl<S: Store> std::fmt::Debug for AppState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("public_url", &self.public_url).finish_non_exhaustive()
    }
}

pub type App<S> = Arc<AppState<S>>;

async fn not_found() -> ApiError {
    ApiError::new(passgate_api_types::ErrorCode::NotFound, "no such endpoint; see /api/v2/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(passgate_api_types::ErrorCode::MethodNotAllowed, "this endpoint does not accept that method")
}

/// The whole HTTP surface.
pub fn router<S: Store>(app: App<S>) -> Router {
    let api = Router::new()
        .route("/api/v2/auth/start", post(auth::start::<S>))
        .route("/api/v2/auth/verify", post(auth::verify::<S>))
        .route("/api/v2/auth/logins/{login_id}", get(auth::get_login::<S>))
        .route("/api/v2/openapi.json", get(ops::openapi))
        // Responses carry JWTs and login state: never cache them anywhere.
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    let mut router = Router::new()
        .merge(api)
        .route("/.well-known/jwks.json", get(ops::jwks::<S>))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz::<S>));
    if app.dev_mailbox.is_some() {
        router = router.route("/_dev/mailbox", get(dev::mailbox::<S>));
    }
    let metrics = app.metrics.clone();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(app)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
