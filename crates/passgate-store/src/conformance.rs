//! The behaviour every [`Store`] implementation must show, written once and
//! run against each backend (see [`conformance_tests!`](crate::conformance_tests)).
//!
//! Each check takes a fresh, migrated store and panics on a deviation.

use std::collections::HashSet;

use passgate_core::Timestamp;
use passgate_core::ids::IdKind;
use passgate_core::limits::*;
use passgate_core::sha256;

use crate::*;

/// 2026-11-21T00:00:00Z: a fixed "now" so tests never read the system clock.
pub const T0: Timestamp = Timestamp(1_795_219_200_000);

/// Generates one `#[tokio::test]` per conformance check, each calling
/// `$fresh().await` for a new, migrated store and a guard that cleans it up
/// when the test ends (also when it fails).
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@each $fresh;
            project_lifecycle, api_keys, signing_keys, start_then_verify_once, tokens_are_scoped_to_their_project,
            expiry_is_exact, pkce_mismatch_does_not_consume_and_five_burn, fallback_code,
            fifty_concurrent_verifies_one_winner, returning_user_is_not_new, per_recipient_limit,
            per_project_limit, per_ip_limit, idempotency, outbox_leases_and_results,
            an_email_leased_at_start_is_its_owners_until_the_lease_lapses, events_are_recorded,
            a_failed_operation_does_not_undo_concurrent_ones, a_failed_start_does_not_undo_concurrent_starts,
            concurrent_starts_obey_every_limit, concurrent_delivery_outcomes_are_each_recorded,
            concurrent_verifies_are_each_decided_alone);
    };
    (@each $fresh:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, _cleanup) = $fresh().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

pub fn settings(name: &str) -> ProjectSettings {
    ProjectSettings {
        name: name.to_string(),
        app_name: None,
        redirect_urls: vec!["https://app.example.com/cb".to_string()],
        allowed_domains: vec![],
        allowed_emails: vec![],
        link_ttl_seconds: LINK_TTL_DEFAULT_SECONDS,
        emails_per_minute: EMAILS_PER_MINUTE_DEFAULT,
    }
}

fn key_for(project_id: &str, seed: &str) -> NewApiKey {
    NewApiKey {
        id: IdKind::ApiKey.generate(),
        project_id: project_id.to_string(),
        key_hash: sha256(seed.as_bytes()),
        hint: "sk_test_xxxx…".to_string(),
        created_at: T0,
    }
}

/// Creates a project with default settings and returns its id.
pub async fn project<S: Store>(store: &S) -> String {
    let id = IdKind::Project.generate();
    let p = NewProject { id: id.clone(), settings: settings("Acme"), is_dev: false, created_at: T0 };
    store.create_project(p, key_for(&id, &id), false).await.unwrap_or_else(|e| panic!("{e}"));
    id
}

pub fn default_limits() -> SendLimits {
    SendLimits {
        per_recipient: PER_RECIPIENT_EMAILS,
        per_recipient_window_seconds: PER_RECIPIENT_WINDOW_SECONDS,
        per_project_per_minute: EMAILS_PER_MINUTE_DEFAULT,
        per_ip_per_minute: PER_IP_STARTS_PER_MINUTE,
    }
}

/// A login ready to start; `token` seeds its hash.
pub fn new_login(project_id: &str, email: &str, token: &str, now: Timestamp) -> NewLogin {
    NewLogin {
        id: IdKind::Login.generate(),
        project_id: project_id.to_string(),
        email: email.to_string(),
        token_hash: sha256(token.as_bytes()),
        code_hash: None,
        code_challenge: None,
        state: Some("st".to_string()),
        validation_url: "https://app.example.com/cb".to_string(),
        ip_address: None,
        user_agent: None,
        created_at: now,
        expires_at: now.plus_seconds(LINK_TTL_DEFAULT_SECONDS),
        email_id: IdKind::Email.generate(),
        email_payload_sealed: vec![1, 2, 3],
        email_lease: None,
        limits: default_limits(),
        idempotency: None,
    }
}

async fn start<S: Store>(store: &S, login: NewLogin) -> StartOutcome {
    store.start_login(login).await.unwrap_or_else(|e| panic!("{e}"))
}

pub fn by_token(project_id: &str, token: &str, now: Timestamp) -> VerifyByToken {
    VerifyByToken {
        project_id: project_id.to_string(),
        token_hash: sha256(token.as_bytes()),
        verifier_challenge: None,
        now,
        new_user_id: IdKind::User.generate(),
    }
}

