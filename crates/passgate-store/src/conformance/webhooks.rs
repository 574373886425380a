//! Conformance: webhook endpoints and the durable outbox of their deliveries.

use passgate_core::{EventId, WebhookId};

use super::*;

/// An endpoint at the test receiver, created at `T0`.
pub(super) fn new_webhook<'a>(
    id: &'a WebhookId,
    project_id: &'a ProjectId,
    kinds: &'a [EventKind],
    secret_sealed: &'a [u8],
    limit: usize,
) -> NewWebhook<'a> {
    NewWebhook { id, project_id, url: "https://hooks.example.com/in", kinds, secret_sealed, at: T0, limit }
}

async fn endpoint<S: Store>(store: &S, project_id: &ProjectId, kinds: &[EventKind], secret: &[u8]) -> WebhookId {
    let id = WebhookId::generate();
    let webhook = new_webhook(&id, project_id, kinds, secret, 20);
    assert!(store.create_webhook(webhook).await.unwrap_or_else(|e| panic!("{e}")), "under the limit");
    id
}

fn lease(owner: &str, now: Timestamp) -> Lease {
    Lease { owner: owner.to_string(), now, until: now.plus_seconds(60) }
}

async fn claim<S: Store>(store: &S, owner: &str, now: Timestamp) -> Vec<ClaimedWebhookDelivery> {
    store.claim_webhook_deliveries(lease(owner, now), 100).await.unwrap_or_else(|e| panic!("{e}"))
}

fn attempt(at: Timestamp, status_code: Option<u16>, next: WebhookNext) -> WebhookAttemptResult {
    let error = status_code.is_none().then(|| "connection refused".to_string());
    WebhookAttemptResult { attempt: WebhookAttempt { attempt: 0, at, status_code, latency_ms: 12, error }, next }
}

async fn record<S: Store>(store: &S, d: &ClaimedWebhookDelivery, owner: &str, result: WebhookAttemptResult) -> bool {
    store.record_webhook_attempt(&d.endpoint.id, &d.event.id, owner, result).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn deliveries<S: Store>(store: &S, p: &ProjectId, id: &WebhookId) -> Vec<WebhookDelivery> {
    store.list_webhook_deliveries(p, id, 100).await.unwrap_or_else(|e| panic!("{e}"))
}

/// An event queues one delivery for each enabled endpoint of its project
/// that subscribed to its kind, in the event's own transaction.
pub async fn an_event_queues_a_delivery_per_subscribed_endpoint<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    let starts = endpoint(&store, &p, &[EventKind::AuthStarted], b"s1").await;
    let both = endpoint(&store, &p, &[EventKind::AuthStarted, EventKind::AuthVerified], b"s2").await;
    let _elsewhere = endpoint(&store, &other, &[EventKind::AuthStarted, EventKind::AuthVerified], b"s3").await;
    start(&store, new_login(&p, "ada@example.com", "w1", T0)).await;
    verified(verify(&store, by_token(&p, "w1", T0.plus_seconds(1))).await);

    let claimed = claim(&store, "a", T0.plus_seconds(2)).await;
    let mut got: Vec<(String, &str)> =
        claimed.iter().map(|d| (d.endpoint.id.to_string(), d.event.kind.as_str())).collect();
    got.sort();
    let mut want = vec![
        (starts.to_string(), "auth.started"),
        (both.to_string(), "auth.started"),
        (both.to_string(), "auth.verified"),
    ];
    want.sort();
    assert_eq!(got, want, "one delivery per subscribed endpoint of the project");
    let started = claimed.iter().find(|d| d.event.kind == EventKind::AuthStarted).map(|d| &d.event);
    assert_eq!(started.and_then(|e| e.email.as_deref()), Some("ada@example.com"), "the event travels whole");
    assert!(claimed.iter().all(|d| d.attempts == 0 && !d.final_attempt));
    let listed = deliveries(&store, &p, &both).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|d| d.status == WebhookDeliveryStatus::Pending && d.attempt_log.is_empty()));
    assert!(deliveries(&store, &other, &both).await.is_empty(), "another project sees none of them");
}

