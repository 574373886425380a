//! Conformance: outbox.

use super::*;

pub async fn outbox_leases_and_results<S: Store>(store: S) {
    let p = project(&store).await;
    let login = new_login(&p, "ada@example.com", "o1", T0);
    let login_id = login.id.clone();
    let email_id = login.email_id.clone();
    start(&store, login).await;
    assert_eq!(store.next_email_due().await.unwrap_or_else(|e| panic!("{e}")), Some(T0));

    let lease = |owner: &str, now: Timestamp| Lease { owner: owner.into(), now, until: now.plus_seconds(30) };
    let claim = |owner: &str, now: Timestamp| {
        let store = store.clone();
        let l = lease(owner, now);
        async move { store.claim_emails(l, 10).await.unwrap_or_else(|e| panic!("{e}")) }
    };
    let first = claim("a", T0).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, email_id);
    assert_eq!(first[0].payload_sealed, vec![1, 2, 3]);
    assert_eq!(first[0].attempts, 0);
    assert_eq!(first[0].login_id.as_ref(), Some(&login_id));
    assert!(claim("b", T0.plus_seconds(29)).await.is_empty(), "leased rows are not handed out twice");

    // Worker a is presumed dead after its lease lapses; b takes over, a's late result is ignored.
    let taken = claim("b", T0.plus_seconds(30)).await;
    assert_eq!(taken.len(), 1);
    let stale = DeliveryResult::Sent { at: T0.plus_seconds(31) };
    assert!(!store.record_delivery(&email_id, "a", stale).await.unwrap_or_else(|e| panic!("{e}")));

    let retry = DeliveryResult::Retry {
        at: T0.plus_seconds(31),
        error: "connection_refused".into(),
        retry_at: T0.plus_seconds(100),
    };
    assert!(store.record_delivery(&email_id, "b", retry).await.unwrap_or_else(|e| panic!("{e}")));
    let view = login_view(&store, &p, &login_id, T0.plus_seconds(32)).await;
    assert_eq!(
        view.email,
        EmailView { status: EmailStatus::Retrying, attempts: 1, last_error: Some("connection_refused".into()) }
    );
    assert!(claim("c", T0.plus_seconds(99)).await.is_empty(), "not due before retry_at");
    assert_eq!(store.next_email_due().await.unwrap_or_else(|e| panic!("{e}")), Some(T0.plus_seconds(100)));
    let again = claim("c", T0.plus_seconds(100)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert!(
        store
            .record_delivery(&email_id, "c", DeliveryResult::Sent { at: T0.plus_seconds(101) })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let view = login_view(&store, &p, &login_id, T0.plus_seconds(102)).await;
    assert_eq!(view.email, EmailView { status: EmailStatus::Sent, attempts: 2, last_error: None });
    assert!(claim("d", T0.plus_seconds(10_000)).await.is_empty(), "sent emails are never claimed again");
    assert_eq!(store.next_email_due().await.unwrap_or_else(|e| panic!("{e}")), None);

    // Giving up is final and recorded.
    let login = new_login(&p, "bob@example.com", "o2", T0);
    let (failing_id, failing_login) = (login.email_id.clone(), login.id.clone());
    start(&store, login).await;
    assert_eq!(claim("e", T0.plus_seconds(200)).await.len(), 1);
    let gave_up = DeliveryResult::GaveUp { at: T0.plus_seconds(201), error: "recipient_rejected (550)".into() };
    assert!(store.record_delivery(&failing_id, "e", gave_up).await.unwrap_or_else(|e| panic!("{e}")));
    let view = login_view(&store, &p, &failing_login, T0.plus_seconds(202)).await;
    assert_eq!(view.email.status, EmailStatus::Failed);
    assert!(claim("f", T0.plus_seconds(10_000)).await.is_empty());
    let events = store.list_events(&p, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let failed_event =
        events.iter().find(|e| e.kind == EventKind::EmailFailed).unwrap_or_else(|| panic!("no email.failed event"));
    assert_eq!(failed_event.login_id.as_ref(), Some(&failing_login));
    assert_eq!(failed_event.reason.as_deref(), Some("recipient_rejected (550)"));
    assert!(events.iter().any(|e| e.kind == EventKind::EmailSent && e.login_id.as_ref() == Some(&login_id)));
}

pub async fn an_email_leased_at_start_is_its_owners_until_the_lease_lapses<S: Store>(store: S) {
    let p = project(&store).await;
    let mut login = new_login(&p, "ada@example.com", "h1", T0);
    login.email_lease = Some(EmailLease { owner: "starter".into(), until: T0.plus_seconds(60) });
    let (email_id, login_id) = (login.email_id.clone(), login.id.clone());
    start(&store, login).await;
    let claim = |owner: &str, now: Timestamp| {
        let store = store.clone();
        let lease = Lease { owner: owner.into(), now, until: now.plus_seconds(60) };
        async move { store.claim_emails(lease, 10).await.unwrap_or_else(|e| panic!("{e}")) }
    };
    assert!(claim("other", T0.plus_seconds(59)).await.is_empty(), "a handed-off email is not claimed twice");
    assert_eq!(store.next_email_due().await.unwrap_or_else(|e| panic!("{e}")), Some(T0.plus_seconds(60)));
    let sent = DeliveryResult::Sent { at: T0.plus_seconds(1) };
    assert!(store.record_delivery(&email_id, "starter", sent).await.unwrap_or_else(|e| panic!("{e}")));
    let view = login_view(&store, &p, &login_id, T0.plus_seconds(2)).await;
    assert_eq!(view.email, EmailView { status: EmailStatus::Sent, attempts: 1, last_error: None });

    // The starter died before sending: once its lease lapses, another worker sends it.
    let mut login = new_login(&p, "bob@example.com", "h2", T0);
    login.email_lease = Some(EmailLease { owner: "dead".into(), until: T0.plus_seconds(60) });
    let orphan = login.email_id.clone();
    start(&store, login).await;
    let taken = claim("other", T0.plus_seconds(60)).await;
    assert_eq!(taken.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [orphan.as_str()]);
    let late = DeliveryResult::Sent { at: T0.plus_seconds(61) };
    assert!(!store.record_delivery(&orphan, "dead", late).await.unwrap_or_else(|e| panic!("{e}")));
}

/// Delivery outcomes that arrive together (and so share a write batch,
/// which a backend may write in one statement) are each recorded as if
/// alone: sent, retrying and given up, each with its event, while an outcome
/// from a worker whose lease lapsed is refused.
pub async fn concurrent_delivery_outcomes_are_each_recorded<S: Store>(store: S) {
    let p = project(&store).await;
    let mut logins = Vec::new();
    for i in 0..24 {
        let login = new_login(&p, &format!("d{i}@example.com"), &format!("d{i}"), T0);
        logins.push((login.id.clone(), login.email_id.clone()));
        start(&store, login).await;
    }
    let lease = Lease { owner: "w".into(), now: T0, until: T0.plus_seconds(30) };
    assert_eq!(store.claim_emails(lease, 100).await.unwrap_or_else(|e| panic!("{e}")).len(), 24);
    let at = T0.plus_seconds(1);
    let outcome_of = move |i: usize| match i % 4 {
        0 | 1 => DeliveryResult::Sent { at },
        2 => DeliveryResult::Retry { at, error: "connection_refused".into(), retry_at: T0.plus_seconds(90) },
        _ => DeliveryResult::GaveUp { at, error: "recipient_rejected (550)".into() },
    };
    let runs = logins.iter().enumerate().map(|(i, (_, email_id))| {
        let store = store.clone();
        let email_id = email_id.clone();
        // Every sixth comes from a worker that no longer holds the lease.
        let owner = if i % 6 == 5 { "stale" } else { "w" };
        tokio::spawn(async move { store.record_delivery(&email_id, owner, outcome_of(i)).await })
    });
    let recorded: Vec<bool> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let events = store.list_events(&p, 500).await.unwrap_or_else(|e| panic!("{e}"));
    for (i, (login_id, _)) in logins.iter().enumerate() {
        let stale = i % 6 == 5;
        assert_eq!(recorded[i], !stale, "outcome {i}");
        let view = login_view(&store, &p, login_id, T0.plus_seconds(2)).await;
        let expected = match (stale, i % 4) {
            (true, _) => EmailView { status: EmailStatus::Queued, attempts: 0, last_error: None },
            (false, 0 | 1) => EmailView { status: EmailStatus::Sent, attempts: 1, last_error: None },
            (false, 2) => {
                EmailView { status: EmailStatus::Retrying, attempts: 1, last_error: Some("connection_refused".into()) }
            }
            (false, _) => EmailView {
                status: EmailStatus::Failed,
                attempts: 1,
                last_error: Some("recipient_rejected (550)".into()),
            },
        };
        assert_eq!(view.email, expected, "email {i}");
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e.login_id.as_ref() == Some(login_id) && e.kind.as_str().starts_with("email."))
            .map(|e| e.kind.as_str())
            .collect();
        let expected_kinds: &[&str] = match (stale, i % 4) {
            (false, 0 | 1) => &["email.sent"],
            (false, 3) => &["email.failed"],
            _ => &[],
        };
        assert_eq!(kinds, expected_kinds, "events of email {i}");
    }
}

/// A worker still sending an email renews its lease, and while it holds the
/// lease no other worker can take the email; once it lapses, another can,
/// and the first can no longer renew it.
pub async fn a_renewed_lease_keeps_the_email_its_holders<S: Store>(store: S) {
    let p = project(&store).await;
    let login = new_login(&p, "ada@example.com", "r1", T0);
    let email_id = login.email_id.clone();
    start(&store, login).await;
    let claim = |owner: &str, now: Timestamp| {
        let store = store.clone();
        let lease = Lease { owner: owner.into(), now, until: now.plus_seconds(30) };
        async move { store.claim_emails(lease, 10).await.unwrap_or_else(|e| panic!("{e}")) }
    };
    let taken = claim("a", T0).await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].lease_until, T0.plus_seconds(30));
    assert!(store.renew_lease(&email_id, "a", T0.plus_seconds(60)).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(claim("b", T0.plus_seconds(45)).await.is_empty(), "renewed past the first lease");
    assert!(!store.renew_lease(&email_id, "b", T0.plus_seconds(90)).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(claim("b", T0.plus_seconds(60)).await.len(), 1, "lapsed: another worker takes it");
    assert!(!store.renew_lease(&email_id, "a", T0.plus_seconds(120)).await.unwrap_or_else(|e| panic!("{e}")));
    let sent = DeliveryResult::Sent { at: T0.plus_seconds(61) };
    assert!(store.record_delivery(&email_id, "b", sent).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(
        !store.renew_lease(&email_id, "b", T0.plus_seconds(150)).await.unwrap_or_else(|e| panic!("{e}")),
        "settled"
    );
}

/// What a server opens at start to check its secret: the sealed content of
/// the emails not yet settled, oldest first, never of settled ones.
pub async fn queued_payloads_are_those_not_yet_settled<S: Store>(store: S) {
    let p = project(&store).await;
    assert!(store.queued_payloads(10).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    let mut first = new_login(&p, "a@example.com", "q1", T0);
    first.email_payload_sealed = vec![1];
    let first_email = first.email_id.clone();
    start(&store, first).await;
    let mut second = new_login(&p, "b@example.com", "q2", T0.plus_seconds(1));
    second.email_payload_sealed = vec![2];
    start(&store, second).await;
    assert_eq!(store.queued_payloads(10).await.unwrap_or_else(|e| panic!("{e}")), vec![vec![1], vec![2]]);
    assert_eq!(store.queued_payloads(1).await.unwrap_or_else(|e| panic!("{e}")), vec![vec![1]]);
    let lease = Lease { owner: "w".into(), now: T0.plus_seconds(2), until: T0.plus_seconds(60) };
    assert_eq!(store.claim_emails(lease, 1).await.unwrap_or_else(|e| panic!("{e}")).len(), 1);
    let sent = DeliveryResult::Sent { at: T0.plus_seconds(3) };
    assert!(store.record_delivery(&first_email, "w", sent).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(store.queued_payloads(10).await.unwrap_or_else(|e| panic!("{e}")), vec![vec![2]], "settled: gone");
}
