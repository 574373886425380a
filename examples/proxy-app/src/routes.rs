//! The app's routes (the table in README.md is their contract).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use passgate_client::StampedRequest;
use passgate_client::axum::{Auth, LoginError, Membership, OrgAccess, OrgJson, SignedIn};
use passgate_client::types::{LookupFilter, LookupRequest, VerifyOtpRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::pages;

const APP_JS: &str = include_str!("../static/app.js");

/// The router's state: the SDK, and each organization's notes (the
/// example's stand-in for an app's own data; kept in memory).
#[derive(Clone)]
pub struct AppState {
    auth: Auth,
    notes: Arc<Mutex<HashMap<String, Vec<Value>>>>,
}

impl AppState {
    pub fn new(auth: Auth) -> Self {
        Self { auth, notes: Arc::default() }
    }
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Auth {
        state.auth.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login/link", post(login_link))
        .route("/login/link/code", post(login_link_code))
        .route("/auth/callback", get(callback_page).post(callback_submit))
        .route("/login/code", post(login_code))
        .route("/login/code/verify", post(login_code_verify))
        .route("/session/whoami", post(stamped_whoami))
        .route("/dashboard", get(dashboard))
        .route("/onboarding", get(onboarding))
        .route("/api/orgs/{orgId}/data", get(org_data).post(add_org_data))
        .route("/logout", post(logout))
        .route("/sessions/revoke-all", post(revoke_all))
        .route("/sessions/{handle}/revoke", post(revoke_one))
        .route("/static/app.js", get(app_js))
        .with_state(state)
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "targetPublicKey")]
    target_public_key: String,
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct CallbackQuery {
    token: Option<String>,
}

/// A page with a CSRF token: sets the cookie when the browser has none.
fn with_csrf(auth: &Auth, headers: &HeaderMap, render: impl FnOnce(&str) -> Response) -> Response {
    let (token, cookie) = auth.csrf().token(headers);
    let mut response = render(&token);
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie.header_value());
    }
    response
}

/// The sign-in page again, saying why the last attempt failed, with the
/// failure's status.
fn sign_in_refused(auth: &Auth, headers: &HeaderMap, e: &LoginError) -> Response {
    let mut response = with_csrf(auth, headers, |csrf| pages::sign_in(csrf, Some(&e.user_message())));
    *response.status_mut() = e.status();
    response
}

fn store_failure() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the session store is unavailable").into_response()
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.auth.current(&headers).await {
        Ok(Some(_)) => Redirect::to("/dashboard").into_response(),
        Ok(None) => with_csrf(&state.auth, &headers, |csrf| pages::sign_in(csrf, None)),
        Err(_) => store_failure(),
    }
}

async fn login_link(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<EmailForm>,
) -> Response {
    let auth = &state.auth;
    if !auth.csrf().check(&headers, &form.csrf) {
        return with_csrf(auth, &headers, |csrf| pages::sign_in(csrf, Some(&LoginError::Csrf.user_message())));
    }
    match auth.start_link(&headers, Some(peer.ip()), &form.email).await {
        Ok(started) => {
            let mut response = with_csrf(auth, &headers, |csrf| pages::check_email(csrf, &form.email, None));
            response.headers_mut().append(header::SET_COOKIE, started.cookie.header_value());
            response
        }
        Err(e) => sign_in_refused(auth, &headers, &e),
    }
}

async fn login_link_code(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CodeForm>) -> Response {
    match state.auth.link_code_submit(&headers, &form.code, &form.csrf).await {
        Ok(done) => done.redirect(),
        Err(e) => {
            let mut response = with_csrf(&state.auth, &headers, |csrf| {
                pages::check_email(csrf, "your address", Some(&e.user_message()))
            });
            *response.status_mut() = e.status();
            response
        }
    }
}

async fn callback_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    state.auth.callback_page(&headers, query.token.as_deref())
}

async fn callback_submit(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    state.auth.callback_submit(&headers, &form.token, &form.csrf).await
}

