//! Magic-link login: start, verify, and the state of a login attempt. Each
//! handler parses the request into domain types, calls the login service,
//! and maps the result; see `services::logins` for what happens between.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use passgate_api_types::{
    AcceptedInviteView, EmailDeliveryStatus, EmailDeliveryView, ErrorCode, LoginStatus, LoginStatusResponse, Problem,
    StartLoginRequest, StartLoginResponse, UserView, VerifyLoginRequest, VerifyLoginResponse,
};
use passgate_core::LoginId;
use passgate_core::client::{ClientIp, Locale, LoginState, UserAgent};
use passgate_core::code::LoginCode;
use passgate_core::pkce::{CodeChallenge, CodeVerifier};
use passgate_core::token::LinkToken;
use passgate_store::{EmailStatus, Store};

use super::error::ApiError;
use super::extract::{ApiJson, IdempotencyKey, Project};
use super::inputs;
use crate::app::App;
use crate::services::logins::{self, Proof, StartLogin};

/// Start a magic-link login.
///
/// Checks the address, the `validationUrl` and the project's policy and send
/// limits, then stores the login and queues its email in one transaction.
/// The response is the same whether or not the address has an account.
#[utoipa::path(
    post,
    path = "/api/v2/auth/start",
    tag = "auth",
    request_body = StartLoginRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key: a repeat within 24 h returns the first response and sends nothing")),
    responses(
        (status = 202, description = "Login started; the email is queued", body = StartLoginResponse),
        (status = 400, description = "invalid_request, invalid_email, validation_url_not_allowed", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 403, description = "email_not_allowed", body = Problem),
        (status = 409, description = "idempotency_key_reused", body = Problem),
        (status = 413, description = "payload_too_large", body = Problem),
        (status = 429, description = "rate_limited (with Retry-After)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn start<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<StartLoginRequest>,
) -> Result<Response, ApiError> {
    let idempotency = inputs::idempotency(key, &body)?;
    let email = inputs::email_address(&body.email)?;
    let validation_url = inputs::validation_url(&project, &body.validation_url)?;
    let request = StartLogin {
        email,
        validation_url,
        state: body.state.map(LoginState::parse).transpose().map_err(ApiError::invalid_input)?,
        user_agent: body.user_agent.map(UserAgent::parse).transpose().map_err(ApiError::invalid_input)?,
        code_challenge: body
            .code_challenge
            .as_deref()
            .map(CodeChallenge::parse)
            .transpose()
            .map_err(ApiError::invalid_input)?,
        ip_address: body.ip_address.as_deref().map(ClientIp::parse).transpose().map_err(ApiError::invalid_input)?,
        locale: body.locale.map(Locale::parse).transpose().map_err(ApiError::invalid_input)?,
        include_code: body.include_code.unwrap_or(false),
    };
    Ok(inputs::answered(logins::start(&app, &project, request, idempotency).await?, StatusCode::ACCEPTED))
}

/// Verify a login: with the emailed `token` (and `codeVerifier` if the login
/// has a PKCE challenge), or with `loginId` and the emailed `code`.
///
/// Succeeds exactly once per login.
#[utoipa::path(
    post,
    path = "/api/v2/auth/verify",
    tag = "auth",
    request_body = VerifyLoginRequest,
    responses(
        (status = 200, description = "Verified; the user and a signed JWT", body = VerifyLoginResponse),
        (status = 400, description = "invalid_request, invalid_token_format", body = Problem),
        (status = 401, description = "unauthorized, key_revoked, token_invalid, token_expired (with expiredAt), token_used (with usedAt), token_revoked (a revoked invite), token_burned, code_verifier_mismatch, code_invalid", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn verify<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiJson(body): ApiJson<VerifyLoginRequest>,
) -> Result<Json<VerifyLoginResponse>, ApiError> {
    let code_verifier =
        body.code_verifier.as_deref().map(CodeVerifier::parse).transpose().map_err(ApiError::invalid_input)?;
    let proof = match (body.token, body.login_id, body.code) {
        (Some(token), None, None) => Proof::Token(
            LinkToken::parse(&token).map_err(|e| ApiError::new(ErrorCode::InvalidTokenFormat, e.to_string()))?,
        ),
        (None, Some(login_id), Some(code)) => match LoginId::parse(&login_id) {
            None => Proof::UnknownLogin,
            Some(login_id) => Proof::Code { login_id, code: LoginCode::parse(&code).map_err(ApiError::invalid_input)? },
        },
        _ => {
            return Err(ApiError::invalid_request(
                "send either {\"token\"} or {\"loginId\", \"code\"} (each optionally with codeVerifier)",
            ));
        }
    };
    let verified = logins::verify(&app, &project, proof, code_verifier).await?;
    let user = verified.login.user;
    Ok(Json(VerifyLoginResponse {
        user: UserView {
            id: user.id.into_string(),
            email: user.email,
            created_at: user.created_at.to_rfc3339(),
            is_new_user: verified.login.is_new_user,
        },
        jwt: verified.jwt,
        state: verified.login.state,
        invite: verified.login.invite.map(|invite| AcceptedInviteView {
            id: invite.id.into_string(),
            metadata: invite.metadata.map(|m| m.to_object()).unwrap_or_default(),
            invited_by: invite.invited_by,
        }),
    }))
}

/// The state of one login attempt and its email.
#[utoipa::path(
    get,
    path = "/api/v2/auth/logins/{login_id}",
    tag = "auth",
    params(("login_id" = String, Path, description = "The `lgn_…` id returned by start")),
    responses(
        (status = 200, description = "The login and its email delivery", body = LoginStatusResponse),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found (also for another project's login)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn get_login<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    login_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<LoginStatusResponse>, ApiError> {
    // A path that is not even UTF-8 names no login: our 404, not axum's text/plain 400.
    let Ok(Path(login_id)) = login_id else { return Err(ApiError::not_found()) };
    let login_id = LoginId::parse(&login_id).ok_or_else(ApiError::not_found)?;
    let view = logins::status(&app, &project, &login_id).await?;
    Ok(Json(LoginStatusResponse {
        login_id: view.id.into_string(),
        status: match view.status {
            passgate_core::login::LoginStatus::Pending => LoginStatus::Pending,
            passgate_core::login::LoginStatus::Verified => LoginStatus::Verified,
            passgate_core::login::LoginStatus::Expired => LoginStatus::Expired,
            passgate_core::login::LoginStatus::Burned => LoginStatus::Burned,
        },
        email: EmailDeliveryView {
            status: match view.email.status {
                EmailStatus::Queued => EmailDeliveryStatus::Queued,
                EmailStatus::Sent => EmailDeliveryStatus::Sent,
                EmailStatus::Retrying => EmailDeliveryStatus::Retrying,
                EmailStatus::Failed => EmailDeliveryStatus::Failed,
            },
            attempts: view.email.attempts,
            last_error: view.email.last_error,
        },
        created_at: view.created_at.to_rfc3339(),
        expires_at: view.expires_at.to_rfc3339(),
        verified_at: view.verified_at.map(passgate_core::Timestamp::to_rfc3339),
    }))
}
