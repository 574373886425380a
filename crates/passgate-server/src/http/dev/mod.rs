//! Dev mode only: the mailbox (`/_dev/mailbox`), a stand-in for an app's
//! callback that finishes sign-ins in the browser (`/_dev/callback`), a form
//! that sends a sign-in email (`/_dev/start`), and the rule that a dev
//! server answers only requests addressed to loopback names. None of these
//! routes exist outside dev mode.
//!
//! They work on the dev project (`prj_dev`) only. Their forms are accepted
//! only from the dev server's own pages (the `Origin` check below), so a web
//! page the developer visits cannot send emails or sign in through them.

mod pages;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use passgate_api_types::ErrorCode;
use passgate_core::ProjectId;
use passgate_core::email::EmailAddress;
use passgate_core::pkce::CodeVerifier;
use passgate_core::redirect::{ValidationUrl, parse_allowed};
use passgate_core::token::LinkToken;
use passgate_store::{Project, Store};

use super::error::ApiError;
use crate::app::App;
use crate::devmode::DEV_PROJECT_ID;
use crate::services::ServiceError;
use crate::services::logins::{self, Proof, StartLogin};
/// Whether a `Host` header names this machine's loopback: `localhost`,
/// `127.0.0.1` or `[::1]`, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map(|(inside, _)| inside),
        None => Some(host.rsplit_once(':').map_or(host, |(name, _)| name)),
    };
    matches!(name.map(str::to_ascii_lowercase).as_deref(), Some("localhost" | "127.0.0.1" | "::1"))
}

/// Middleware of dev mode: a request whose `Host` is not a loopback name is
/// refused (421). A dev server listens on loopback only, but a web page can
/// still reach it through DNS rebinding (a name of the attacker's that
/// resolves to 127.0.0.1) and read live links from the mailbox; such a
/// request carries the attacker's name as its `Host`.
pub async fn only_loopback_hosts(request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if is_loopback_host(host) {
        next.run(request).await
    } else {
        ApiError::new(
            ErrorCode::MisdirectedRequest,
            "a dev server answers only requests for localhost, 127.0.0.1 or [::1]",
        )
        .into_response()
    }
}

/// A dev page: never cached, never referred (it may hold a live link), not
/// framed, and running only the script given (by its nonce).
fn dev_page(status: StatusCode, title: &str, body: &str, script: Option<&str>) -> Response {
    let nonce = passgate_core::random::string_from(passgate_core::random::ALPHANUMERIC, 22);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data: https:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
    );
    let html = pages::page(title, body, script.map(|code| (nonce.as_str(), code)));
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// Whether a form came from the dev server's own pages: its `Origin` is this
/// server (as the `Host` names it), or, from a browser that sends no
/// `Origin`, `Sec-Fetch-Site` says same-origin. A cross-site form post
/// carries the other site's origin; a request with neither is refused.
fn from_own_page(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("http://{host}")),
        (Some(_), None) => false,
        (None, _) => text(header::HeaderName::from_static("sec-fetch-site")) == Some("same-origin"),
    }
}

fn not_from_own_page() -> Response {
    let body = pages::refusal(
        "Refused",
        "this form is accepted only from the dev server's own pages (its Origin must be this server)",
    );
    dev_page(StatusCode::FORBIDDEN, "Refused", &body, None)
}

/// The fields of a form body (`application/x-www-form-urlencoded`).
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(key, _)| key == name).map(|(_, value)| value.trim().to_string())
}

async fn dev_project<S: Store>(app: &App<S>) -> Result<Project, ServiceError> {
    app.store.get_project(&ProjectId::from_trusted(DEV_PROJECT_ID)).await?.ok_or(ServiceError::NotFound)
}

fn callback_url<S: Store>(app: &App<S>) -> String {
    format!("{}/_dev/callback", app.public_url)
}

/// A refusal of the service, shown as the API would have answered it.
fn service_problem(what: &str, error: impl Into<ApiError>) -> Response {
    let (problem, _) = error.into().into_problem();
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    dev_page(status, what, &pages::problem(what, &problem), None)
}

/// `GET /_dev/mailbox`.
pub async fn mailbox<S: Store>(State(app): State<App<S>>) -> Response {
    let Some(mailbox) = app.dev_mailbox.as_ref() else { return ApiError::not_found().into_response() };
    let body = pages::mailbox(&mailbox.list(), mailbox.delivered(), mailbox.started_at(), &callback_url(&app));
    dev_page(StatusCode::OK, "Dev mailbox", &body, Some(pages::MAILBOX_SCRIPT))
}

/// `GET /_dev/mailbox/count`: how many emails arrived since the server
/// started, which the mailbox page polls to say that new ones came.
pub async fn mailbox_count<S: Store>(State(app): State<App<S>>) -> Response {
    let delivered = app.dev_mailbox.as_ref().map_or(0, |m| m.delivered());
    ([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "delivered": delivered }))).into_response()
}

