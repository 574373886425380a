//! Email one-time codes: send and verify. Each handler parses the request
//! into domain types, calls the OTP service, and maps the result; see
//! `services::otp` for what happens between.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use passgate_api_types::{Problem, SendOtpRequest, SendOtpResponse, UserView, VerifyOtpRequest, VerifyOtpResponse};
use passgate_core::OtpId;
use passgate_core::client::{ClientIp, UserAgent};
use passgate_core::credential::TargetPublicKey;
use passgate_core::limits::session_ttl;
use passgate_core::otp::{CodeShape, OtpCode, app_name, otp_ttl};
use passgate_store::Store;

use super::error::ApiError;
use super::extract::{ApiJson, IdempotencyKey, Project};
use super::inputs;
use crate::app::App;
use crate::services::otp::{self, SendOtp, VerifyCode};

fn target_key(text: Option<&str>) -> Result<Option<TargetPublicKey>, ApiError> {
    text.map(TargetPublicKey::parse_hex).transpose().map_err(ApiError::invalid_input)
}

/// Email a one-time code.
///
/// Checks the address and the project's policy, the address's code block
/// and the send limits (3 sends per address per 3 minutes, 3 live codes per
/// address, the project's emails per minute), then stores the code (only
/// its keyed hash) and queues its email in one transaction. The response is
/// the same whether or not the address has an account.
#[utoipa::path(
    post,
    path = "/api/v2/otp/send",
    tag = "otp",
    request_body = SendOtpRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key: a repeat within 24 h returns the first response and sends nothing")),
    responses(
        (status = 202, description = "Code sent; the email is queued", body = SendOtpResponse),
        (status = 400, description = "invalid_request (otpLength, expiresIn, appName, targetPublicKey), invalid_email", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 403, description = "email_not_allowed", body = Problem),
        (status = 409, description = "idempotency_key_reused", body = Problem),
        (status = 429, description = "rate_limited (with Retry-After): too many sends or live codes for the address, the project's emails per minute, or the address is blocked after 10 wrong codes in a row", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn send_otp<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<SendOtpRequest>,
) -> Result<Response, ApiError> {
    let idempotency = inputs::idempotency(key, &body)?;
    let request = SendOtp {
        email: inputs::email_address(&body.email)?,
        shape: CodeShape::new(body.otp_length, body.alphanumeric.unwrap_or(false)).map_err(ApiError::invalid_input)?,
        ttl_seconds: otp_ttl(body.expires_in).map_err(ApiError::invalid_input)?,
        app_name: body.app_name.as_deref().map(app_name).transpose().map_err(ApiError::invalid_input)?,
        target_public_key: target_key(body.target_public_key.as_deref())?,
        ip_address: body.ip_address.as_deref().map(ClientIp::parse).transpose().map_err(ApiError::invalid_input)?,
        user_agent: body.user_agent.map(UserAgent::parse).transpose().map_err(ApiError::invalid_input)?,
    };
    Ok(inputs::answered(otp::send(&app, &project, request, idempotency).await?, StatusCode::ACCEPTED))
}

/// Verify a one-time code, once.
///
/// With a `targetPublicKey` (given here or at send; both must then be the
/// same key), the response carries `authSession`: a fresh P-256 session key
/// registered for the user, its private half sealed to the target key in
/// Turnkey's credential-bundle format.
#[utoipa::path(
    post,
    path = "/api/v2/otp/verify",
    tag = "otp",
    request_body = VerifyOtpRequest,
    responses(
        (status = 200, description = "Verified; the user, a signed JWT and, with a target key, the session credential", body = VerifyOtpResponse),
        (status = 400, description = "invalid_request (code format, targetPublicKey, sessionExpiresIn), target_public_key_mismatch", body = Problem),
        (status = 401, description = "unauthorized, key_revoked, otp_invalid, otp_expired, otp_used, otp_locked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn verify_otp<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiJson(body): ApiJson<VerifyOtpRequest>,
) -> Result<Json<VerifyOtpResponse>, ApiError> {
    let request = VerifyCode {
        otp_id: OtpId::parse(&body.otp_id),
        code: OtpCode::parse(&body.code).map_err(ApiError::invalid_input)?,
        target_public_key: target_key(body.target_public_key.as_deref())?,
        session_ttl_seconds: session_ttl(body.session_expires_in)
            .ok_or_else(|| ApiError::invalid_request("sessionExpiresIn must be 60 to 86400 seconds"))?,
    };
    let verified = otp::verify(&app, &project, request).await?;
    Ok(Json(VerifyOtpResponse {
        user: UserView {
            id: verified.user.id.into_string(),
            email: verified.user.email,
            created_at: verified.user.created_at.to_rfc3339(),
            is_new_user: verified.is_new_user,
        },
        jwt: verified.jwt,
        auth_session: verified.auth_session,
    }))
}
