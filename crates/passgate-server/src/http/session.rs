//! Client-signed session requests: `/api/v2/session/{whoami,revoke,activity}`,
//! authenticated by an `X-Stamp` header over the exact body (never by the
//! secret key), and `POST /api/v2/users/{id}/sessions/revoke` for an app's
//! backend. See `services::sessions` and `passgate_core::stamp`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use passgate_api_types::{
    ActivityEvent, ActivityResponse, Problem, RevokedSessionResponse, RevokedSessionsResponse, StampedBody, UserRecord,
    WhoamiResponse,
};
use passgate_core::UserId;
use passgate_store::Store;

use super::error::ApiError;
use super::extract::{JsonBytes, Project, path_id};
use crate::app::App;
use crate::services::sessions::{self, Authenticated};

/// The header a stamp comes in (Turnkey's stamper names it so).
pub const STAMP_HEADER: &str = "x-stamp";

async fn authenticated<S: Store>(
    app: &App<S>,
    headers: &HeaderMap,
    body: &[u8],
    action: &str,
) -> Result<Authenticated, ApiError> {
    let stamp = headers.get(STAMP_HEADER).map(|v| v.as_bytes());
    Ok(sessions::authenticate(app, stamp, body, action).await?)
}

/// Who the session key belongs to.
#[utoipa::path(
    post,
    path = "/api/v2/session/whoami",
    tag = "session",
    request_body(content = StampedBody, description = "Signed with the session key; `action` is `whoami`"),
    params(("X-Stamp" = String, Header, description = "base64url(JSON {publicKey, scheme, signature}) over the exact body")),
    responses(
        (status = 200, description = "The session's user, its expiry and the user's organizations", body = WhoamiResponse),
        (status = 401, description = "stamp_invalid, stamp_replayed, session_invalid", body = Problem),
    )
)]
pub async fn whoami<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Json<WhoamiResponse>, ApiError> {
    let Authenticated { session, .. } = authenticated(&app, &headers, &body, "whoami").await?;
    let organization_ids = sessions::organizations(&app, &session).await?;
    Ok(Json(WhoamiResponse {
        session_id: session.id.to_string(),
        expires_at: session.expires_at.to_rfc3339(),
        organization_ids: organization_ids.into_iter().map(|id| id.into_string()).collect(),
        user: UserRecord {
            id: session.user.id.into_string(),
            email: session.user.email,
            created_at: session.user.created_at.to_rfc3339(),
        },
    }))
}

/// Revoke the session key that signed this request.
#[utoipa::path(
    post,
    path = "/api/v2/session/revoke",
    tag = "session",
    request_body(content = StampedBody, description = "Signed with the session key; `action` is `revoke`"),
    params(("X-Stamp" = String, Header, description = "base64url(JSON {publicKey, scheme, signature}) over the exact body")),
    responses(
        (status = 200, description = "Revoked: the next stamp with this key is session_invalid", body = RevokedSessionResponse),
        (status = 401, description = "stamp_invalid, stamp_replayed, session_invalid", body = Problem),
    )
)]
pub async fn revoke<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Json<RevokedSessionResponse>, ApiError> {
    let Authenticated { session, .. } = authenticated(&app, &headers, &body, "revoke").await?;
    let revoked = sessions::revoke(&app, &session).await?;
    Ok(Json(RevokedSessionResponse { session_id: session.id.into_string(), revoked }))
}

/// The session's user's recent sign-in activity, newest first (at most 50).
#[utoipa::path(
    post,
    path = "/api/v2/session/activity",
    tag = "session",
    request_body(content = StampedBody, description = "Signed with the session key; `action` is `activity`"),
    params(("X-Stamp" = String, Header, description = "base64url(JSON {publicKey, scheme, signature}) over the exact body")),
    responses(
        (status = 200, description = "Sign-ins and session keys of the user", body = ActivityResponse),
        (status = 401, description = "stamp_invalid, stamp_replayed, session_invalid", body = Problem),
    )
)]
pub async fn activity<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Json<ActivityResponse>, ApiError> {
    let Authenticated { session, .. } = authenticated(&app, &headers, &body, "activity").await?;
    let events = sessions::activity(&app, &session).await?;
    Ok(Json(ActivityResponse {
        events: events
            .into_iter()
            .map(|e| ActivityEvent {
                kind: e.kind.as_str().to_string(),
                timestamp: e.created_at.to_rfc3339(),
                session_id: e.session_id.map(|id| id.into_string()),
                ip_address: e.ip_address,
                user_agent: e.user_agent,
            })
            .collect(),
    }))
}

/// Revoke every session key of a user ("sign out everywhere").
#[utoipa::path(
    post,
    path = "/api/v2/users/{user_id}/sessions/revoke",
    tag = "users",
    params(("user_id" = String, Path, description = "A `usr_…` id")),
    responses(
        (status = 200, description = "How many live session keys were revoked", body = RevokedSessionsResponse),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found (also for another project's user)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn revoke_user_sessions<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Json<RevokedSessionsResponse>, ApiError> {
    let Ok(Path(user_id)) = user_id else { return Err(ApiError::not_found()) };
    let id = path_id(&user_id, UserId::parse)?;
    let revoked = sessions::revoke_all(&app, &project, &id).await?;
    Ok(Json(RevokedSessionsResponse { revoked }))
}
