//! Webhook endpoints: registering one (its URL checked against the SSRF
//! guard, its secret made here and sealed), listing, rotating, enabling,
//! deleting, and the deliveries of one.

use passgate_core::secret::Purpose;
use passgate_core::webhook::{WebhookSecret, parse_webhook_url};
use passgate_core::{EventId, EventKind, WebhookId};
use passgate_store::{ManualRetry, NewWebhook, Project, Store, WebhookDelivery, WebhookEndpoint};

use super::ServiceError;
use crate::app::AppState;
use crate::webhooks::{MAX_ENDPOINTS_PER_PROJECT, PREVIOUS_SECRET_OVERLAP_SECONDS};

/// How long registration waits for the URL's host name to resolve.
const REGISTRATION_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An endpoint with its secret in clear: what creation and rotation show, once.
#[derive(Debug)]
pub struct WithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: WebhookSecret,
}

/// The event kinds named, each known, without repeats; at least one.
pub fn event_kinds(names: &[String]) -> Result<Vec<EventKind>, ServiceError> {
    if names.is_empty() {
        return Err(ServiceError::Invalid("events: name at least one event type".into()));
    }
    let mut kinds = Vec::new();
    for name in names {
        let kind = EventKind::parse(name)
            .ok_or_else(|| ServiceError::Invalid(format!("events: unknown event type {name:?}")))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

pub async fn create<S: Store>(
    app: &AppState<S>,
    project: &Project,
    url: &str,
    kinds: &[EventKind],
) -> Result<WithSecret, ServiceError> {
    let config = &app.webhooks;
    let url = parse_webhook_url(url, config.allow_private).map_err(|e| ServiceError::WebhookUrl(e.to_string()))?;
    // Checked now so a mistake is told at once; checked again at every
    // delivery, against the addresses actually dialled.
    let checked = tokio::time::timeout(REGISTRATION_LOOKUP_TIMEOUT, config.guard().check(&url)).await;
    match checked {
        Ok(result) => result.map_err(|e| ServiceError::WebhookUrl(e.to_string()))?,
        Err(_) => return Err(ServiceError::WebhookUrl("the host name did not resolve in time; try again".into())),
    }
    let secret = WebhookSecret::generate();
    let sealed = app.secret.seal(Purpose::WebhookSecret, secret.as_bytes());
    let id = WebhookId::generate();
    let at = app.clock.now();
    let webhook = NewWebhook {
        id: &id,
        project_id: &project.id,
        url: url.as_str(),
        kinds,
        secret_sealed: &sealed,
        at,
        limit: MAX_ENDPOINTS_PER_PROJECT,
    };
    // The store checks the limit and stores in one step: two creations at
    // once cannot both take the last place.
    if !app.store.create_webhook(webhook).await? {
        return Err(ServiceError::WebhookLimit);
    }
    let endpoint = app.store.get_webhook(&project.id, &id).await?.ok_or(ServiceError::NotFound)?;
    Ok(WithSecret { endpoint, secret })
}

pub async fn list<S: Store>(app: &AppState<S>, project: &Project) -> Result<Vec<WebhookEndpoint>, ServiceError> {
    Ok(app.store.list_webhooks(&project.id).await?)
}

pub async fn get<S: Store>(
    app: &AppState<S>,
    project: &Project,
    id: &WebhookId,
) -> Result<WebhookEndpoint, ServiceError> {
    app.store.get_webhook(&project.id, id).await?.ok_or(ServiceError::NotFound)
}

pub async fn delete<S: Store>(app: &AppState<S>, project: &Project, id: &WebhookId) -> Result<(), ServiceError> {
    if app.store.delete_webhook(&project.id, id).await? { Ok(()) } else { Err(ServiceError::NotFound) }
}

/// A new secret; the one before keeps signing beside it for 24 hours, so a
/// receiver can deploy the new one without dropping deliveries.
pub async fn rotate_secret<S: Store>(
    app: &AppState<S>,
    project: &Project,
    id: &WebhookId,
) -> Result<WithSecret, ServiceError> {
    let secret = WebhookSecret::generate();
    let sealed = app.secret.seal(Purpose::WebhookSecret, secret.as_bytes());
    let until = app.clock.now().plus_seconds(PREVIOUS_SECRET_OVERLAP_SECONDS);
    if !app.store.rotate_webhook_secret(&project.id, id, &sealed, until).await? {
        return Err(ServiceError::NotFound);
    }
    Ok(WithSecret { endpoint: get(app, project, id).await?, secret })
}

pub async fn enable<S: Store>(
    app: &AppState<S>,
    project: &Project,
    id: &WebhookId,
) -> Result<WebhookEndpoint, ServiceError> {
    if !app.store.enable_webhook(&project.id, id).await? {
        return Err(ServiceError::NotFound);
    }
    get(app, project, id).await
}

/// The newest deliveries of an endpoint, with their attempts.
pub async fn deliveries<S: Store>(
    app: &AppState<S>,
    project: &Project,
    id: &WebhookId,
    limit: u32,
) -> Result<Vec<WebhookDelivery>, ServiceError> {
    get(app, project, id).await?;
    Ok(app.store.list_webhook_deliveries(&project.id, id, limit).await?)
}

/// Queues a settled delivery for one more attempt, now.
pub async fn retry<S: Store>(
    app: &AppState<S>,
    project: &Project,
    id: &WebhookId,
    event_id: &EventId,
) -> Result<(), ServiceError> {
    match app.store.retry_webhook_delivery(&project.id, id, event_id, app.clock.now()).await? {
        ManualRetry::Queued => Ok(()),
        ManualRetry::StillPending => Err(ServiceError::DeliveryPending),
        ManualRetry::NotFound => Err(ServiceError::NotFound),
    }
}
