//! Operational endpoints: health, readiness, JWKS, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine;
use passgate_api_types::{HealthResponse, Jwk, Jwks, Problem, ProjectView};
use passgate_store::Store;

use super::error::ApiError;
use super::extract::Project;
use crate::app::App;

/// Process is up (no dependencies checked).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = HealthResponse)))]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok".to_string() })
}

/// The project the secret key belongs to, with the `aud` (its id) and
/// `iss` (this server's public URL) of its result JWTs.
#[utoipa::path(get, path = "/api/v2/project", tag = "operations",
    responses(
        (status = 200, description = "The key's project", body = ProjectView),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn project<S: Store>(State(app): State<App<S>>, Project(project): Project) -> Json<ProjectView> {
    Json(ProjectView {
        app_name: project.app_name().to_string(),
        project_id: project.id.into_string(),
        name: project.settings.name,
        issuer: app.public_url.clone(),
    })
}

/// Database reachable, migrated, and a signing key usable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = HealthResponse),
        (status = 503, description = "not_ready", body = passgate_api_types::Problem),
    ))]
pub async fn readyz<S: Store>(State(app): State<App<S>>) -> Result<Json<HealthResponse>, ApiError> {
    app.store.ready().await.map_err(|e| ApiError::NotReady(e.to_string()))?;
    app.keys.signer(&app.store, &app.secret, app.clock.now()).await.map_err(|e| ApiError::NotReady(e.to_string()))?;
    Ok(Json(HealthResponse { status: "ready".to_string() }))
}

/// The public keys that verify result JWTs: the current one and, after a
/// rotation, the previous one until its tokens have expired.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses((status = 200, description = "JSON Web Key Set (Ed25519)", body = Jwks)))]
pub async fn jwks<S: Store>(State(app): State<App<S>>) -> Result<impl IntoResponse, ApiError> {
    let published = app.keys.published(&app.store, &app.secret, app.clock.now()).await.map_err(ApiError::internal)?;
    let keys = published
        .into_iter()
        .map(|(kid, public)| Jwk {
            kty: "OKP".to_string(),
            crv: "Ed25519".to_string(),
            alg: "EdDSA".to_string(),
            key_use: "sig".to_string(),
            kid,
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        })
        .collect();
    // Short caching: verifiers refetch soon enough to see a rotation.
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(Jwks { keys })))
}

/// This document.
#[utoipa::path(get, path = "/api/v2/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API")))]
pub async fn openapi() -> Result<impl IntoResponse, ApiError> {
    let document = crate::openapi::document_json()
        .ok_or_else(|| ApiError::internal(std::io::Error::other("the OpenAPI document cannot be serialised")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], document))
}
