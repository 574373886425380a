//! Parsing that several handlers share: an address, a `validationUrl`
//! against the project's allowlist, an `Idempotency-Key` with its request's
//! fingerprint, and the answer of a request that sends a link.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use passgate_api_types::ErrorCode;
use passgate_core::email::EmailAddress;
use passgate_core::redirect::{ValidationUrl, parse_allowed};
use passgate_store::Project;

use super::error::ApiError;
use crate::services::logins::{Answered, Idempotency};

/// An address, canonicalised; else `400 invalid_email`.
pub fn email_address(text: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(text).map_err(|e| ApiError::new(ErrorCode::InvalidEmail, e.to_string()))
}

/// A `validationUrl` the project's allowlist admits; else `400 validation_url_not_allowed`.
pub fn validation_url(project: &Project, text: &str) -> Result<ValidationUrl, ApiError> {
    let allowed = parse_allowed(&project.settings.redirect_urls).map_err(ApiError::internal)?;
    ValidationUrl::check(text, &allowed).map_err(|e| ApiError::new(ErrorCode::ValidationUrlNotAllowed, e.to_string()))
}

/// The `Idempotency-Key`, if sent, with the fingerprint of the request as
/// parsed (so whitespace and member order do not matter).
pub fn idempotency(key: Option<String>, body: &impl serde::Serialize) -> Result<Option<Idempotency>, ApiError> {
    key.map(|key| {
        let parsed = serde_json::to_vec(body).map_err(ApiError::internal)?;
        Ok(Idempotency { key, fingerprint: passgate_core::sha256(&parsed) })
    })
    .transpose()
}

/// A new link's answer with `status`, or a repeat's first answer as it was given.
pub fn answered<T: serde::Serialize>(answer: Answered<T>, status: StatusCode) -> Response {
    match answer {
        Answered::Accepted(response) => (status, Json(response)).into_response(),
        Answered::Replayed { status: first, body } => {
            let first = StatusCode::from_u16(first).unwrap_or(status);
            (first, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}
