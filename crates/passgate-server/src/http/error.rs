//! The one error type of the HTTP edge and its problem+json rendering.
//!
//! Rules: every error has a stable [`ErrorCode`]; `detail` is written for
//! the developer calling us and never carries a token, code, key or a
//! database message; internal errors are logged with their whole cause chain
//! and answered with a bare 500 that carries only the request id. A
//! service's refusal ([`ServiceError`]) maps to the problem it stands for:
//! a missing resource is a 404, never a 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use passgate_api_types::{ErrorCode, Problem};
use passgate_core::Timestamp;
use passgate_core::limits::LimitKind;
use passgate_core::otp::OtpFailure;
use passgate_store::{StoreError, VerifyFailure};

use super::request_id;
use crate::services::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{1}")]
    Client(ErrorCode, String),
    #[error("rate limited")]
    RateLimited { retry_after_seconds: i64, detail: String },
    #[error("verification failed: {}", .0.reason())]
    Verify(VerifyFailure),
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("not ready: {0}")]
    NotReady(String),
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Client(code, detail.into())
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }

    /// An input the domain refused, whose message names the field.
    pub fn invalid_input(e: impl std::fmt::Display) -> Self {
        Self::invalid_request(e.to_string())
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource in this project")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(),
            other => Self::internal(other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::EmailNotAllowed => {
                Self::new(ErrorCode::EmailNotAllowed, "this project does not accept sign-ins from this address")
            }
            ServiceError::IdempotencyConflict => Self::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request in the last 24 hours",
            ),
            ServiceError::RateLimited { limit, retry_after_seconds } => Self::RateLimited {
                retry_after_seconds,
                detail: match limit {
                    LimitKind::CodesBlocked => format!(
                        "too many wrong codes in a row for this address; codes are sent again in {retry_after_seconds} s"
                    ),
                    LimitKind::LiveCodes => {
                        format!("this address has as many unused codes as allowed; retry after {retry_after_seconds} s")
                    }
                    other => format!("too many emails ({} limit); retry after {retry_after_seconds} s", other.as_str()),
                },
            },
            ServiceError::Verify(failure) => Self::Verify(failure),
            ServiceError::CodesBlocked { retry_after_seconds } => Self::RateLimited {
                retry_after_seconds,
                detail: format!(
                    "too many wrong codes for this address; codes are checked again in {retry_after_seconds} s"
                ),
            },
            ServiceError::Otp(failure) => otp_problem(failure),
            ServiceError::Stamp(e) => Self::new(ErrorCode::StampInvalid, e.to_string()),
            ServiceError::StampReplayed => Self::new(
                ErrorCode::StampReplayed,
                "this stamped request was already received; sign a new one with a fresh timestampMs",
            ),
            ServiceError::SessionInvalid => Self::new(
                ErrorCode::SessionInvalid,
                "the stamp's public key is no live session key (unknown, expired or revoked)",
            ),
            ServiceError::Invalid(why) => Self::invalid_request(why),
            ServiceError::WebhookUrl(why) => Self::new(ErrorCode::WebhookUrlNotAllowed, why),
            ServiceError::WebhookLimit => Self::new(
                ErrorCode::WebhookLimitReached,
                format!(
                    "a project has at most {} webhook endpoints; delete one first",
                    crate::webhooks::MAX_ENDPOINTS_PER_PROJECT
                ),
            ),
            ServiceError::DeliveryPending => Self::new(
                ErrorCode::WebhookDeliveryPending,
                "the delivery is still pending: it will be attempted on its schedule",
            ),
            ServiceError::NotFound => Self::not_found(),
            ServiceError::InviteAccepted => {
                Self::new(ErrorCode::InviteAccepted, "the invite was accepted; there is nothing left to revoke")
            }
            ServiceError::Store(e) => e.into(),
            ServiceError::Keys(e) => Self::internal(e),
            ServiceError::Internal(e) => Self::Internal(e),
        }
    }
}

/// An error and every cause under it, joined by `: `. A cause whose text
/// its parent already quotes is not repeated.
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

