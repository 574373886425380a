//! Our own extractors, so every rejection is a problem document in our
//! format: JSON bodies ([`ApiJson`], and [`JsonBytes`] for signed ones),
//! project authentication ([`Project`])
//! and the `Idempotency-Key` header ([`IdempotencyKey`]).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use passgate_api_types::ErrorCode;
use passgate_core::apikey::ApiKey;
use passgate_core::constant_time_eq;
use passgate_store::Store;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::App;

/// A JSON body: `application/json`, at most 64 KiB (the router's body
/// limit), no unknown fields (the wire types say `deny_unknown_fields`).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Turns serde's message into one that names the field but never echoes a
/// value (a value may be a token pasted into the wrong field).
fn describe_json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner();
    let message = inner.to_string();
    let message = if let Some(rest) = message.strip_prefix("invalid type: ") {
        rest.split_once(", expected")
            .map_or("invalid type".to_string(), |(_, exp)| format!("wrong type, expected{exp}"))
    } else if let Some(rest) = message.strip_prefix("invalid value: ") {
        rest.split_once(", expected")
            .map_or("invalid value".to_string(), |(_, exp)| format!("invalid value, expected{exp}"))
    } else {
        message
    };
    // serde_json appends " at line L column C"; keep it, it helps with raw bodies.
    if path == "." { message } else { format!("{path}: {message}") }
}

/// Whether a body failed because a part of it did not arrive in time (the
/// router's `RequestBodyTimeout`).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A JSON body's exact bytes (`application/json`, at most 64 KiB), for a
/// handler that must check a signature over them before reading them.
#[derive(Debug)]
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is larger than 64 KiB")
            } else if timed_out(&rejection) {
                ApiError::new(ErrorCode::RequestTimeout, "the request body stopped arriving")
            } else {
                ApiError::invalid_request("the request body could not be read")
            }
        })?;
        Ok(Self(bytes))
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {}", describe_json_error(&e))))?;
        de.end()
            .map_err(|_| ApiError::invalid_request("invalid JSON body: trailing characters after the JSON value"))?;
        Ok(Self(value))
    }
}

/// The project of the `Authorization: Bearer sk_…` key of the request.
///
/// Checked on every request against the database, so a revoked key stops
/// working on the very next request, on every instance.
#[derive(Debug, Clone)]
pub struct Project(pub passgate_store::Project);

impl<S: Store> FromRequestParts<App<S>> for Project {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App<S>) -> Result<Self, Self::Rejection> {
        let unauthorized =
            || ApiError::new(ErrorCode::Unauthorized, "send the project's secret key as Authorization: Bearer sk_...");
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .and_then(ApiKey::parse)
            .ok_or_else(unauthorized)?;
        let hash = presented.hash();
        let found = app.store.find_api_key(&hash).await?.ok_or_else(unauthorized)?;
        // The lookup matched by hash; compare again in constant time so the
        // decision itself never depends on a variable-time comparison.
        if !constant_time_eq(&found.key_hash, &hash) {
            return Err(unauthorized());
        }
        if found.revoked_at.is_some() {
            return Err(ApiError::new(ErrorCode::KeyRevoked, "this API key has been revoked"));
        }
        Ok(Self(found.project))
    }
}

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The `Idempotency-Key` header, if sent: 1–255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| ApiError::invalid_request("Idempotency-Key must be 1-255 visible ASCII characters"))?;
        Ok(Self(Some(key.to_string())))
    }
}

/// A query string: no unknown parameters (the types say
/// `deny_unknown_fields`), and a bad one is our problem document.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri).map(|axum::extract::Query(value)| Self(value)).map_err(
            |rejection| {
                let why = rejection.body_text();
                let why = why.strip_prefix("Failed to deserialize query string: ").unwrap_or(&why).to_string();
                ApiError::invalid_request(format!("invalid query: {why}"))
            },
        )
    }
}

/// The ids in a request's path, each parsed by `parse`: one that is not
/// even UTF-8, or not shaped like an id of its kind, names nothing (404).
pub fn path_id<T>(segment: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, ApiError> {
    parse(segment).ok_or_else(ApiError::not_found)
}