async fn verify<S: Store>(store: &S, req: VerifyByToken) -> VerifyOutcome {
    store.verify_by_token(req).await.unwrap_or_else(|e| panic!("{e}"))
}

fn verified(outcome: VerifyOutcome) -> VerifiedLogin {
    match outcome {
        VerifyOutcome::Verified(v) => v,
        VerifyOutcome::Failed(f) => panic!("expected success, got {f:?}"),
    }
}

fn failed(outcome: VerifyOutcome) -> VerifyFailure {
    match outcome {
        VerifyOutcome::Failed(f) => f,
        VerifyOutcome::Verified(v) => panic!("expected failure, got success for {}", v.login_id),
    }
}

async fn login_view<S: Store>(store: &S, project_id: &str, login_id: &str, now: Timestamp) -> LoginView {
    store
        .get_login(project_id, login_id, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("login {login_id} not found"))
}

pub async fn project_lifecycle<S: Store>(store: S) {
    let id = project(&store).await;
    let p = store.get_project(&id).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("missing"));
    assert_eq!(p.settings, settings("Acme"));
    assert_eq!(p.app_name(), "Acme");
    assert_eq!(p.created_at, T0);

    let mut changed = settings("Acme 2");
    changed.app_name = Some("Acme App".into());
    changed.allowed_domains = vec!["example.com".into()];
    changed.link_ttl_seconds = 600;
    let updated = store.update_project(&id, changed.clone()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(updated.settings, changed);
    assert_eq!(updated.app_name(), "Acme App");
    let again = store.get_project(&id).await.unwrap_or_else(|e| panic!("{e}")).map(|p| p.settings);
    assert_eq!(again, Some(changed));

    assert!(matches!(store.update_project("prj_missing", settings("x")).await, Err(StoreError::NotFound)));
    assert_eq!(store.get_project("prj_missing").await.unwrap_or_else(|e| panic!("{e}")), None);

    let dup = NewProject { id: id.clone(), settings: settings("dup"), is_dev: false, created_at: T0 };
    assert!(matches!(
        store.create_project(dup.clone(), key_for(&id, "other"), false).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_project(dup, key_for(&id, "other2"), true).await.unwrap_or_else(|e| panic!("{e}"));
    let kept = store.get_project(&id).await.unwrap_or_else(|e| panic!("{e}")).map(|p| p.settings.name);
    assert_eq!(kept.as_deref(), Some("Acme 2"), "if_absent must not overwrite");
}

pub async fn api_keys<S: Store>(store: S) {
    let id = project(&store).await;
    let first = store.find_api_key(&sha256(id.as_bytes())).await.unwrap_or_else(|e| panic!("{e}"));
    let first = first.unwrap_or_else(|| panic!("first key missing"));
    assert_eq!(first.project.id, id);
    assert_eq!(first.revoked_at, None);
    assert_eq!(first.key_hash, sha256(id.as_bytes()));

    let second = key_for(&id, "second");
    store.create_api_key(second.clone()).await.unwrap_or_else(|e| panic!("{e}"));
    let listed = store.list_api_keys(&id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|k| k.id == second.id));

    store.revoke_api_key(&second.id, T0.plus_seconds(5)).await.unwrap_or_else(|e| panic!("{e}"));
    store.revoke_api_key(&second.id, T0.plus_seconds(9)).await.unwrap_or_else(|e| panic!("{e}"));
    let found = store.find_api_key(&second.key_hash).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.and_then(|k| k.revoked_at), Some(T0.plus_seconds(5)), "first revocation time kept");
    assert!(matches!(store.revoke_api_key("key_missing", T0).await, Err(StoreError::NotFound)));
    assert!(matches!(store.create_api_key(key_for("prj_missing", "x")).await, Err(StoreError::NotFound)));
    assert!(store.find_api_key(&sha256(b"unknown")).await.unwrap_or_else(|e| panic!("{e}")).is_none());
}

fn signing_key(kid: &str, at: Timestamp) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_string(),
        public_key: vec![7; 32],
        private_key_sealed: vec![9; 60],
        created_at: at,
        retired_at: None,
    }
}

