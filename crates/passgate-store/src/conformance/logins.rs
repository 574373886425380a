//! Conformance: logins.

use super::*;

fn limited(outcome: StartOutcome) -> (LimitKind, i64) {
    match outcome {
        StartOutcome::RateLimited { limit, retry_after_seconds } => (limit, retry_after_seconds),
        other => panic!("expected a rate limit, got {other:?}"),
    }
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
        new_user_id: UserId::generate(),
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
    let code_req = |login_id: &LoginId, code: &str| VerifyByCode {
        project_id: p.clone(),
        login_id: login_id.clone(),
        code_hash_candidates: vec![sha256(b"other-secret"), sha256(code.as_bytes())],
        verifier_challenge: None,
        now: T0,
        new_user_id: UserId::generate(),
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
    assert!(events.iter().any(|e| e.kind == EventKind::RateLimited && e.reason.as_deref() == Some("recipient")));
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
        l.ip_network = l.ip_address.clone();
        assert_eq!(start(&store, l).await, StartOutcome::Started);
    }
    let mut l = new_login(&p, "v@example.com", "v", T0.plus_seconds(1));
    l.ip_address = Some("203.0.113.9".into());
    l.ip_network = l.ip_address.clone();
    assert_eq!(limited(start(&store, l).await), (LimitKind::IpAddress, 59));
    let mut other_ip = new_login(&p, "w@example.com", "w", T0.plus_seconds(1));
    other_ip.ip_address = Some("203.0.113.10".into());
    other_ip.ip_network = other_ip.ip_address.clone();
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
        l.ip_network = l.ip_address.clone();
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
    let count = |kind: EventKind, reason: Option<&str>| {
        events.iter().filter(|e| e.kind == kind && e.reason.as_deref() == reason).count()
    };
    assert_eq!(count(EventKind::AuthStarted, None), per_recipient + per_ip);
    assert_eq!(count(EventKind::RateLimited, Some("recipient")), 8 - per_recipient);
    assert_eq!(count(EventKind::RateLimited, Some("ip_address")), 32 - per_ip);
    for (login, _) in by_ip.iter().filter(|(_, o)| *o == StartOutcome::Started).take(3) {
        let token = login.email.trim_end_matches("@example.com");
        let verified_login = verified(verify(&store, by_token(&p, token, T0.plus_seconds(2))).await);
        assert_eq!(verified_login.user.email, login.email);
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
    let verified_events = events.iter().filter(|e| e.kind == EventKind::AuthVerified).count();
    assert_eq!(verified_events, 12 + 2 + 1, "one auth.verified per consumed login");
    assert!(events.iter().all(|e| e.kind != EventKind::AuthVerified || e.user_id.is_some()));
}

/// Wrong codes count against their address across all of its logins
/// (SECURITY S12): ten in a row block every code of the address for 30 s —
/// the right one too — however many new logins were started; the block
/// ends on time, a right code starts the count over, and a wrong code
/// never learns whether a login is used, burned or expired.
pub async fn wrong_codes_count_per_address_across_logins<S: Store>(store: S) {
    let p = project(&store).await;
    let code_req = |login_id: &LoginId, code: &str, now: Timestamp| VerifyByCode {
        project_id: p.clone(),
        login_id: login_id.clone(),
        code_hash_candidates: vec![sha256(code.as_bytes())],
        verifier_challenge: None,
        now,
        new_user_id: UserId::generate(),
    };
    let by_code = |req: VerifyByCode| {
        let store = store.clone();
        async move { store.verify_by_code(req).await.unwrap_or_else(|e| panic!("{e}")) }
    };
    // Logins 16 minutes apart, so the per-recipient send limit never bites.
    let started = |i: i64, token: String| {
        let store = store.clone();
        let mut login = new_login(&p, "ada@example.com", &token, T0.plus_seconds(i * 960));
        login.code_hash = Some(sha256(b"123456"));
        async move {
            let id = login.id.clone();
            assert_eq!(store.start_login(login).await.unwrap_or_else(|e| panic!("{e}")), StartOutcome::Started);
            id
        }
    };
    let mut now = T0;
    let mut last = None;
    for i in 0..4 {
        let id = started(i, format!("budget-{i}")).await;
        now = T0.plus_seconds(i * 960 + 1);
        // Three wrong codes burn a login; the fourth login takes the tenth.
        let wrong = if i < 3 { 3 } else { 1 };
        for _ in 0..wrong {
            assert_eq!(failed(by_code(code_req(&id, "000000", now)).await), VerifyFailure::CodeInvalid);
        }
        last = Some(id);
    }
    let last = last.unwrap_or_else(|| panic!("no login"));
    let blocked_until = now.plus_seconds(30);
    assert_eq!(
        failed(by_code(code_req(&last, "123456", now.plus_seconds(29))).await),
        VerifyFailure::CodesBlocked { until: blocked_until },
        "blocked: even the right code"
    );
    let fresh = started(4, "budget-4".into()).await;
    let fresh_now = T0.plus_seconds(4 * 960 + 1);
    assert!(fresh_now < blocked_until.plus_seconds(3600) && fresh_now > blocked_until, "{fresh_now:?}");
    // The block ended; a new wrong code (the 11th in a row) blocks for 60 s.
    assert_eq!(failed(by_code(code_req(&fresh, "000000", fresh_now)).await), VerifyFailure::CodeInvalid);
    assert_eq!(
        failed(by_code(code_req(&fresh, "123456", fresh_now)).await),
        VerifyFailure::CodesBlocked { until: fresh_now.plus_seconds(60) },
        "each further wrong code doubles the block"
    );
    let after = fresh_now.plus_seconds(60);
    verified(by_code(code_req(&fresh, "123456", after)).await);
    // A right code started the count over: one wrong code blocks nothing.
    let next = started(5, "budget-5".into()).await;
    let next_now = T0.plus_seconds(5 * 960 + 1);
    assert_eq!(failed(by_code(code_req(&next, "000000", next_now)).await), VerifyFailure::CodeInvalid);
    // A used login: a wrong code learns nothing, the right one that it is used.
    assert!(matches!(failed(by_code(code_req(&fresh, "654321", next_now)).await), VerifyFailure::CodeInvalid));
    assert!(matches!(failed(by_code(code_req(&fresh, "123456", next_now)).await), VerifyFailure::Used { .. }));
    verified(by_code(code_req(&next, "123456", next_now)).await);
    // Another address of the project was never affected.
    let mut bob = new_login(&p, "bob@example.com", "budget-bob", now);
    bob.code_hash = Some(sha256(b"222222"));
    let bob_id = bob.id.clone();
    start(&store, bob).await;
    verified(by_code(code_req(&bob_id, "222222", now.plus_seconds(1))).await);
}

/// `passgate dev --reset-limits`: a dev project's limits count from zero
/// again, its users stay; another project is left as it was.
pub async fn a_dev_projects_logins_can_be_forgotten<S: Store>(store: S) {
    let dev = ProjectId::generate();
    let p = NewProject { id: dev.clone(), settings: settings("Dev"), is_dev: true, created_at: T0 };
    store.create_project(p, key_for(&dev, dev.as_str()), false).await.unwrap_or_else(|e| panic!("{e}"));
    let other = project(&store).await;
    let claim = || IdempotencyClaim {
        key: "idem-dev".into(),
        fingerprint: sha256(b"req"),
        response_status: 202,
        response_body: "first".into(),
    };
    for p in [&dev, &other] {
        for i in 0..PER_RECIPIENT_EMAILS {
            let mut login = new_login(p, "ada@example.com", &format!("{p}-{i}"), T0.plus_seconds(i));
            login.email_payload_sealed = p.as_str().as_bytes().to_vec();
            if i == 0 {
                login.idempotency = Some(claim());
            }
            assert_eq!(start(&store, login).await, StartOutcome::Started);
        }
        let (kind, _) =
            limited(start(&store, new_login(p, "ada@example.com", &format!("{p}-over"), T0.plus_seconds(9))).await);
        assert_eq!(kind, LimitKind::Recipient);
    }
    // A user of the dev project, made by verifying one of its logins.
    let user_id = verified(verify(&store, by_token(&dev, &format!("{dev}-1"), T0.plus_seconds(10))).await).user.id;

    let forgotten = store.forget_dev_logins(&dev).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forgotten, u64::try_from(PER_RECIPIENT_EMAILS).unwrap_or_default());
    assert!(matches!(store.forget_dev_logins(&other).await, Err(StoreError::NotFound)), "not a dev project");
    assert!(matches!(store.forget_dev_logins(&ProjectId::generate()).await, Err(StoreError::NotFound)));

    // The dev project's emails not yet sent are gone; the other's stay.
    let queued = store.queued_payloads(100).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!queued.iter().any(|payload| payload == dev.as_str().as_bytes()), "a dev email still queued");
    let others = queued.iter().filter(|payload| *payload == other.as_str().as_bytes()).count();
    assert_eq!(others, usize::try_from(PER_RECIPIENT_EMAILS).unwrap_or_default());

    let now = T0.plus_seconds(20);
    // The recipient limit counts from zero; the idempotency key is free again.
    let mut again = new_login(&dev, "ada@example.com", "dev-again", now);
    again.idempotency = Some(claim());
    assert_eq!(start(&store, again).await, StartOutcome::Started);
    let (kind, _) = limited(start(&store, new_login(&other, "ada@example.com", "other-again", now)).await);
    assert_eq!(kind, LimitKind::Recipient, "another project's limits stay");
    // The user stays: verifying again finds the same user, not a new one.
    let returning = verified(verify(&store, by_token(&dev, "dev-again", now.plus_seconds(1))).await);
    assert!(!returning.is_new_user);
    assert_eq!(returning.user.id, user_id);
}
