//! `X-Request-Id`: every request gets one (`req_…`), every response carries
//! it, every log line of the request is in its span, and problem documents
//! quote it. A well-formed id sent by a client or proxy (at most 64 of
//! `[A-Za-z0-9_-]`) is kept as it is, so logs can be joined across hops;
//! anything else is replaced (no log injection). A kept id is the client's
//! word, not ours: docs/security.md says what that means for reading logs.
//! Nothing else a client sends reaches the request's log line but the
//! method's closed label and the matched route's template.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use passgate_core::ids::IdKind;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, for error documents.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "req_unknown".to_string())
}

fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Middleware: assigns the id, logs one line per request (method, route,
/// status, duration — never the query string or headers), sets the header.
pub async fn layer(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| IdKind::Request.generate(), str::to_string);
    // Closed sets only: a method a client invented logs as `other`.
    let method = crate::metrics::method_label(request.method());
    // The matched route template (`/api/v2/auth/logins/{login_id}`), not the
    // raw path, keeps ids and anything a caller stuffed into a path out of logs.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