pub async fn signing_keys<S: Store>(store: S) {
    assert!(store.signing_keys().await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(store.insert_first_signing_key(signing_key("a", T0)).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(!store.insert_first_signing_key(signing_key("b", T0)).await.unwrap_or_else(|e| panic!("{e}")));
    store.rotate_signing_key(signing_key("c", T0), T0.plus_seconds(60)).await.unwrap_or_else(|e| panic!("{e}"));
    let keys = store.signing_keys().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["c", "a"]);
    assert_eq!(keys[0].retired_at, None);
    assert_eq!(keys[1].retired_at, Some(T0.plus_seconds(60)));
    assert_eq!(keys[0].private_key_sealed, vec![9; 60]);
}

pub async fn start_then_verify_once<S: Store>(store: S) {
    let p = project(&store).await;
    let login = new_login(&p, "ada@example.com", "tok1", T0);
    let login_id = login.id.clone();
    assert_eq!(start(&store, login).await, StartOutcome::Started);
    let view = login_view(&store, &p, &login_id, T0).await;
    assert_eq!(view.status, LoginStatus::Pending);
    assert_eq!(view.email, EmailView { status: EmailStatus::Queued, attempts: 0, last_error: None });
    assert_eq!(view.expires_at, T0.plus_seconds(LINK_TTL_DEFAULT_SECONDS));

    let at = T0.plus_seconds(30);
    let v = verified(verify(&store, by_token(&p, "tok1", at)).await);
    assert_eq!(v.login_id, login_id);
    assert!(v.is_new_user);
    assert_eq!(v.user.email, "ada@example.com");
    assert_eq!(v.user.created_at, at);
    assert_eq!(v.state.as_deref(), Some("st"));
    assert_eq!(v.method, AuthMethod::EmailLink);

    let again = failed(verify(&store, by_token(&p, "tok1", at.plus_seconds(1))).await);
    assert_eq!(again, VerifyFailure::Used { used_at: at });
    assert_eq!(failed(verify(&store, by_token(&p, "nope", at)).await), VerifyFailure::Invalid);
    let view = login_view(&store, &p, &login_id, at.plus_seconds(5000)).await;
    assert_eq!(view.status, LoginStatus::Verified, "a used login stays verified after expiry");
    assert_eq!(view.verified_at, Some(at));
}

pub async fn tokens_are_scoped_to_their_project<S: Store>(store: S) {
    let a = project(&store).await;
    let b = project(&store).await;
    let login = new_login(&a, "ada@example.com", "tokA", T0);
    let login_id = login.id.clone();
    start(&store, login).await;
    assert_eq!(failed(verify(&store, by_token(&b, "tokA", T0)).await), VerifyFailure::Invalid);
    assert!(store.get_login(&b, &login_id, T0).await.unwrap_or_else(|e| panic!("{e}")).is_none());
    let code = VerifyByCode {
        project_id: b.clone(),
        login_id: login_id.clone(),
        code_hash_candidates: vec![],
        verifier_challenge: None,
        now: T0,
        new_user_id: IdKind::User.generate(),
    };
    assert_eq!(failed(store.verify_by_code(code).await.unwrap_or_else(|e| panic!("{e}"))), VerifyFailure::Invalid);
    // Still usable in its own project, and the same email is another user there.
    let v = verified(verify(&store, by_token(&a, "tokA", T0)).await);
    start(&store, new_login(&b, "ada@example.com", "tokB", T0)).await;
    let w = verified(verify(&store, by_token(&b, "tokB", T0)).await);
    assert_ne!(v.user.id, w.user.id);
    assert!(w.is_new_user);
}

pub async fn expiry_is_exact<S: Store>(store: S) {
    let p = project(&store).await;
    start(&store, new_login(&p, "a@example.com", "early", T0)).await;
    let expires = T0.plus_seconds(LINK_TTL_DEFAULT_SECONDS);
    verified(verify(&store, by_token(&p, "early", expires.plus_millis(-1))).await);

    let late = new_login(&p, "b@example.com", "late", T0);
    let late_id = late.id.clone();
    start(&store, late).await;
    assert_eq!(
        failed(verify(&store, by_token(&p, "late", expires)).await),
        VerifyFailure::Expired { expired_at: expires }
    );
    assert_eq!(login_view(&store, &p, &late_id, expires).await.status, LoginStatus::Expired);
    assert_eq!(login_view(&store, &p, &late_id, expires.plus_millis(-1)).await.status, LoginStatus::Pending);
}

pub async fn pkce_mismatch_does_not_consume_and_five_burn<S: Store>(store: S) {
    let p = project(&store).await;
    let mut login = new_login(&p, "a@example.com", "pk1", T0);
    login.code_challenge = Some("right".into());
    start(&store, login).await;
    assert_eq!(failed(verify(&store, by_token(&p, "pk1", T0)).await), VerifyFailure::VerifierMismatch);
    let mut wrong = by_token(&p, "pk1", T0);
    wrong.verifier_challenge = Some("wrong".into());
    assert_eq!(failed(verify(&store, wrong).await), VerifyFailure::VerifierMismatch);
    let mut right = by_token(&p, "pk1", T0);
    right.verifier_challenge = Some("right".into());
    verified(verify(&store, right).await);

    let mut login = new_login(&p, "b@example.com", "pk2", T0);
    login.code_challenge = Some("right".into());
    let id = login.id.clone();
    start(&store, login).await;
    for _ in 0..MAX_VERIFIER_FAILURES {
        assert_eq!(failed(verify(&store, by_token(&p, "pk2", T0)).await), VerifyFailure::VerifierMismatch);
    }
    let mut right = by_token(&p, "pk2", T0);
    right.verifier_challenge = Some("right".into());
    assert_eq!(failed(verify(&store, right).await), VerifyFailure::Burned);
    assert_eq!(login_view(&store, &p, &id, T0).await.status, LoginStatus::Burned);
}

pub async fn fallback_code<S: Store>(store: S) {
    let p = project(&store).await;
    let code_req = |login_id: &str, code: &str| VerifyByCode {
        project_id: p.clone(),
        login_id: login_id.to_string(),
        code_hash_candidates: vec![sha256(b"other-secret"), sha256(code.as_bytes())],
        verifier_challenge: None,
        now: T0,
        new_user_id: IdKind::User.generate(),
    };
    let mut login = new_login(&p, "a@example.com", "c1", T0);
    login.code_hash = Some(sha256(b"123456"));
    let id = login.id.clone();
    start(&store, login).await;
    let v = verified(store.verify_by_code(code_req(&id, "123456")).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(v.method, AuthMethod::EmailCode);
    assert!(matches!(failed(verify(&store, by_token(&p, "c1", T0)).await), VerifyFailure::Used { .. }));

    let mut login = new_login(&p, "b@example.com", "c2", T0);
    login.code_hash = Some(sha256(b"123456"));
    let id = login.id.clone();
    start(&store, login).await;
    for _ in 0..MAX_CODE_FAILURES {
        let f = failed(store.verify_by_code(code_req(&id, "000000")).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(f, VerifyFailure::CodeInvalid);
    }
    let f = failed(store.verify_by_code(code_req(&id, "123456")).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(f, VerifyFailure::Burned, "three wrong codes burn the code");
    assert_eq!(failed(verify(&store, by_token(&p, "c2", T0)).await), VerifyFailure::Burned, "…and the link");

    let no_code = new_login(&p, "c@example.com", "c3", T0);
    let id = no_code.id.clone();
    start(&store, no_code).await;
    let f = failed(store.verify_by_code(code_req(&id, "123456")).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(f, VerifyFailure::CodeInvalid);
    verified(verify(&store, by_token(&p, "c3", T0)).await);

    let mut pkce = new_login(&p, "d@example.com", "c4", T0);
    pkce.code_hash = Some(sha256(b"654321"));
    pkce.code_challenge = Some("ch".into());
    let id = pkce.id.clone();
    start(&store, pkce).await;
    let f = failed(store.verify_by_code(code_req(&id, "654321")).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(f, VerifyFailure::VerifierMismatch);
    let mut with_verifier = code_req(&id, "654321");
    with_verifier.verifier_challenge = Some("ch".into());
    verified(store.verify_by_code(with_verifier).await.unwrap_or_else(|e| panic!("{e}")));
}

pub async fn fifty_concurrent_verifies_one_winner<S: Store>(store: S) {
    let p = project(&store).await;
    start(&store, new_login(&p, "race@example.com", "race", T0)).await;
    let attempts = (0..50).map(|_| {
        let store = store.clone();
        let req = by_token(&p, "race", T0.plus_seconds(1));
        tokio::spawn(async move { store.verify_by_token(req).await })
    });
    let results = futures::future::join_all(attempts).await;
    let mut wins = 0;
    for r in results {
        match r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")) {
            VerifyOutcome::Verified(_) => wins += 1,
            VerifyOutcome::Failed(f) => assert!(matches!(f, VerifyFailure::Used { .. }), "{f:?}"),
        }
    }
    assert_eq!(wins, 1);
}

pub async fn returning_user_is_not_new<S: Store>(store: S) {
    let p = project(&store).await;
    start(&store, new_login(&p, "ada@example.com", "r1", T0)).await;
    let first = verified(verify(&store, by_token(&p, "r1", T0)).await);
    start(&store, new_login(&p, "ada@example.com", "r2", T0)).await;
    let second = verified(verify(&store, by_token(&p, "r2", T0.plus_seconds(1))).await);
    assert!(!second.is_new_user);
    assert_eq!(second.user, first.user);
}

fn limited(outcome: StartOutcome) -> (LimitKind, i64) {
    match outcome {
        StartOutcome::RateLimited { limit, retry_after_seconds } => (limit, retry_after_seconds),
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

pub async fn per_recipient_limit<S: Store>(store: S) {
    let p = project(&store).await;
    for i in 0..PER_RECIPIENT_EMAILS {
        let outcome = start(&store, new_login(&p, "ada@example.com", &format!("r{i}"), T0.plus_seconds(i))).await;
        assert_eq!(outcome, StartOutcome::Started);
    }
    let now = T0.plus_seconds(60);
    let (kind, retry) = limited(start(&store, new_login(&p, "ada@example.com", "over", now)).await);
    assert_eq!(kind, LimitKind::Recipient);
    assert_eq!(retry, PER_RECIPIENT_WINDOW_SECONDS - 60);
    // Another recipient is not affected; the first one is again once the window moves.
    assert_eq!(start(&store, new_login(&p, "bob@example.com", "bob", now)).await, StartOutcome::Started);
    let later = T0.plus_seconds(PER_RECIPIENT_WINDOW_SECONDS + 1);
    assert_eq!(start(&store, new_login(&p, "ada@example.com", "again", later)).await, StartOutcome::Started);
    let events = store.list_events(&p, 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(events.iter().any(|e| e.kind == "rate_limited" && e.reason.as_deref() == Some("recipient")));
}

pub async fn per_project_limit<S: Store>(store: S) {
    let p = project(&store).await;
    let mut s = settings("Acme");
    s.emails_per_minute = 3;
    store.update_project(&p, s).await.unwrap_or_else(|e| panic!("{e}"));
    let with_limit = |email: &str, token: &str, at: Timestamp| {
        let mut l = new_login(&p, email, token, at);
        l.limits.per_project_per_minute = 3;
        l
    };
    for i in 0..3 {
        let outcome = start(&store, with_limit(&format!("u{i}@example.com"), &format!("t{i}"), T0)).await;
        assert_eq!(outcome, StartOutcome::Started);
    }
    let (kind, retry) = limited(start(&store, with_limit("x@example.com", "x", T0.plus_seconds(10))).await);
    assert_eq!((kind, retry), (LimitKind::Project, 50));
    let other = project(&store).await;
    assert_eq!(start(&store, new_login(&other, "x@example.com", "y", T0)).await, StartOutcome::Started);
    let outcome = start(&store, with_limit("x@example.com", "z", T0.plus_seconds(61))).await;
    assert_eq!(outcome, StartOutcome::Started);
}

pub async fn per_ip_limit<S: Store>(store: S) {
    let p = project(&store).await;
    for i in 0..PER_IP_STARTS_PER_MINUTE {
        let mut l = new_login(&p, &format!("u{i}@example.com"), &format!("t{i}"), T0);
        l.ip_address = Some("203.0.113.9".into());
        assert_eq!(start(&store, l).await, StartOutcome::Started);
    }
    let mut l = new_login(&p, "v@example.com", "v", T0.plus_seconds(1));
    l.ip_address = Some("203.0.113.9".into());
    assert_eq!(limited(start(&store, l).await), (LimitKind::IpAddress, 59));
    let mut other_ip = new_login(&p, "w@example.com", "w", T0.plus_seconds(1));
    other_ip.ip_address = Some("203.0.113.10".into());
    assert_eq!(start(&store, other_ip).await, StartOutcome::Started);
}

pub async fn idempotency<S: Store>(store: S) {
    let p = project(&store).await;
    let claim = |fingerprint: &[u8], body: &str| IdempotencyClaim {
        key: "idem-1".into(),
        fingerprint: sha256(fingerprint),
        response_status: 202,
        response_body: body.to_string(),
    };
    let mut first = new_login(&p, "ada@example.com", "i1", T0);
    first.idempotency = Some(claim(b"req", "first"));
    assert_eq!(start(&store, first).await, StartOutcome::Started);
    let mut repeat = new_login(&p, "ada@example.com", "i2", T0.plus_seconds(5));
    let repeat_id = repeat.id.clone();
    repeat.idempotency = Some(claim(b"req", "second"));
    assert_eq!(start(&store, repeat).await, StartOutcome::Replayed { status: 202, body: "first".into() });
    assert!(store.get_login(&p, &repeat_id, T0).await.unwrap_or_else(|e| panic!("{e}")).is_none(), "nothing stored");
    let mut different = new_login(&p, "bob@example.com", "i3", T0.plus_seconds(5));
    different.idempotency = Some(claim(b"other", "third"));
    assert_eq!(start(&store, different).await, StartOutcome::IdempotencyConflict);
    // Scoped to the project.
    let other = project(&store).await;
    let mut elsewhere = new_login(&other, "ada@example.com", "i4", T0);
    elsewhere.idempotency = Some(claim(b"other", "x"));
    assert_eq!(start(&store, elsewhere).await, StartOutcome::Started);
    // Forgotten after 24 hours.
    let mut later = new_login(&p, "ada@example.com", "i5", T0.plus_seconds(IDEMPOTENCY_WINDOW_SECONDS + 1));
    later.idempotency = Some(claim(b"other", "later"));
    assert_eq!(start(&store, later).await, StartOutcome::Started);
    // Only the first and the later start queued an email.
    let claimed = store
        .claim_emails(
            Lease {
                owner: "w".into(),
                now: T0.plus_seconds(IDEMPOTENCY_WINDOW_SECONDS + 2),
                until: T0.plus_seconds(IDEMPOTENCY_WINDOW_SECONDS + 60),
            },
            100,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claimed.iter().filter(|c| c.project_id == p).count(), 2);
}

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
    assert_eq!(first[0].login_id.as_deref(), Some(login_id.as_str()));
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
        events.iter().find(|e| e.kind == "email.failed").unwrap_or_else(|| panic!("no email.failed event"));
    assert_eq!(failed_event.login_id.as_deref(), Some(failing_login.as_str()));
    assert_eq!(failed_event.reason.as_deref(), Some("recipient_rejected (550)"));
    assert!(events.iter().any(|e| e.kind == "email.sent" && e.login_id.as_deref() == Some(login_id.as_str())));
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

pub async fn events_are_recorded<S: Store>(store: S) {
    let p = project(&store).await;
    let mut login = new_login(&p, "ada@example.com", "e1", T0);
    login.ip_address = Some("198.51.100.7".into());
    login.user_agent = Some("Firefox".into());
    start(&store, login).await;
    verify(&store, by_token(&p, "bad", T0.plus_seconds(1))).await;
    verify(&store, by_token(&p, "e1", T0.plus_seconds(2))).await;
    let events = store.list_events(&p, 10).await.unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["auth.verified", "auth.failed", "auth.started"], "newest first");
    assert_eq!(events[2].ip_address.as_deref(), Some("198.51.100.7"));
    assert_eq!(events[2].user_agent.as_deref(), Some("Firefox"));
    assert_eq!(events[1].reason.as_deref(), Some("token_invalid"));
    assert!(events[0].user_id.is_some());
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(store.list_events("prj_other", 10).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
}

/// Backends may commit concurrent operations together (SQLite's group
/// commit); an operation that fails must roll back alone, and every other
/// one must be there afterwards.
pub async fn a_failed_operation_does_not_undo_concurrent_ones<S: Store>(store: S) {
    let taken = project(&store).await;
    let attempts = (0..20).map(|i| {
        let store = store.clone();
        let id = if i % 4 == 0 { taken.clone() } else { IdKind::Project.generate() };
        let key = key_for(&id, &format!("seed-{i}"));
        tokio::spawn(async move {
            let p = NewProject { id: id.clone(), settings: settings("P"), is_dev: false, created_at: T0 };
            (id, key.key_hash, store.create_project(p, key, false).await)
        })
    });
    for joined in futures::future::join_all(attempts).await {
        let (id, key_hash, result) = joined.unwrap_or_else(|e| panic!("{e}"));
        let key = store.find_api_key(&key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        if id == taken {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
            assert!(key.is_none(), "a failed create leaves no key behind");
        } else {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(key.map(|k| k.project.id), Some(id), "a concurrent success is kept");
        }
    }
}

/// The same on the hot path, which both backends group-commit: a start that
/// fails (here its token hash is taken, which the schema refuses) fails
/// alone; the starts that ran beside it are kept, and work.
pub async fn a_failed_start_does_not_undo_concurrent_starts<S: Store>(store: S) {
    let project_id = project(&store).await;
    let first = new_login(&project_id, "first@example.com", "tok-taken", T0);
    assert!(matches!(start(&store, first).await, StartOutcome::Started));
    let attempts = (0..20).map(|i| {
        let store = store.clone();
        let token = if i % 4 == 0 { "tok-taken".to_string() } else { format!("tok-{i}") };
        let login = new_login(&project_id, &format!("u{i}@example.com"), &token, T0);
        tokio::spawn(async move { (token, store.start_login(login).await) })
    });
    for joined in futures::future::join_all(attempts).await {
        let (token, result) = joined.unwrap_or_else(|e| panic!("{e}"));
        if token == "tok-taken" {
            assert!(result.is_err(), "a taken token hash must be refused: {result:?}");
        } else {
            assert!(matches!(result, Ok(StartOutcome::Started)), "{result:?}");
            let login = verified(verify(&store, by_token(&project_id, &token, T0.plus_seconds(1))).await);
            assert!(login.user.email.starts_with('u'), "{}", login.user.email);
        }
    }
    let first = verified(verify(&store, by_token(&project_id, "tok-taken", T0.plus_seconds(1))).await);
    assert_eq!(first.user.email, "first@example.com", "the refused starts left the first login alone");
}

/// Starts that arrive together (and so share a write batch, which a backend
/// may write in one statement) are limited exactly as if they came one by
/// one: the project's limit, a recipient's and an IP address's.
pub async fn concurrent_starts_obey_every_limit<S: Store>(store: S) {
    async fn all_at_once<S: Store>(store: &S, logins: Vec<NewLogin>) -> Vec<(NewLogin, StartOutcome)> {
        let runs = logins.into_iter().map(|login| {
            let store = store.clone();
            tokio::spawn(async move { (login.clone(), start(&store, login).await) })
        });
        futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
    }
    fn tally(outcomes: &[(NewLogin, StartOutcome)]) -> (usize, Vec<LimitKind>) {
        let started = outcomes.iter().filter(|(_, o)| *o == StartOutcome::Started).count();
        let limits = outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                StartOutcome::RateLimited { limit, .. } => Some(*limit),
                _ => None,
            })
            .collect();
        (started, limits)
    }

    // The project's limit: 14 distinct recipients against 10 a minute.
    let small = project(&store).await;
    let mut s = settings("Small");
    s.emails_per_minute = 10;
    store.update_project(&small, s).await.unwrap_or_else(|e| panic!("{e}"));
    let logins = (0..14)
        .map(|i| {
            let mut l = new_login(&small, &format!("p{i}@example.com"), &format!("p{i}"), T0);
            l.limits.per_project_per_minute = 10;
            l
        })
        .collect();
    let (started, limits) = tally(&all_at_once(&store, logins).await);
    assert_eq!(started, 10);
    assert_eq!(limits, vec![LimitKind::Project; 4]);

    // One recipient 8 times and one IP address 32 times, in the same wave.
    let p = project(&store).await;
    let mut logins: Vec<NewLogin> =
        (0..8).map(|i| new_login(&p, "ada@example.com", &format!("ada{i}"), T0.plus_seconds(1))).collect();
    logins.extend((0..32).map(|i| {
        let mut l = new_login(&p, &format!("ip{i}@example.com"), &format!("ip{i}"), T0.plus_seconds(1));
        l.ip_address = Some("203.0.113.7".into());
        l
    }));
    let outcomes = all_at_once(&store, logins).await;
    let ada: Vec<_> = outcomes.iter().filter(|(l, _)| l.email == "ada@example.com").cloned().collect();
    let by_ip: Vec<_> = outcomes.iter().filter(|(l, _)| l.ip_address.is_some()).cloned().collect();
    let per_ip = usize::try_from(PER_IP_STARTS_PER_MINUTE).unwrap_or_default();
    let per_recipient = usize::try_from(PER_RECIPIENT_EMAILS).unwrap_or_default();
    assert_eq!(tally(&ada), (per_recipient, vec![LimitKind::Recipient; 8 - per_recipient]));
    assert_eq!(tally(&by_ip), (per_ip, vec![LimitKind::IpAddress; 32 - per_ip]));

    // What was started is whole: every started login verifies, a refused one
    // does not exist, and each refusal left its event.
    for (login, outcome) in &outcomes {
        let view = store.get_login(&p, &login.id, T0.plus_seconds(2)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(view.is_some(), *outcome == StartOutcome::Started, "{outcome:?}");
    }
    let events = store.list_events(&p, 200).await.unwrap_or_else(|e| panic!("{e}"));
    let count = |kind: &str, reason: Option<&str>| {
        events.iter().filter(|e| e.kind == kind && e.reason.as_deref() == reason).count()
    };
    assert_eq!(count("auth.started", None), per_recipient + per_ip);
    assert_eq!(count("rate_limited", Some("recipient")), 8 - per_recipient);
    assert_eq!(count("rate_limited", Some("ip_address")), 32 - per_ip);
    for (login, _) in by_ip.iter().filter(|(_, o)| *o == StartOutcome::Started).take(3) {
        let token = login.email.trim_end_matches("@example.com");
        let verified_login = verified(verify(&store, by_token(&p, token, T0.plus_seconds(2))).await);
        assert_eq!(verified_login.user.email, login.email);
    }
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
            .filter(|e| e.login_id.as_deref() == Some(login_id.as_str()) && e.kind.starts_with("email."))
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

/// Verifies that arrive together (and so share a write batch, which a
/// backend may write in one statement) are each decided as if alone: two
/// logins of one recipient make one user, new to exactly one of them; a
/// replayed token, a wrong PKCE verifier, an expired login and another
/// project's token are refused with their own reasons.
pub async fn concurrent_verifies_are_each_decided_alone<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    for i in 0..12 {
        start(&store, new_login(&p, &format!("v{i}@example.com"), &format!("v{i}"), T0)).await;
    }
    start(&store, new_login(&p, "twice@example.com", "twice-a", T0)).await;
    start(&store, new_login(&p, "twice@example.com", "twice-b", T0)).await;
    let mut pkce = new_login(&p, "pkce@example.com", "pkce", T0);
    pkce.code_challenge = Some("the-challenge".into());
    start(&store, pkce).await;
    let mut short = new_login(&p, "short@example.com", "short", T0);
    short.expires_at = T0.plus_seconds(5);
    start(&store, short).await;
    start(&store, new_login(&other, "elsewhere@example.com", "elsewhere", T0)).await;

    let now = T0.plus_seconds(10);
    // v3 is verified twice at once, and either request may win.
    let mut reqs: Vec<(&str, VerifyByToken)> =
        (0..12).map(|i| (if i == 3 { "replay" } else { "ok" }, by_token(&p, &format!("v{i}"), now))).collect();
    reqs.push(("twice", by_token(&p, "twice-a", now)));
    reqs.push(("twice", by_token(&p, "twice-b", now)));
    reqs.push(("replay", by_token(&p, "v3", now)));
    reqs.push(("pkce", by_token(&p, "pkce", now)));
    reqs.push(("expired", by_token(&p, "short", now)));
    reqs.push(("elsewhere", by_token(&p, "elsewhere", now)));
    let runs = reqs.into_iter().map(|(what, req)| {
        let store = store.clone();
        tokio::spawn(async move { (what, store.verify_by_token(req).await.unwrap_or_else(|e| panic!("{e}"))) })
    });
    let outcomes: Vec<(&str, VerifyOutcome)> =
        futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect();

    let mut twice = Vec::new();
    let mut v3 = Vec::new();
    for (what, outcome) in outcomes {
        match what {
            "ok" | "replay" => {
                if let VerifyOutcome::Verified(v) = &outcome {
                    assert!(v.is_new_user && v.user.email.starts_with('v'), "{v:?}");
                    assert_eq!(v.state.as_deref(), Some("st"));
                }
                if what == "replay" {
                    v3.push(outcome);
                } else {
                    verified(outcome);
                }
            }
            "twice" => twice.push(verified(outcome)),
            "pkce" => assert_eq!(failed(outcome), VerifyFailure::VerifierMismatch),
            "expired" => assert!(matches!(failed(outcome), VerifyFailure::Expired { .. })),
            "elsewhere" => assert_eq!(failed(outcome), VerifyFailure::Invalid),
            other => panic!("{other}"),
        }
    }
    // The token verified twice at once: one wins, the other sees it used.
    assert_eq!(v3.len(), 2);
    assert_eq!(v3.iter().filter(|o| matches!(o, VerifyOutcome::Verified(_))).count(), 1);
    assert!(v3.iter().any(|o| matches!(o, VerifyOutcome::Failed(VerifyFailure::Used { .. }))));
    // One recipient, two logins: one user, new to one of them.
    assert_eq!(twice.len(), 2);
    assert_eq!(twice[0].user, twice[1].user);
    assert_eq!(twice.iter().filter(|v| v.is_new_user).count(), 1);
    assert_ne!(twice[0].login_id, twice[1].login_id);
    // The refused PKCE login was not consumed: the right verifier still works.
    let mut right = by_token(&p, "pkce", now);
    right.verifier_challenge = Some("the-challenge".into());
    assert_eq!(verified(verify(&store, right).await).user.email, "pkce@example.com");

    let events = store.list_events(&p, 500).await.unwrap_or_else(|e| panic!("{e}"));
    let verified_events = events.iter().filter(|e| e.kind == "auth.verified").count();
    assert_eq!(verified_events, 12 + 2 + 1, "one auth.verified per consumed login");
    assert!(events.iter().all(|e| e.kind != "auth.verified" || e.user_id.is_some()));
}
