//! The application: shared state and the router, built from one list of
//! routes (serving it is `http::serve`).
//!
//! Everything is generic over the [`Store`]: the binary picks the backend
//! once from the database URL and the compiler builds one server per backend,
//! with no backend checks at run time.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{MethodFilter, MethodRouter, get, post};
use passgate_core::Clock;
use passgate_core::secret::ServerSecret;
use passgate_store::Store;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use utoipa::openapi::path::HttpMethod;

use crate::http::serve::ConnectionLimits;
use crate::http::{
    auth, dev, error::ApiError, events, invites, ops, organizations, otp, request_id, session, users, webhooks,
};
use crate::keys::KeyRing;
use crate::mail::outbox::Outbox;
use crate::mail::transport::DevMailbox;
use crate::metrics::{self, Metrics};
use crate::webhooks::WebhookConfig;

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
    /// How long clients may take and how many connections they may hold.
    pub connections: ConnectionLimits,
    /// How webhooks are checked and sent.
    pub webhooks: WebhookConfig,
    /// How long finished work is kept, and how often it is swept.
    pub retention: crate::sweeper::SweepConfig,
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

/// A route of the public API: where it is served, its OpenAPI operation,
/// and the schemas that operation refers to. Made by [`api_routes!`] from
/// the handler's `#[utoipa::path]` annotation, so the router and the
/// document cannot disagree.
#[derive(Clone)]
pub struct RouteDoc {
    pub path: String,
    pub methods: Vec<HttpMethod>,
    pub operation: utoipa::openapi::path::Operation,
    pub schemas: Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
}

impl std::fmt::Debug for RouteDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteDoc").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RouteDoc {
    /// What `#[utoipa::path]` made for a handler. (`__dev` is utoipa's
    /// hidden API for this very purpose, which its derive and utoipa-axum
    /// use; our own macro needs it because `routes!` cannot take handlers
    /// generic over the store.)
    fn of<P>() -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
    {
        let mut schemas = Vec::new();
        P::schemas(&mut schemas);
        let mut operation = P::operation();
        // utoipa-axum's `routes!` does the same: tags given on the handler
        // are the operation's.
        let tags = <P as utoipa::__dev::Tags>::tags();
        if !tags.is_empty() {
            operation.tags.get_or_insert_with(Vec::new).extend(tags.iter().map(ToString::to_string));
        }
        Self { path: P::path(), methods: P::methods(), operation, schemas }
    }
}

impl RouteDoc {
    /// The route's methods as the document names them (`get`, `post`, …).
    pub fn method_names(&self) -> Vec<&'static str> {
        self.methods
            .iter()
            .map(|method| match method {
                HttpMethod::Get => "get",
                HttpMethod::Post => "post",
                HttpMethod::Put => "put",
                HttpMethod::Delete => "delete",
                HttpMethod::Patch => "patch",
                HttpMethod::Head => "head",
                HttpMethod::Options => "options",
                HttpMethod::Trace => "trace",
            })
            .collect()
    }
}

/// The method filter of an OpenAPI method.
fn method_filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

/// Declares the public API once: each entry names a handler annotated
/// with `#[utoipa::path]` (with `<S>` when it is generic over the store).
/// From the one list come [`api_router`] and [`api_docs`].
macro_rules! api_routes {
    ($($module:ident :: $handler:ident $(<$store:ident>)?),* $(,)?) => {
        /// The public API's routes, served from their documented paths.
        fn api_router<S: Store>() -> Router<App<S>> {
            let mut router = Router::new();
            $(
                utoipa_axum::paste! {
                    let doc = RouteDoc::of::<$module::[<__path_ $handler>]>();
                }
                let methods = doc.methods.iter().fold(MethodRouter::new(), |routes, method| {
                    routes.on(method_filter(method), $module::$handler $(::<$store>)?)
                });
                router = router.route(&doc.path, methods);
            )*
            router
        }

        /// The public API's routes as the OpenAPI document describes them.
        pub fn api_docs() -> Vec<RouteDoc> {
            vec![$(utoipa_axum::paste! { RouteDoc::of::<$module::[<__path_ $handler>]>() }),*]
        }
    };
}

api_routes![
    auth::start<S>,
    auth::verify<S>,
    auth::get_login<S>,
    otp::send_otp<S>,
    otp::verify_otp<S>,
    session::whoami<S>,
    session::revoke<S>,
    session::activity<S>,
    invites::create_invite<S>,
    invites::list_invites<S>,
    invites::revoke_invite<S>,
    organizations::create_organization<S>,
    organizations::get_organization<S>,
    organizations::set_member_role<S>,
    organizations::remove_member<S>,
    organizations::lookup<S>,
    users::get_user<S>,
    users::find_users<S>,
    users::delete_user<S>,
    session::revoke_user_sessions<S>,
    events::list_events<S>,
    webhooks::create_webhook<S>,
    webhooks::list_webhooks<S>,
    webhooks::get_webhook<S>,
    webhooks::delete_webhook<S>,
    webhooks::rotate_webhook_secret<S>,
    webhooks::enable_webhook<S>,
    webhooks::list_deliveries<S>,
    webhooks::retry_delivery<S>,
    ops::project<S>,
    ops::jwks<S>,
    ops::healthz,
    ops::readyz<S>,
    ops::openapi,
];

/// The whole HTTP surface: the documented API, and in dev mode the dev pages.
pub fn router<S: Store>(app: App<S>) -> Router {
    let mut router = api_router::<S>()
        // Responses carry JWTs and login state: never cache them anywhere.
        .layer(axum::middleware::from_fn(no_store_under_api));
    let dev = app.dev_mailbox.is_some();
    if dev {
        router = router
            .route("/_dev/mailbox", get(dev::mailbox::<S>))
            .route("/_dev/mailbox/count", get(dev::mailbox_count::<S>))
            .route("/_dev/start", post(dev::start::<S>))
            .route("/_dev/callback", get(dev::callback_page).post(dev::callback_verify::<S>));
    }
    let metrics = app.metrics.clone();
    let mut router = router.fallback(not_found).method_not_allowed_fallback(method_not_allowed);
    if dev {
        router = router.layer(axum::middleware::from_fn(dev::only_loopback_hosts));
    }
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyTimeoutLayer::new(app.connections.body_timeout))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(app)
}

/// `Cache-Control: no-store` on every answer under `/api/`: they carry JWTs
/// and login state (the JWKS and health checks, outside it, may be cached).
async fn no_store_under_api(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let under_api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    if under_api {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
