//! Users: find one by id or address, erase one.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use passgate_api_types::{Problem, UserList, UserQuery, UserRecord};
use passgate_core::UserId;
use passgate_store::{Store, User};

use super::error::ApiError;
use super::extract::{ApiQuery, Project, path_id};
use super::inputs;
use crate::app::App;
use crate::services::users;

fn user_record(user: User) -> UserRecord {
    UserRecord { id: user.id.into_string(), email: user.email, created_at: user.created_at.to_rfc3339() }
}

/// A user of the project.
#[utoipa::path(
    get,
    path = "/api/v2/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "A `usr_…` id")),
    responses(
        (status = 200, description = "The user", body = UserRecord),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found (also for another project's user)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn get_user<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Json<UserRecord>, ApiError> {
    let Ok(Path(user_id)) = user_id else { return Err(ApiError::not_found()) };
    let id = path_id(&user_id, UserId::parse)?;
    Ok(Json(user_record(users::get(&app, &project, &id).await?)))
}

/// The user with an address (normalised like a start's), if any.
#[utoipa::path(
    get,
    path = "/api/v2/users",
    tag = "users",
    params(UserQuery),
    responses(
        (status = 200, description = "The matching user, or none", body = UserList),
        (status = 400, description = "invalid_request (no email parameter), invalid_email", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn find_users<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Json<UserList>, ApiError> {
    let email = inputs::email_address(&query.email)?;
    let found = users::find(&app, &project, &email).await?;
    Ok(Json(UserList { users: found.into_iter().map(user_record).collect() }))
}

/// Erase a user.
///
/// In one transaction: the user, their memberships, every link, code and
/// invite to their address (pending ones then answer `token_invalid`) and
/// its emails; their events keep no email, IP address or user agent.
/// Recorded as `user.deleted`. The address can sign in again, as a new user.
#[utoipa::path(
    delete,
    path = "/api/v2/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "A `usr_…` id")),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found (also for another project's user)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn delete_user<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path(user_id)) = user_id else { return Err(ApiError::not_found()) };
    let id = path_id(&user_id, UserId::parse)?;
    users::erase(&app, &project, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
