//! Magic-link login: start, verify, and the state of a login attempt.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use passgate_api_types::{
    EmailDeliveryView, ErrorCode, LoginStatusResponse, Problem, StartLoginRequest, StartLoginResponse, UserView,
    VerifyLoginRequest, VerifyLoginResponse,
};
use passgate_core::code::LoginCode;
use passgate_core::email::EmailAddress;
use passgate_core::ids::IdKind;
use passgate_core::jwt::LoginClaims;
use passgate_core::limits::*;
use passgate_core::pkce::{CodeChallenge, CodeVerifier};
use passgate_core::policy::EmailPolicy;
use passgate_core::redirect::{ValidationUrl, parse_allowed};
use passgate_core::secret::Purpose;
use passgate_core::token::LinkToken;
use passgate_store::{
    ClaimedEmail, IdempotencyClaim, NewLogin, SendLimits, StartOutcome, Store, VerifiedLogin, VerifyByCode,
    VerifyByToken, VerifyOutcome,
};

use super::error::ApiError;
use super::extract::{ApiJson, Project};
use crate::app::App;
use crate::mail::EmailPayload;

const MAX_USER_AGENT_LEN: usize = 512;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

fn optional_text(value: Option<String>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(ApiError::invalid_request(format!("{field} is longer than {max} characters")))
        }
        Some(v) if v.chars().any(char::is_control) => {
            Err(ApiError::invalid_request(format!("{field} contains control characters")))
        }
        other => Ok(other),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| ApiError::invalid_request("Idempotency-Key must be 1-255 visible ASCII characters"))?;
    Ok(Some(key.to_string()))
}

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
    headers: HeaderMap,
    ApiJson(body): ApiJson<StartLoginRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    // Fingerprint of the request as parsed, so whitespace does not matter.
    let fingerprint = passgate_core::sha256(&serde_json::to_vec(&body).unwrap_or_default());

    let email = EmailAddress::parse(&body.email).map_err(|e| ApiError::new(ErrorCode::InvalidEmail, e.to_string()))?;
    let allowed = parse_allowed(&project.settings.redirect_urls).map_err(ApiError::internal)?;
    let validation_url = ValidationUrl::check(&body.validation_url, &allowed)
        .map_err(|e| ApiError::new(ErrorCode::ValidationUrlNotAllowed, e.to_string()))?;
    let state = optional_text(body.state, "state", MAX_STATE_LEN)?;
    let user_agent = optional_text(body.user_agent, "userAgent", MAX_USER_AGENT_LEN)?;
    let code_challenge = body
        .code_challenge
        .as_deref()
        .map(CodeChallenge::parse)
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let ip_address = body
        .ip_address
        .as_deref()
        .map(|ip| ip.trim().parse::<IpAddr>().map(|ip| ip.to_string()))
        .transpose()
        .map_err(|_| ApiError::invalid_request("ipAddress is not an IPv4 or IPv6 address"))?;
    let locale = match body.locale {
        Some(l) if l.is_empty() || l.len() > 35 || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            return Err(ApiError::invalid_request("locale must be a BCP 47 tag such as en or pt-BR"));
        }
        other => other,
    };
    let policy = EmailPolicy {
        allowed_domains: project.settings.allowed_domains.clone(),
        allowed_emails: project.settings.allowed_emails.clone(),
    };
    if !policy.allows(&email) {
        return Err(ApiError::new(
            ErrorCode::EmailNotAllowed,
            "this project does not accept sign-ins from this address",
        ));
    }

    let now = app.clock.now();
    let ttl = project.settings.link_ttl_seconds;
    let expires_at = now.plus_seconds(ttl);
    let login_id = IdKind::Login.generate();
    let token = LinkToken::generate();
    let code = body.include_code.unwrap_or(false).then(LoginCode::generate);
    let payload = EmailPayload {
        template: "login".to_string(),
        project_id: project.id.clone(),
        to: email.to_string(),
        app_name: project.app_name().to_string(),
        link: validation_url.link_with_token(token.expose()),
        code: code.as_ref().map(|c| c.expose().to_string()),
        expires_minutes: (ttl + 59) / 60,
        locale,
    };
    let response = StartLoginResponse { login_id: login_id.clone(), expires_at: expires_at.to_rfc3339() };
    let response_body = serde_json::to_string(&response).unwrap_or_default();
    let email_id = IdKind::Email.generate();
    let email_payload_sealed = payload.seal(&app.secret);
    // If the worker can take the email straight away: its place, and what it needs to send it.
    let handoff = app.outbox.reserve().map(|place| {
        let email = ClaimedEmail {
            id: email_id.clone(),
            project_id: project.id.clone(),
            login_id: Some(login_id.clone()),
            recipient: email.to_string(),
            payload_sealed: email_payload_sealed.clone(),
            attempts: 0,
        };
        (place, email)
    });
    let login = NewLogin {
        id: login_id,
        project_id: project.id.clone(),
        email: email.into_string(),
        token_hash: token.hash().0,
        code_hash: code.as_ref().map(|c| app.secret.keyed_hash(Purpose::LoginCode, c.expose().as_bytes())),
        code_challenge: code_challenge.map(CodeChallenge::into_string),
        state,
        validation_url: validation_url.as_str().to_string(),
        ip_address,
        user_agent,
        created_at: now,
        expires_at,
        email_id,
        email_payload_sealed,
        email_lease: handoff.as_ref().map(|(place, _)| place.lease()),
        limits: SendLimits {
            per_recipient: PER_RECIPIENT_EMAILS,
            per_recipient_window_seconds: PER_RECIPIENT_WINDOW_SECONDS,
            per_project_per_minute: project.settings.emails_per_minute,
            per_ip_per_minute: PER_IP_STARTS_PER_MINUTE,
        },
        idempotency: idempotency_key.map(|key| IdempotencyClaim {
            key,
            fingerprint,
            response_status: 202,
            response_body: response_body.clone(),
        }),
    };
    match app.store.start_login(login).await? {
        StartOutcome::Started => {
            app.metrics.login_started();
            match handoff {
                Some((place, email)) => place.send(email),
                None => app.outbox.wake(),
            }
            Ok((StatusCode::ACCEPTED, Json(response)).into_response())
        }
        StartOutcome::Replayed { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            Ok((status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        StartOutcome::IdempotencyConflict => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request in the last 24 hours",
        )),
        StartOutcome::RateLimited { limit, retry_after_seconds } => {
            app.metrics.rate_limited(limit);
            Err(ApiError::RateLimited {
                retry_after_seconds,
                detail: format!(
                    "too many login emails ({} limit); retry after {retry_after_seconds} s",
                    limit.as_str()
                ),
            })
        }
    }
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
        (status = 401, description = "unauthorized, key_revoked, token_invalid, token_expired (with expiredAt), token_used (with usedAt), token_burned, code_verifier_mismatch, code_invalid", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn verify<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiJson(body): ApiJson<VerifyLoginRequest>,
) -> Result<Json<VerifyLoginResponse>, ApiError> {
    let verifier_challenge = body
        .code_verifier
        .as_deref()
        .map(CodeVerifier::parse)
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?
        .map(|v| v.challenge().into_string());
    let now = app.clock.now();
    // Load the signing key first: a login must never be consumed and then
    // fail to produce its JWT.
    let signer = app.keys.signer(&app.store, &app.secret, now).await.map_err(ApiError::internal)?;
    let new_user_id = IdKind::User.generate();
    let outcome = match (body.token, body.login_id, body.code) {
        (Some(token), None, None) => {
            let token =
                LinkToken::parse(&token).map_err(|e| ApiError::new(ErrorCode::InvalidTokenFormat, e.to_string()))?;
            let req = VerifyByToken {
                project_id: project.id.clone(),
                token_hash: token.hash().0,
                verifier_challenge,
                now,
                new_user_id,
            };
            app.store.verify_by_token(req).await?
        }
        (None, Some(login_id), Some(code)) => {
            if !IdKind::Login.matches(&login_id) {
                app.metrics.verify_failed(passgate_store::VerifyFailure::Invalid);
                return Err(ApiError::Verify(passgate_store::VerifyFailure::Invalid));
            }
            let code = LoginCode::parse(&code).map_err(|e| ApiError::invalid_request(e.to_string()))?;
            let candidates = app.secret.keyed_hash_candidates(Purpose::LoginCode, code.expose().as_bytes());
            let req = VerifyByCode {
                project_id: project.id.clone(),
                login_id,
                code_hash_candidates: candidates,
                verifier_challenge,
                now,
                new_user_id,
            };
            app.store.verify_by_code(req).await?
        }
        _ => {
            return Err(ApiError::invalid_request(
                "send either {\"token\"} or {\"loginId\", \"code\"} (each optionally with codeVerifier)",
            ));
        }
    };
    let verified = match outcome {
        VerifyOutcome::Verified(v) => v,
        VerifyOutcome::Failed(failure) => {
            app.metrics.verify_failed(failure);
            return Err(ApiError::Verify(failure));
        }
    };
    app.metrics.login_verified();
    let jwt = sign_jwt(&signer, &app.public_url, &project.id, &verified, now);
    let VerifiedLogin { user, is_new_user, state, .. } = verified;
    Ok(Json(VerifyLoginResponse {
        user: UserView { id: user.id, email: user.email, created_at: user.created_at.to_rfc3339(), is_new_user },
        jwt,
        state,
    }))
}

fn sign_jwt(
    signer: &passgate_core::jwt::JwtSigner,
    issuer: &str,
    project_id: &str,
    verified: &VerifiedLogin,
    now: passgate_core::Timestamp,
) -> String {
    let claims = LoginClaims {
        iss: issuer.to_string(),
        aud: project_id.to_string(),
        sub: verified.user.id.clone(),
        email: verified.user.email.clone(),
        email_verified: true,
        amr: vec![verified.method.amr().to_string()],
        iat: now.seconds(),
        exp: now.seconds() + JWT_TTL_SECONDS,
        jti: uuid::Uuid::now_v7().simple().to_string(),
    };
    signer.sign(&claims)
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
    if !IdKind::Login.matches(&login_id) {
        return Err(ApiError::not_found());
    }
    let view = app.store.get_login(&project.id, &login_id, app.clock.now()).await?.ok_or_else(ApiError::not_found)?;
    Ok(Json(LoginStatusResponse {
        login_id: view.id,
        status: view.status.as_str().to_string(),
        email: EmailDeliveryView {
            status: view.email.status.as_str().to_string(),
            attempts: view.email.attempts,
            last_error: view.email.last_error,
        },
        created_at: view.created_at.to_rfc3339(),
        expires_at: view.expires_at.to_rfc3339(),
        verified_at: view.verified_at.map(passgate_core::Timestamp::to_rfc3339),
    }))
}