/// Leased to one worker until the lease lapses; settled only by the holder;
/// a retry is due at its time; a success is recorded with its attempts.
pub async fn deliveries_are_leased_retried_and_settled<S: Store>(store: S) {
    let p = project(&store).await;
    let hook = endpoint(&store, &p, &[EventKind::AuthStarted], b"s").await;
    start(&store, new_login(&p, "ada@example.com", "w1", T0)).await;
    let first = claim(&store, "a", T0).await;
    assert_eq!(first.len(), 1);
    assert!(claim(&store, "b", T0.plus_seconds(59)).await.is_empty(), "leased to a");
    let taken_over = claim(&store, "b", T0.plus_seconds(60)).await;
    assert_eq!(taken_over.len(), 1, "a lapsed lease is taken over");
    assert!(!record(&store, &first[0], "a", attempt(T0.plus_seconds(61), Some(200), WebhookNext::Delivered)).await);
    let retry_at = T0.plus_seconds(70);
    let retry = attempt(T0.plus_seconds(61), Some(503), WebhookNext::RetryAt(retry_at));
    assert!(record(&store, &taken_over[0], "b", retry).await);
    assert_eq!(
        store.next_webhook_delivery_due().await.unwrap_or_else(|e| panic!("{e}")),
        Some(retry_at),
        "the worker can sleep until the retry"
    );
    assert!(claim(&store, "c", T0.plus_seconds(69)).await.is_empty(), "not due before its time");
    let again = claim(&store, "c", retry_at).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert!(record(&store, &again[0], "c", attempt(retry_at, Some(204), WebhookNext::Delivered)).await);
    assert!(claim(&store, "d", T0.plus_seconds(3600)).await.is_empty(), "settled");
    let listed = deliveries(&store, &p, &hook).await;
    assert_eq!(listed.len(), 1);
    let d = &listed[0];
    assert_eq!((d.status, d.attempts, d.settled_at), (WebhookDeliveryStatus::Sent, 2, Some(retry_at)));
    let log: Vec<(i64, Option<u16>)> = d.attempt_log.iter().map(|a| (a.attempt, a.status_code)).collect();
    assert_eq!(log, [(2, Some(204)), (1, Some(503))], "newest attempt first");
    let endpoint = store.get_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(endpoint.and_then(|w| w.last_success_at), Some(retry_at));
    assert_eq!(store.next_webhook_delivery_due().await.unwrap_or_else(|e| panic!("{e}")), None);
}