/// `POST /_dev/start` (form: `email`): sends the dev project's sign-in email
/// with the stand-in callback as its `validationUrl`, then shows the mailbox.
pub async fn start<S: Store>(State(app): State<App<S>>, headers: HeaderMap, body: Bytes) -> Response {
    if !from_own_page(&headers) {
        return not_from_own_page();
    }
    let what = "No email sent";
    let email = match EmailAddress::parse(&form_field(&body, "email").unwrap_or_default()) {
        Ok(email) => email,
        Err(e) => return service_problem(what, ApiError::new(ErrorCode::InvalidEmail, e.to_string())),
    };
    let project = match dev_project(&app).await {
        Ok(project) => project,
        Err(e) => return service_problem(what, e),
    };
    let callback = callback_url(&app);
    let validation_url =
        match parse_allowed(&project.settings.redirect_urls).map_err(ApiError::internal).and_then(|allowed| {
            ValidationUrl::check(&callback, &allowed)
                .map_err(|e| ApiError::new(ErrorCode::ValidationUrlNotAllowed, e.to_string()))
        }) {
            Ok(url) => url,
            Err(e) => return service_problem(what, e),
        };
    let request = StartLogin {
        email,
        validation_url,
        state: None,
        code_challenge: None,
        include_code: true,
        ip_address: None,
        user_agent: None,
        locale: None,
    };
    match logins::start(&app, &project, request, None).await {
        Ok(_) => Redirect::to("/_dev/mailbox").into_response(),
        Err(e) => service_problem(what, e),
    }
}

#[derive(serde::Deserialize)]
pub struct CallbackQuery {
    token: Option<String>,
    state: Option<String>,
}

/// `GET /_dev/callback?token=…`: the interstitial. It verifies nothing.
pub async fn callback_page(Query(query): Query<CallbackQuery>) -> Response {
    match query.token.filter(|t| !t.is_empty()) {
        Some(token) => {
            let body = pages::interstitial(&token, query.state.as_deref());
            dev_page(StatusCode::OK, "Finish signing in", &body, None)
        }
        None => {
            let body = pages::refusal("No token", "this link has no token; open the link from an email in the mailbox");
            dev_page(StatusCode::BAD_REQUEST, "No token", &body, None)
        }
    }
}

/// `POST /_dev/callback` (form: `token`, optional `code_verifier`): verifies
/// the link for the dev project, as an app's callback would, and shows the
/// user and the JWT.
pub async fn callback_verify<S: Store>(State(app): State<App<S>>, headers: HeaderMap, body: Bytes) -> Response {
    if !from_own_page(&headers) {
        return not_from_own_page();
    }
    let what = "Not signed in";
    let token = match LinkToken::parse(&form_field(&body, "token").unwrap_or_default()) {
        Ok(token) => token,
        Err(e) => return service_problem(what, ApiError::new(ErrorCode::InvalidTokenFormat, e.to_string())),
    };
    let verifier = match form_field(&body, "code_verifier").filter(|v| !v.is_empty()).map(|v| CodeVerifier::parse(&v)) {
        None => None,
        Some(Ok(verifier)) => Some(verifier),
        Some(Err(e)) => return service_problem(what, ApiError::invalid_input(e)),
    };
    let project = match dev_project(&app).await {
        Ok(project) => project,
        Err(e) => return service_problem(what, e),
    };
    match logins::verify(&app, &project, Proof::Token(token), verifier).await {
        Ok(verified) => {
            let user = &verified.login.user;
            let body = pages::signed_in(
                &user.email,
                user.id.as_str(),
                verified.login.is_new_user,
                verified.login.state.as_deref(),
                &verified.jwt,
                &format!("{}/.well-known/jwks.json", app.public_url),
            );
            dev_page(StatusCode::OK, "Signed in", &body, None)
        }
        Err(e) => service_problem(what, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_local() {
        for local in
            ["localhost", "localhost:8080", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:8080"]
        {
            assert!(is_loopback_host(local), "{local}");
        }
        for other in
            ["", "evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.2:8080", "[::2]:80", "::1"]
        {
            assert!(!is_loopback_host(other), "{other}");
        }
    }

    #[test]
    fn forms_are_accepted_only_from_the_dev_servers_own_pages() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")));
            }
            map
        };
        assert!(from_own_page(&headers(&[("host", "localhost:8080"), ("origin", "http://localhost:8080")])));
        assert!(from_own_page(&headers(&[("host", "localhost:8080"), ("sec-fetch-site", "same-origin")])));
        for refused in [
            headers(&[("host", "localhost:8080"), ("origin", "http://evil.example")]),
            headers(&[("host", "localhost:8080"), ("origin", "http://localhost:3000")]),
            headers(&[("host", "localhost:8080"), ("origin", "null")]),
            headers(&[("host", "localhost:8080"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "localhost:8080")]),
        ] {
            assert!(!from_own_page(&refused), "{refused:?}");
        }
    }
}
