//! Conformance: retention sweeps remove exactly what is past its horizon,
//! a bounded batch at a time, and sweepers at once share the work.

use passgate_core::WebhookId;
use passgate_core::limits::SESSION_TTL_DEFAULT_SECONDS;
use passgate_core::otp::OTP_TTL_DEFAULT_SECONDS;

use super::otp::{check_code, code_req, code_verified, live, new_otp, offered_of, sent_code, target_key};
use super::*;

async fn sweep<S: Store>(store: &S, kind: SweepKind, horizon: Timestamp) -> u64 {
    store.sweep(Sweep { kind, horizon, batch: 1000 }).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Sweeps `kind` at `horizon` just before and just after `edge`: nothing,
/// then `count`.
async fn exact<S: Store>(store: &S, kind: SweepKind, edge: Timestamp, count: u64) {
    assert_eq!(sweep(store, kind, edge).await, 0, "{}: nothing at its horizon", kind.as_str());
    assert_eq!(sweep(store, kind, edge.plus_millis(1)).await, count, "{}: past its horizon", kind.as_str());
    assert_eq!(sweep(store, kind, edge.plus_seconds(1)).await, 0, "{}: once", kind.as_str());
}

/// Links: removed once their expiry is past the horizon, used or not; a
/// used one answers `token_used` until then and `token_invalid` after.
pub async fn logins_go_after_their_horizon_and_not_before<S: Store>(store: S) {
    let p = project(&store).await;
    let used = start(&store, new_login(&p, "ada@example.com", "r1", T0)).await;
    assert_eq!(used, StartOutcome::Started);
    start(&store, new_login(&p, "bob@example.com", "r2", T0)).await;
    start(&store, new_login(&p, "cy@example.com", "r3", T0.plus_seconds(3600))).await;
    verified(verify(&store, by_token(&p, "r1", T0.plus_seconds(1))).await);
    let expiry = T0.plus_seconds(LINK_TTL_DEFAULT_SECONDS);
    let again = failed(verify(&store, by_token(&p, "r1", T0.plus_seconds(2))).await);
    assert_eq!(again.reason(), "token_used", "inside the grace period");
    exact(&store, SweepKind::Logins, expiry, 2).await;
    let gone = failed(verify(&store, by_token(&p, "r1", expiry.plus_seconds(2))).await);
    assert_eq!(gone.reason(), "token_invalid", "after it");
    let kept = verified(verify(&store, by_token(&p, "r3", T0.plus_seconds(3601))).await);
    assert_eq!(kept.user.email, "cy@example.com", "a login inside its horizon is untouched");
}

/// One-time codes and session keys: removed past their expiry (or a
/// session key's revocation); live ones stay.
pub async fn codes_and_session_keys_go_after_their_horizon<S: Store>(store: S) {
    let p = project(&store).await;
    // A target key at send: the verify then creates a session key.
    let mut targeted = new_otp(&p, "ada@example.com", "111111", T0);
    targeted.target_public_key = Some(target_key(0x11));
    let id = sent_code(&store, targeted).await;
    sent_code(&store, new_otp(&p, "bob@example.com", "222222", T0.plus_seconds(1))).await;
    let req = code_req(&p, &id, "111111", T0.plus_seconds(5));
    let offer = offered_of(&req);
    code_verified(check_code(&store, req).await);
    exact(&store, SweepKind::OtpCodes, T0.plus_seconds(OTP_TTL_DEFAULT_SECONDS), 1).await;
    exact(&store, SweepKind::OtpCodes, T0.plus_seconds(1 + OTP_TTL_DEFAULT_SECONDS), 1).await;

    let session_end = T0.plus_seconds(5 + SESSION_TTL_DEFAULT_SECONDS);
    assert!(live(&store, &offer.public_key, T0.plus_seconds(6)).await.is_some());
    exact(&store, SweepKind::Sessions, session_end, 1).await;
    assert!(live(&store, &offer.public_key, T0.plus_seconds(6)).await.is_none(), "removed");
}

/// Settled emails and webhook deliveries go once settled before the
/// horizon; queued and pending ones never do.
pub async fn settled_emails_and_deliveries_go_after_their_horizon<S: Store>(store: S) {
    let p = project(&store).await;
    let hook = WebhookId::generate();
    let endpoint = super::webhooks::new_webhook(&hook, &p, &[EventKind::AuthStarted], b"s", 20);
    assert!(store.create_webhook(endpoint).await.unwrap_or_else(|e| panic!("{e}")));
    start(&store, new_login(&p, "ada@example.com", "e1", T0)).await;
    start(&store, new_login(&p, "bob@example.com", "e2", T0)).await;
    let lease = Lease { owner: "w".into(), now: T0, until: T0.plus_seconds(60) };
    let emails = store.claim_emails(lease.clone(), 1).await.unwrap_or_else(|e| panic!("{e}"));
    let settled_at = T0.plus_seconds(1);
    let sent = DeliveryResult::Sent { at: settled_at };
    assert!(store.record_delivery(&emails[0].id, "w", sent).await.unwrap_or_else(|e| panic!("{e}")));
    let deliveries = store.claim_webhook_deliveries(lease, 1).await.unwrap_or_else(|e| panic!("{e}"));
    let attempt = WebhookAttempt { attempt: 1, at: settled_at, status_code: Some(200), latency_ms: 3, error: None };
    let result = WebhookAttemptResult { attempt, next: WebhookNext::Delivered };
    let recorded = store.record_webhook_attempt(&hook, &deliveries[0].event.id, "w", result).await;
    assert!(recorded.unwrap_or_else(|e| panic!("{e}")));

    exact(&store, SweepKind::Emails, settled_at, 1).await;
    exact(&store, SweepKind::WebhookDeliveries, settled_at, 1).await;
    assert_eq!(sweep(&store, SweepKind::Emails, T0.plus_seconds(86_400 * 30)).await, 0, "the queued one stays");
    let left = store.list_webhook_deliveries(&p, &hook, 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left.len(), 1, "the pending delivery stays");
    assert_eq!(left[0].status, WebhookDeliveryStatus::Pending);
}

/// Idempotency answers after 24 h (a repeat is then a new request), send
/// counters of past minutes, stamp records past their window.
pub async fn keys_counters_and_stamp_records_go_after_their_horizon<S: Store>(store: S) {
    let p = project(&store).await;
    let claim = |body: &str| IdempotencyClaim {
        key: "k1".into(),
        fingerprint: sha256(body.as_bytes()),
        response_status: 202,
        response_body: "{}".into(),
    };
    let mut login = new_login(&p, "ada@example.com", "i1", T0);
    login.idempotency = Some(claim("a"));
    start(&store, login).await;
    exact(&store, SweepKind::IdempotencyKeys, T0, 1).await;
    let mut other_body = new_login(&p, "ada@example.com", "i2", T0.plus_seconds(2));
    other_body.idempotency = Some(claim("b"));
    assert_eq!(start(&store, other_body).await, StartOutcome::Started, "a forgotten key is free again");

    // The two starts counted in this minute's counter.
    let next_minute = Timestamp((T0.millis() / 60_000 + 1) * 60_000);
    assert_eq!(sweep(&store, SweepKind::SendCounts, next_minute.plus_millis(-1)).await, 0);
    assert_eq!(sweep(&store, SweepKind::SendCounts, next_minute).await, 1);

    assert!(store.record_stamp([7; 32], T0.plus_seconds(300), T0).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(store.record_stamp([8; 32], T0.plus_seconds(301), T0).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(sweep(&store, SweepKind::StampReplays, T0.plus_seconds(299)).await, 0);
    assert_eq!(sweep(&store, SweepKind::StampReplays, T0.plus_seconds(300)).await, 1);
    let replay = store.record_stamp([8; 32], T0.plus_seconds(400), T0.plus_seconds(300)).await;
    assert!(!replay.unwrap_or_else(|e| panic!("{e}")), "a record inside its window stays");
}

/// A call removes at most its batch; sweepers at once share the work and
/// never remove a row twice, while logins go on.
pub async fn batches_are_bounded_and_sweepers_share_the_work<S: Store>(store: S) {
    let p = project(&store).await;
    for i in 0..60 {
        start(&store, new_login(&p, &format!("u{i}@example.com"), &format!("b{i}"), T0)).await;
    }
    let horizon = T0.plus_seconds(LINK_TTL_DEFAULT_SECONDS + 1);
    let one = store.sweep(Sweep { kind: SweepKind::Logins, horizon, batch: 7 }).await;
    assert_eq!(one.unwrap_or_else(|e| panic!("{e}")), 7, "at most the batch");
    let mut sweepers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        sweepers.push(tokio::spawn(async move {
            let mut removed = 0;
            loop {
                let n = store
                    .sweep(Sweep { kind: SweepKind::Logins, horizon, batch: 5 })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(n <= 5);
                removed += n;
                if n == 0 {
                    return removed;
                }
            }
        }));
    }
    let writer = {
        let (store, p) = (store.clone(), p.clone());
        tokio::spawn(async move {
            for i in 0..20 {
                let login = new_login(&p, &format!("new{i}@example.com"), &format!("n{i}"), horizon);
                assert_eq!(start(&store, login).await, StartOutcome::Started);
            }
        })
    };
    let mut total = 0;
    for sweeper in sweepers {
        total += sweeper.await.unwrap_or_else(|e| panic!("{e}"));
    }
    writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(total, 53, "every expired login once, across the sweepers");
    let fresh = verified(verify(&store, by_token(&p, "n3", horizon.plus_seconds(1))).await);
    assert_eq!(fresh.user.email, "new3@example.com", "the logins written meanwhile are untouched");
}

/// Events go once older than their project's retention; a project with 0
/// keeps its events forever, and another project's setting never applies.
pub async fn events_go_after_their_projects_retention<S: Store>(store: S) {
    let p = project(&store).await;
    let keeper = project(&store).await;
    let mut keep_all = settings("Keeper");
    keep_all.event_retention_seconds = 0;
    store.update_project(&keeper, keep_all).await.unwrap_or_else(|e| panic!("{e}"));
    start(&store, new_login(&p, "ada@example.com", "v1", T0)).await;
    start(&store, new_login(&keeper, "ada@example.com", "v2", T0)).await;
    start(&store, new_login(&p, "bob@example.com", "v3", T0.plus_seconds(10))).await;
    exact(&store, SweepKind::Events, T0.plus_seconds(EVENT_RETENTION_DEFAULT_SECONDS), 1).await;
    let left = store.list_events(&p, 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left.len(), 1, "the newer event stays");
    assert_eq!(left[0].email.as_deref(), Some("bob@example.com"));
    let far = T0.plus_seconds(EVENT_RETENTION_DEFAULT_SECONDS * 40);
    assert_eq!(sweep(&store, SweepKind::Events, far).await, 1);
    let kept = store.list_events(&keeper, 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kept.len(), 1, "retention 0 keeps events forever");
}