/// A delivery that spends its retries with nothing delivered since it was
/// created disables its endpoint (an event too); a disabled endpoint gets
/// no deliveries until enabled; a settled delivery can be retried by hand,
/// once.
pub async fn spent_retries_disable_a_failing_endpoint<S: Store>(store: S) {
    let p = project(&store).await;
    let hook = endpoint(&store, &p, &[EventKind::AuthStarted], b"s").await;
    start(&store, new_login(&p, "ada@example.com", "w1", T0)).await;
    let claimed = claim(&store, "a", T0).await;
    assert!(record(&store, &claimed[0], "a", attempt(T0.plus_seconds(1), None, WebhookNext::GiveUp)).await);
    let disabled = store.get_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(disabled.and_then(|w| w.disabled_at), Some(T0.plus_seconds(1)));
    let events = store.list_events(&p, 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events[0].kind, EventKind::WebhookDisabled);
    assert_eq!(events[0].webhook_id.as_ref(), Some(&hook));

    start(&store, new_login(&p, "bob@example.com", "w2", T0.plus_seconds(2))).await;
    assert_eq!(deliveries(&store, &p, &hook).await.len(), 1, "a disabled endpoint gets no new deliveries");

    let event_id = deliveries(&store, &p, &hook).await[0].event_id.clone();
    let retry = |id: EventId| {
        let (store, p, hook) = (store.clone(), p.clone(), hook.clone());
        async move {
            store.retry_webhook_delivery(&p, &hook, &id, T0.plus_seconds(3)).await.unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert_eq!(retry(event_id.clone()).await, ManualRetry::Queued);
    assert_eq!(retry(event_id.clone()).await, ManualRetry::StillPending);
    assert_eq!(retry(EventId::generate()).await, ManualRetry::NotFound);
    assert!(claim(&store, "a", T0.plus_seconds(3)).await.is_empty(), "nothing goes to a disabled endpoint");
    assert!(store.enable_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}")));
    let once = claim(&store, "a", T0.plus_seconds(4)).await;
    assert_eq!(once.len(), 1);
    assert!(once[0].final_attempt, "retried by hand: one attempt");
    assert!(record(&store, &once[0], "a", attempt(T0.plus_seconds(4), Some(500), WebhookNext::GiveUp)).await);
    assert_eq!(deliveries(&store, &p, &hook).await[0].status, WebhookDeliveryStatus::Failed);
    let still = store.get_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(still.and_then(|w| w.disabled_at), Some(T0.plus_seconds(4)), "failing the whole time: disabled again");

    // An endpoint with a success after the failing delivery was created
    // is not disabled by it.
    assert!(store.enable_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}")));
    start(&store, new_login(&p, "cy@example.com", "w3", T0.plus_seconds(10))).await;
    start(&store, new_login(&p, "di@example.com", "w4", T0.plus_seconds(11))).await;
    let two = claim(&store, "a", T0.plus_seconds(12)).await;
    assert_eq!(two.len(), 2);
    let (older, newer) =
        if two[0].event.created_at < two[1].event.created_at { (&two[0], &two[1]) } else { (&two[1], &two[0]) };
    assert!(record(&store, newer, "a", attempt(T0.plus_seconds(12), Some(200), WebhookNext::Delivered)).await);
    assert!(record(&store, older, "a", attempt(T0.plus_seconds(13), Some(500), WebhookNext::GiveUp)).await);
    let enabled = store.get_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(enabled.and_then(|w| w.disabled_at), None);
}

/// Endpoints belong to their project; a rotation keeps the previous secret
/// signing until its time; deleting an endpoint removes its deliveries.
pub async fn endpoints_are_scoped_rotated_and_deleted<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    let hook = endpoint(&store, &p, &[EventKind::AuthStarted, EventKind::OtpSent], b"old").await;
    let second = endpoint(&store, &p, &[EventKind::UserDeleted], b"x").await;
    let listed = store.list_webhooks(&p).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.iter().map(|w| w.id.clone()).collect::<Vec<_>>(), [hook.clone(), second.clone()]);
    assert_eq!(listed[0].kinds, [EventKind::AuthStarted, EventKind::OtpSent]);
    assert_eq!(listed[0].url, "https://hooks.example.com/in");
    assert!(store.list_webhooks(&other).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert_eq!(store.get_webhook(&other, &hook).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert!(!store.delete_webhook(&other, &hook).await.unwrap_or_else(|e| panic!("{e}")));
    let until = T0.plus_seconds(86_400);
    assert!(!store.rotate_webhook_secret(&other, &hook, b"new", until).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(store.rotate_webhook_secret(&p, &hook, b"new", until).await.unwrap_or_else(|e| panic!("{e}")));
    let rotated = store.get_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}"));
    let rotated = rotated.unwrap_or_else(|| panic!("gone"));
    assert_eq!(rotated.signing_secrets(T0), [b"new".as_slice(), b"old".as_slice()]);
    assert_eq!(rotated.signing_secrets(until), [b"new".as_slice()]);

    start(&store, new_login(&p, "ada@example.com", "w1", T0)).await;
    assert!(store.delete_webhook(&p, &hook).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(claim(&store, "a", T0).await.is_empty(), "its deliveries went with it");
    assert!(deliveries(&store, &p, &hook).await.is_empty());
    assert_eq!(store.list_webhooks(&p).await.unwrap_or_else(|e| panic!("{e}")).len(), 1);
}

/// Creations arriving at once for one project stop at its limit, and
/// another project's endpoints do not count against it.
pub async fn concurrent_creations_stop_at_the_limit<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    endpoint(&store, &other, &[EventKind::AuthStarted], b"s").await;
    let mut creations = Vec::new();
    for _ in 0..12 {
        let (store, p) = (store.clone(), p.clone());
        creations.push(tokio::spawn(async move {
            let id = WebhookId::generate();
            let webhook = new_webhook(&id, &p, &[EventKind::AuthStarted], b"s", 5);
            store.create_webhook(webhook).await.unwrap_or_else(|e| panic!("{e}"))
        }));
    }
    let mut stored = 0;
    for creation in creations {
        stored += usize::from(creation.await.unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(stored, 5, "exactly the limit was stored");
    assert_eq!(store.list_webhooks(&p).await.unwrap_or_else(|e| panic!("{e}")).len(), 5);
    assert_eq!(store.list_webhooks(&other).await.unwrap_or_else(|e| panic!("{e}")).len(), 1);
}

/// Workers claiming at once never share a delivery; the outbox depth
/// counts what waits.
pub async fn concurrent_claims_never_share_a_delivery<S: Store>(store: S) {
    let p = project(&store).await;
    endpoint(&store, &p, &[EventKind::AuthStarted], b"s").await;
    for i in 0..30 {
        start(&store, new_login(&p, &format!("u{i}@example.com"), &format!("t{i}"), T0.plus_millis(i))).await;
    }
    let depth = store.outbox_depth().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((depth.webhook_deliveries, depth.oldest_webhook_delivery_due), (30, Some(T0)));
    assert_eq!(depth.emails, 30, "each start queued its email");
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_webhook_deliveries(lease(&owner, T0.plus_seconds(1)), 4)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|d| d.event.id));
            }
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let unique: HashSet<&EventId> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (30, 30), "each delivery claimed once");
}