/// A refused one-time code. A blocked address is `otp_locked`, like a code
/// locked by its own wrong tries (it is `otp/send` that answers a blocked
/// address with 429 and `Retry-After`).
fn otp_problem(failure: OtpFailure) -> ApiError {
    let client = |code, detail: &str| ApiError::new(code, detail);
    match failure {
        OtpFailure::Invalid => client(ErrorCode::OtpInvalid, "the code is not valid for this otpId"),
        OtpFailure::Expired { .. } => client(ErrorCode::OtpExpired, "the code has expired; send a new one"),
        OtpFailure::Used { .. } => client(ErrorCode::OtpUsed, "the code was already used; send a new one"),
        OtpFailure::Locked { until: None } => {
            client(ErrorCode::OtpLocked, "too many wrong codes for this otpId; send a new one")
        }
        OtpFailure::Locked { until: Some(_) } => client(
            ErrorCode::OtpLocked,
            "too many wrong codes in a row for this address; codes are refused for a while (see Retry-After on otp/send)",
        ),
        OtpFailure::TargetMismatch => client(
            ErrorCode::TargetPublicKeyMismatch,
            "targetPublicKey differs from the one given when the code was sent",
        ),
    }
}

fn verify_problem(failure: VerifyFailure) -> (ErrorCode, &'static str, Option<Timestamp>, Option<Timestamp>) {
    match failure {
        VerifyFailure::Invalid => (ErrorCode::TokenInvalid, "the token is unknown", None, None),
        VerifyFailure::Expired { expired_at } => {
            (ErrorCode::TokenExpired, "the link has expired; request a new one", None, Some(expired_at))
        }
        VerifyFailure::Used { used_at } => {
            (ErrorCode::TokenUsed, "the link was already used; request a new one", Some(used_at), None)
        }
        VerifyFailure::Burned => {
            (ErrorCode::TokenBurned, "too many failed attempts; the login can no longer be used", None, None)
        }
        VerifyFailure::VerifierMismatch => (
            ErrorCode::CodeVerifierMismatch,
            "the codeVerifier is missing or does not match the login's codeChallenge",
            None,
            None,
        ),
        VerifyFailure::CodeInvalid => (ErrorCode::CodeInvalid, "the code is not valid for this login", None, None),
        // Answered with its Retry-After by the service (ServiceError::CodesBlocked).
        VerifyFailure::CodesBlocked { .. } => {
            (ErrorCode::RateLimited, "too many wrong codes for this address; try again later", None, None)
        }
        VerifyFailure::Revoked => (ErrorCode::TokenRevoked, "the invite was revoked; ask for a new one", None, None),
    }
}

impl ApiError {
    /// The problem document this error is answered with, and its
    /// `Retry-After` in seconds if it has one. Internal errors are logged
    /// here, with their cause chain.
    pub fn into_problem(self) -> (Problem, Option<i64>) {
        let request_id = request_id::current();
        let mut used_at = None;
        let mut expired_at = None;
        let mut retry_after = None;
        let (code, detail) = match self {
            Self::Client(code, detail) => (code, detail),
            Self::RateLimited { retry_after_seconds, detail } => {
                retry_after = Some(retry_after_seconds.max(1));
                (ErrorCode::RateLimited, detail)
            }
            Self::Verify(failure) => {
                let (code, detail, used, expired) = verify_problem(failure);
                used_at = used;
                expired_at = expired;
                (code, detail.to_string())
            }
            Self::Internal(e) => {
                tracing::error!(error = %cause_chain(&*e), "internal error");
                (
                    ErrorCode::InternalError,
                    format!("something went wrong on our side; quote {request_id} when reporting it"),
                )
            }
            Self::NotReady(why) => {
                tracing::warn!(reason = %why, "not ready");
                (ErrorCode::NotReady, "the server cannot serve requests yet".to_string())
            }
        };
        let problem = Problem {
            kind: format!("urn:passgate:error:{}", code.as_str()),
            title: code.title().to_string(),
            status: code.status(),
            detail,
            code: code.as_str().to_string(),
            request_id,
            used_at: used_at.map(Timestamp::to_rfc3339),
            expired_at: expired_at.map(Timestamp::to_rfc3339),
        };
        (problem, retry_after)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (problem, retry_after) = self.into_problem();
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A problem document is strings and numbers; should it ever fail to
        // serialise, the status and headers still say what happened.
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_cause_chain_is_whole_and_not_repeated() {
        let e = Outer(Middle(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")));
        assert_eq!(cause_chain(&e), "outer: middle: connection refused");
        let store = StoreError::database(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        assert_eq!(cause_chain(&store), "database error: timed out");
    }

    #[test]
    fn a_missing_resource_is_a_404_not_a_500() {
        let from_store = ApiError::from(StoreError::NotFound).into_response();
        assert_eq!(from_store.status(), StatusCode::NOT_FOUND);
        let from_service = ApiError::from(ServiceError::from(StoreError::NotFound)).into_response();
        assert_eq!(from_service.status(), StatusCode::NOT_FOUND);
        let corrupt = ApiError::from(StoreError::Corrupt("x".into())).into_response();
        assert_eq!(corrupt.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