async fn login_code(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<EmailForm>,
) -> Response {
    let auth = &state.auth;
    if !auth.csrf().check(&headers, &form.csrf) {
        return with_csrf(auth, &headers, |csrf| pages::sign_in(csrf, Some(&LoginError::Csrf.user_message())));
    }
    let target = Some(form.target_public_key.trim().to_string()).filter(|k| !k.is_empty());
    let with_key = target.is_some();
    match auth.send_code(&headers, Some(peer.ip()), &form.email, target).await {
        Ok(sent) => with_csrf(auth, &headers, |csrf| pages::enter_code(csrf, &form.email, &sent.otp_id, with_key)),
        Err(e) => sign_in_refused(auth, &headers, &e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeVerify {
    #[serde(default)]
    otp_id: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

/// The code page's script posts JSON and gets the `authSession` back;
/// without scripts the form posts and is redirected.
async fn login_code_verify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let parsed: Option<CodeVerify> =
        if json { serde_json::from_slice(&body).ok() } else { serde_urlencoded_form(&body) };
    let Some(form) = parsed else {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": "invalid_request", "detail": "bad form"})))
            .into_response();
    };
    let auth = &state.auth;
    let result = if auth.csrf().check(&headers, &form.csrf) {
        let request = VerifyOtpRequest {
            otp_id: form.otp_id,
            code: form.code,
            target_public_key: None,
            session_expires_in: None,
        };
        auth.verify_code(&headers, &request).await
    } else {
        Err(LoginError::Csrf)
    };
    match (result, json) {
        (Ok((verified, done)), true) => {
            let body = json!({ "landing": done.landing, "user": verified.user, "authSession": verified.auth_session });
            let mut response = Json(body).into_response();
            for cookie in &done.cookies {
                response.headers_mut().append(header::SET_COOKIE, cookie.header_value());
            }
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        (Ok((_, done)), false) => done.redirect(),
        (Err(e), true) => (e.status(), Json(json!({"code": e.code(), "detail": e.user_message()}))).into_response(),
        (Err(e), false) => sign_in_refused(auth, &headers, &e),
    }
}

fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let pairs: serde_json::Map<String, Value> =
        url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect();
    serde_json::from_value(Value::Object(pairs)).ok()
}

/// The browser's stamped `whoami`, passed to passgate byte for byte.
async fn stamped_whoami(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(stamp) = headers.get("x-stamp").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": "stamp_invalid", "detail": "no X-Stamp"})))
            .into_response();
    };
    let request = StampedRequest { stamp: stamp.to_string(), body: body.to_vec() };
    match state.auth.client().session_whoami(&request).await {
        // A stamp of another user's session is not this user's business.
        Ok(whoami) if whoami.user.id == session.user_id => Json(whoami).into_response(),
        Ok(_) => (StatusCode::FORBIDDEN, Json(json!({"code": "forbidden"}))).into_response(),
        Err(e) => {
            let status = e.api().map_or(StatusCode::BAD_GATEWAY, |a| {
                StatusCode::from_u16(a.status()).unwrap_or(StatusCode::BAD_GATEWAY)
            });
            let code = e.api().map_or("passgate_unavailable".to_string(), |a| a.code_str().to_string());
            (status, Json(json!({ "code": code }))).into_response()
        }
    }
}

#[derive(Deserialize)]
struct DashboardQuery {
    org: Option<String>,
}

async fn dashboard(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<DashboardQuery>) -> Response {
    let auth = &state.auth;
    let session = match auth.current(&headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Redirect::to("/").into_response(),
        Err(_) => return store_failure(),
    };
    let Ok(sessions) = auth.sessions().list(&session.user_id).await else { return store_failure() };
    // The list shows the user's organizations (lookup by the signed-in
    // user's own id); opening one goes through the membership check.
    let lookup = LookupRequest { filter_type: LookupFilter::UserId, filter_value: session.user_id.clone() };
    let ids = auth.client().lookup(&lookup).await.map(|l| l.organization_ids).unwrap_or_default();
    let mut organizations = Vec::new();
    for id in &ids {
        if let Ok(org) = auth.client().get_organization(id).await {
            organizations.push(org);
        }
    }
    let chosen = query.org.or_else(|| ids.first().cloned());
    // The chosen organization's membership, from the records just read
    // from passgate (not from the lookup); one not among the user's
    // organizations shows nothing.
    let membership = chosen.as_ref().and_then(|chosen| {
        let organization = organizations.iter().find(|o| &o.id == chosen)?;
        let member = organization.members.iter().find(|m| m.user_id == session.user_id)?;
        Some(Membership { organization_id: organization.id.clone(), role: member.role.clone() })
    });
    let data = membership.as_ref().map(|m| org_json(&state, m));
    with_csrf(auth, &headers, |csrf| {
        pages::dashboard(&pages::Dashboard {
            csrf,
            session: &session,
            sessions: &sessions,
            current_handle: &session.handle,
            organizations: &organizations,
            selected: membership.as_ref().zip(data.as_ref()),
        })
    })
}

async fn onboarding(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.auth.current(&headers).await {
        Ok(Some(session)) => pages::onboarding(&session),
        Ok(None) => Redirect::to("/").into_response(),
        Err(_) => store_failure(),
    }
}

fn org_json(state: &AppState, membership: &Membership) -> Value {
    let notes =
        state.notes.lock().map(|n| n.get(&membership.organization_id).cloned().unwrap_or_default()).unwrap_or_default();
    json!({ "organizationId": membership.organization_id, "role": membership.role, "notes": notes })
}

async fn org_data(State(state): State<AppState>, access: OrgAccess) -> Json<Value> {
    Json(org_json(&state, &access.membership))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    text: String,
    /// Ignored for authorization beyond the guard's check: the guard has
    /// already refused a body that names another organization.
    #[serde(default, rename = "organizationId")]
    _organization_id: Option<String>,
}

async fn add_org_data(State(state): State<AppState>, OrgJson { access, body }: OrgJson<NewNote>) -> Response {
    let text: String = body.text.chars().take(500).collect();
    if let Ok(mut notes) = state.notes.lock() {
        notes
            .entry(access.membership.organization_id.clone())
            .or_default()
            .push(json!({ "text": text, "by": access.session.email }));
    }
    (StatusCode::CREATED, Json(org_json(&state, &access.membership))).into_response()
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    state.auth.logout(&headers, &form.csrf).await
}

async fn revoke_all(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    state.auth.sign_out_everywhere(&headers, &form.csrf).await
}

async fn revoke_one(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(handle): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !state.auth.csrf().check(&headers, &form.csrf) {
        return (StatusCode::FORBIDDEN, "the form has expired").into_response();
    }
    match state.auth.sessions().end_one(&session.user_id, &handle).await {
        Ok(_) => Redirect::to("/dashboard").into_response(),
        Err(_) => store_failure(),
    }
}

async fn app_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], APP_JS)
        .into_response()
}
