//! Webhook endpoints: register, list, get, delete, rotate the secret,
//! enable again; an endpoint's deliveries, and a retry by hand.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use passgate_api_types::{
    CreateWebhookRequest, DeliveryAttemptRecord, DeliveryList, DeliveryRecord, Problem, WebhookList, WebhookRecord,
    WebhookWithSecret,
};
use passgate_core::{EventId, Timestamp, WebhookId};
use passgate_store::{Store, WebhookDelivery, WebhookEndpoint};

use super::error::ApiError;
use super::extract::{ApiJson, Project, path_id};
use crate::app::App;
use crate::services::webhooks::{self, WithSecret};

/// Deliveries shown by `GET …/deliveries`.
const DELIVERIES_SHOWN: u32 = 100;

fn kinds_of(endpoint: &WebhookEndpoint) -> Vec<String> {
    endpoint.kinds.iter().map(|k| k.as_str().to_string()).collect()
}

fn record(endpoint: WebhookEndpoint, now: Timestamp) -> WebhookRecord {
    WebhookRecord {
        events: kinds_of(&endpoint),
        webhook_id: endpoint.id.into_string(),
        url: endpoint.url,
        created_at: endpoint.created_at.to_rfc3339(),
        disabled_at: endpoint.disabled_at.map(Timestamp::to_rfc3339),
        previous_secret_expires_at: endpoint
            .previous_secret_until
            .filter(|until| *until > now)
            .map(Timestamp::to_rfc3339),
    }
}

fn with_secret(made: WithSecret) -> WebhookWithSecret {
    WebhookWithSecret {
        events: kinds_of(&made.endpoint),
        webhook_id: made.endpoint.id.into_string(),
        secret: made.secret.to_whsec(),
        url: made.endpoint.url,
    }
}

fn delivery(d: WebhookDelivery) -> DeliveryRecord {
    DeliveryRecord {
        event_id: d.event_id.into_string(),
        kind: d.kind.as_str().to_string(),
        status: d.status.as_str().to_string(),
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at.map(Timestamp::to_rfc3339),
        created_at: d.created_at.to_rfc3339(),
        attempt_log: d
            .attempt_log
            .into_iter()
            .map(|a| DeliveryAttemptRecord {
                attempt: a.attempt,
                timestamp: a.at.to_rfc3339(),
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error: a.error,
            })
            .collect(),
    }
}

fn webhook_id(segment: Result<Path<String>, PathRejection>) -> Result<WebhookId, ApiError> {
    let Ok(Path(segment)) = segment else { return Err(ApiError::not_found()) };
    path_id(&segment, WebhookId::parse)
}

/// Register a webhook endpoint.
///
/// Deliveries of the named event types are signed per the Standard Webhooks
/// specification with the returned secret (shown this once). The URL must
/// be `https` and must not resolve to a loopback, private, link-local,
/// CGNAT, NAT64, unique-local, metadata or otherwise reserved address —
/// checked now and again at every delivery against the addresses dialled —
/// unless the server runs with `PASSGATE_WEBHOOK_ALLOW_PRIVATE=1`
/// (development only). At most 20 endpoints per project.
#[utoipa::path(
    post,
    path = "/api/v2/webhooks",
    tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = WebhookWithSecret),
        (status = 400, description = "invalid_request (no or unknown event type), webhook_url_not_allowed", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 409, description = "webhook_limit_reached", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn create_webhook<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    let kinds = webhooks::event_kinds(&body.events)?;
    let made = webhooks::create(&app, &project, &body.url, &kinds).await?;
    Ok((StatusCode::CREATED, Json(with_secret(made))))
}

/// The project's webhook endpoints (secrets are never shown again).
#[utoipa::path(
    get,
    path = "/api/v2/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The endpoints, oldest first", body = WebhookList),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn list_webhooks<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
) -> Result<Json<WebhookList>, ApiError> {
    let now = app.clock.now();
    let endpoints = webhooks::list(&app, &project).await?;
    Ok(Json(WebhookList { webhooks: endpoints.into_iter().map(|e| record(e, now)).collect() }))
}

/// One webhook endpoint.
#[utoipa::path(
    get,
    path = "/api/v2/webhooks/{webhook_id}",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "A `whk_…` id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookRecord),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found (also for another project's endpoint)", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn get_webhook<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WebhookRecord>, ApiError> {
    let id = webhook_id(id)?;
    Ok(Json(record(webhooks::get(&app, &project, &id).await?, app.clock.now())))
}

/// Delete a webhook endpoint and its deliveries (pending ones are not sent).
#[utoipa::path(
    delete,
    path = "/api/v2/webhooks/{webhook_id}",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "A `whk_…` id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn delete_webhook<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = webhook_id(id)?;
    webhooks::delete(&app, &project, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an endpoint's signing secret.
///
/// Returns the new secret (shown this once). For 24 hours the previous
/// secret keeps signing beside it (`webhook-signature` carries both), so
/// the receiver can switch without losing a delivery.
#[utoipa::path(
    post,
    path = "/api/v2/webhooks/{webhook_id}/rotate-secret",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "A `whk_…` id")),
    responses(
        (status = 200, description = "The new secret", body = WebhookWithSecret),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn rotate_webhook_secret<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    let id = webhook_id(id)?;
    Ok(Json(with_secret(webhooks::rotate_secret(&app, &project, &id).await?)))
}

/// Enable an endpoint that was disabled after it kept failing.
///
/// New events are delivered again; deliveries that failed meanwhile stay
/// failed until retried by hand.
#[utoipa::path(
    post,
    path = "/api/v2/webhooks/{webhook_id}/enable",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "A `whk_…` id")),
    responses(
        (status = 200, description = "Enabled", body = WebhookRecord),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn enable_webhook<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WebhookRecord>, ApiError> {
    let id = webhook_id(id)?;
    Ok(Json(record(webhooks::enable(&app, &project, &id).await?, app.clock.now())))
}

/// An endpoint's newest deliveries (at most 100), with every attempt's
/// status code, latency and error.
#[utoipa::path(
    get,
    path = "/api/v2/webhooks/{webhook_id}/deliveries",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "A `whk_…` id")),
    responses(
        (status = 200, description = "Deliveries, newest first", body = DeliveryList),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn list_deliveries<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = webhook_id(id)?;
    let found = webhooks::deliveries(&app, &project, &id, DELIVERIES_SHOWN).await?;
    Ok(Json(DeliveryList { deliveries: found.into_iter().map(delivery).collect() }))
}

/// Retry a settled delivery (failed, or sent) by hand: one attempt, now,
/// with the same `webhook-id`; if it fails, it is failed again.
#[utoipa::path(
    post,
    path = "/api/v2/webhooks/{webhook_id}/deliveries/{event_id}/retry",
    tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "A `whk_…` id"),
        ("event_id" = String, Path, description = "The delivery's event, `evt_…`"),
    ),
    responses(
        (status = 202, description = "Queued for one attempt"),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
        (status = 404, description = "not_found", body = Problem),
        (status = 409, description = "webhook_delivery_pending", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn retry_delivery<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path((webhook, event))) = ids else { return Err(ApiError::not_found()) };
    let webhook = path_id(&webhook, WebhookId::parse)?;
    let event = path_id(&event, EventId::parse)?;
    webhooks::retry(&app, &project, &webhook, &event).await?;
    Ok(StatusCode::ACCEPTED)
}
