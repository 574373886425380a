//! Conformance: email one-time codes.

use std::sync::atomic::{AtomicU64, Ordering};

use passgate_core::otp::{
    MAX_OTP_FAILURES, OTP_LIVE_CODES, OTP_SEND_WINDOW_SECONDS, OTP_SENDS_PER_EMAIL, OTP_TTL_DEFAULT_SECONDS,
};
use passgate_core::{EmailId, OtpId, SessionId};

use super::*;

/// The default send limits of a project.
pub fn otp_limits() -> OtpLimits {
    OtpLimits {
        sends_per_email: OTP_SENDS_PER_EMAIL,
        window_seconds: OTP_SEND_WINDOW_SECONDS,
        live_codes: OTP_LIVE_CODES,
        per_project_per_minute: EMAILS_PER_MINUTE_DEFAULT,
    }
}

/// A code to `email` sent at `now`; `code` seeds its hash. Live for the
/// default lifetime, with no target key.
pub fn new_otp(project_id: &ProjectId, email: &str, code: &str, now: Timestamp) -> NewOtp {
    NewOtp {
        id: OtpId::generate(),
        project_id: project_id.clone(),
        email: email.to_string(),
        code_hash: sha256(code.as_bytes()),
        target_public_key: None,
        ip_address: None,
        user_agent: None,
        created_at: now,
        expires_at: now.plus_seconds(OTP_TTL_DEFAULT_SECONDS),
        email_id: EmailId::generate(),
        email_payload_sealed: vec![4, 5, 6],
        email_lease: None,
        limits: otp_limits(),
        idempotency: None,
    }
}

/// A target key (uncompressed hex), one per `n`.
pub fn target_key(n: u8) -> String {
    format!("04{}", format!("{n:02x}").repeat(64))
}

/// Public keys of offered session keys: unique within a run.
static OFFERS: AtomicU64 = AtomicU64::new(1);

/// A session key offered at `now`, live for `ttl_seconds`.
pub fn session_offer(now: Timestamp, ttl_seconds: i64) -> SessionOffer {
    let n = OFFERS.fetch_add(1, Ordering::Relaxed);
    SessionOffer {
        id: SessionId::generate(),
        public_key: format!("02{n:064x}"),
        expires_at: now.plus_seconds(ttl_seconds),
    }
}

/// A verify of `otp_id` with `code` at `now`, without a target key.
pub fn code_req(project_id: &ProjectId, otp_id: &OtpId, code: &str, now: Timestamp) -> VerifyOtp {
    VerifyOtp {
        project_id: project_id.clone(),
        otp_id: otp_id.clone(),
        code_hash_candidates: vec![sha256(b"previous-secret"), sha256(code.as_bytes())],
        target_public_key: None,
        session: Some(session_offer(now, SESSION_TTL_DEFAULT_SECONDS)),
        now,
        new_user_id: UserId::generate(),
    }
}

pub(crate) async fn send_code<S: Store>(store: &S, otp: NewOtp) -> StartOutcome {
    store.send_otp(otp).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Sends a code that must be accepted; its id.
pub(crate) async fn sent_code<S: Store>(store: &S, otp: NewOtp) -> OtpId {
    let id = otp.id.clone();
    let outcome = send_code(store, otp).await;
    assert_eq!(outcome, StartOutcome::Started, "send of {id}");
    id
}

/// The session key a verify offers (every `code_req` offers one).
pub(crate) fn offered_of(req: &VerifyOtp) -> SessionOffer {
    req.session.clone().unwrap_or_else(|| panic!("code_req offers a session key"))
}

pub(crate) async fn check_code<S: Store>(store: &S, req: VerifyOtp) -> OtpVerifyOutcome {
    store.verify_otp(req).await.unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn code_verified(outcome: OtpVerifyOutcome) -> VerifiedOtp {
    match outcome {
        OtpVerifyOutcome::Verified(v) => v,
        OtpVerifyOutcome::Failed(f) => panic!("expected success, got {f:?}"),
        OtpVerifyOutcome::NeedsSessionKey { .. } => panic!("expected success, got a request for a session key"),
    }
}

pub(crate) fn code_refused(outcome: OtpVerifyOutcome) -> OtpFailure {
    match outcome {
        OtpVerifyOutcome::Failed(f) => f,
        OtpVerifyOutcome::Verified(v) => panic!("expected failure, got success for {}", v.otp_id),
        OtpVerifyOutcome::NeedsSessionKey { .. } => panic!("expected failure, got a request for a session key"),
    }
}

/// A user signed in at `now` with a code sent at `now` to `email` with a
/// target key, and the session key registered for them (live for
/// `ttl_seconds`), with its public key.
pub(crate) async fn signed_in<S: Store>(
    store: &S,
    project_id: &ProjectId,
    email: &str,
    now: Timestamp,
    ttl_seconds: i64,
) -> (User, CreatedSession, String) {
    let mut otp = new_otp(project_id, email, "signed-in", now);
    otp.target_public_key = Some(target_key(0xaa));
    let id = sent_code(store, otp).await;
    let mut req = code_req(project_id, &id, "signed-in", now);
    let offer = session_offer(now, ttl_seconds);
    let public_key = offer.public_key.clone();
    req.session = Some(offer);
    let v = code_verified(check_code(store, req).await);
    let session = v.session.unwrap_or_else(|| panic!("a target key was given at send: a session key is due"));
    (v.user, session, public_key)
}

pub(crate) async fn live<S: Store>(store: &S, public_key: &str, now: Timestamp) -> Option<Session> {
    store.live_session(public_key, now).await.unwrap_or_else(|e| panic!("{e}"))
}

fn limited(outcome: StartOutcome) -> (LimitKind, i64) {
    match outcome {
        StartOutcome::RateLimited { limit, retry_after_seconds } => (limit, retry_after_seconds),
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

async fn events_of<S: Store>(store: &S, project_id: &ProjectId) -> Vec<Event> {
    store.list_events(project_id, 500).await.unwrap_or_else(|e| panic!("{e}"))
}

/// A code is sent, verified once (creating the user), and then answers
/// that it was used; each step leaves its event.
pub async fn a_code_is_sent_then_verified_once<S: Store>(store: S) {
    let p = project(&store).await;
    let id = sent_code(&store, new_otp(&p, "ada@example.com", "123456", T0)).await;
    let at = T0.plus_seconds(30);
    let v = code_verified(check_code(&store, code_req(&p, &id, "123456", at)).await);
    assert_eq!(v.otp_id, id);
    assert!(v.is_new_user);
    assert_eq!(v.user.email, "ada@example.com");
    assert_eq!(v.user.project_id, p);
    assert_eq!(v.user.created_at, at);
    assert_eq!(v.session, None, "no target key: no session key");
    let user = store.find_user(&p, "ada@example.com").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(user.as_ref(), Some(&v.user));

    let again = code_refused(check_code(&store, code_req(&p, &id, "123456", at.plus_seconds(1))).await);
    assert_eq!(again, OtpFailure::Used { used_at: at });

    let events = events_of(&store, &p).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["otp.failed", "otp.verified", "otp.sent"], "newest first");
    let (failed, verified, sent) = (&events[0], &events[1], &events[2]);
    assert_eq!(
        (sent.otp_id.as_ref(), sent.email.as_deref(), sent.created_at),
        (Some(&id), Some("ada@example.com"), T0)
    );
    assert_eq!(sent.user_id, None);
    assert_eq!(verified.otp_id.as_ref(), Some(&id));
    assert_eq!(verified.user_id.as_ref(), Some(&v.user.id));
    assert_eq!(verified.created_at, at);
    assert_eq!((failed.otp_id.as_ref(), failed.reason.as_deref()), (Some(&id), Some("otp_used")));

    // A second code to the address finds the same user.
    let second = sent_code(&store, new_otp(&p, "ada@example.com", "654321", at)).await;
    let w = code_verified(check_code(&store, code_req(&p, &second, "654321", at.plus_seconds(2))).await);
    assert!(!w.is_new_user);
    assert_eq!(w.user, v.user);
}

/// A code answers only to its own `otpId` in its own project: the right
/// code under another project, another code's id or an unknown id is
/// `Invalid`, and none of those uses it up.
pub async fn codes_belong_to_their_otp_id_and_project<S: Store>(store: S) {
    let a = project(&store).await;
    let b = project(&store).await;
    let first = sent_code(&store, new_otp(&a, "ada@example.com", "111111", T0)).await;
    let second = sent_code(&store, new_otp(&a, "ada@example.com", "222222", T0.plus_seconds(1))).await;
    let now = T0.plus_seconds(2);
    assert_eq!(code_refused(check_code(&store, code_req(&b, &first, "111111", now)).await), OtpFailure::Invalid);
    assert_eq!(
        code_refused(check_code(&store, code_req(&a, &OtpId::generate(), "111111", now)).await),
        OtpFailure::Invalid
    );
    assert_eq!(
        code_refused(check_code(&store, code_req(&a, &second, "111111", now)).await),
        OtpFailure::Invalid,
        "another code of the same address"
    );
    assert!(store.find_user(&b, "ada@example.com").await.unwrap_or_else(|e| panic!("{e}")).is_none());
    assert_eq!(code_verified(check_code(&store, code_req(&a, &first, "111111", now)).await).otp_id, first);
    assert_eq!(code_verified(check_code(&store, code_req(&a, &second, "222222", now)).await).otp_id, second);
    let refused: Vec<Event> =
        events_of(&store, &b).await.into_iter().filter(|e| e.kind == EventKind::OtpFailed).collect();
    assert_eq!(refused.len(), 1, "the refusal is recorded in the project asked");
    assert_eq!(refused[0].reason.as_deref(), Some("otp_invalid"));
}

/// Three wrong codes lock a code (SECURITY S11): the right one is refused
/// after that, without a time; another code of the address still works.
pub async fn three_wrong_codes_lock_the_code<S: Store>(store: S) {
    let p = project(&store).await;
    let id = sent_code(&store, new_otp(&p, "ada@example.com", "123456", T0)).await;
    let now = T0.plus_seconds(1);
    for i in 0..MAX_OTP_FAILURES {
        let wrong = code_req(&p, &id, "000000", now.plus_millis(i));
        assert_eq!(code_refused(check_code(&store, wrong).await), OtpFailure::Invalid);
    }
    assert_eq!(
        code_refused(check_code(&store, code_req(&p, &id, "123456", now.plus_millis(10))).await),
        OtpFailure::Locked { until: None },
        "a locked code refuses the right code"
    );
    assert_eq!(
        code_refused(check_code(&store, code_req(&p, &id, "123456", now.plus_seconds(60))).await),
        OtpFailure::Locked { until: None },
        "for good"
    );
    let reasons: Vec<Option<String>> = events_of(&store, &p)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::OtpFailed)
        .map(|e| e.reason)
        .rev()
        .collect();
    let invalid = Some("otp_invalid".to_string());
    let locked = Some("otp_locked".to_string());
    assert_eq!(reasons, [invalid.clone(), invalid.clone(), invalid, locked.clone(), locked]);

    let other = sent_code(&store, new_otp(&p, "ada@example.com", "654321", now)).await;
    code_verified(check_code(&store, code_req(&p, &other, "654321", now)).await);
}

/// Wrong codes count against their address across its codes (SECURITY
/// S12): the tenth in a row blocks every code of the address for 30 s —
/// the right code of a fresh one too — and new codes are refused meanwhile;
/// another address is not affected; once the block ends a right code
/// verifies and starts the count over.
pub async fn wrong_codes_count_per_address_across_codes<S: Store>(store: S) {
    let p = project(&store).await;
    let ada = "ada@example.com";
    // Three codes take three wrong codes each: nine in a row, each code locked.
    let mut locked = Vec::new();
    for i in 0..3 {
        locked.push(sent_code(&store, new_otp(&p, ada, &format!("c{i}"), T0.plus_seconds(i))).await);
    }
    for id in &locked {
        for _ in 0..MAX_OTP_FAILURES {
            let f = code_refused(check_code(&store, code_req(&p, id, "wrong", T0.plus_seconds(10))).await);
            assert_eq!(f, OtpFailure::Invalid);
        }
    }
    // Past the send window, two fresh codes; the tenth wrong code blocks.
    let t1 = T0.plus_seconds(OTP_SEND_WINDOW_SECONDS + 1);
    let c3 = sent_code(&store, new_otp(&p, ada, "c3", t1)).await;
    let c4 = sent_code(&store, new_otp(&p, ada, "c4", t1)).await;
    assert_eq!(code_refused(check_code(&store, code_req(&p, &c3, "wrong", t1)).await), OtpFailure::Invalid);
    let until = t1.plus_seconds(CODE_BLOCK_FIRST_SECONDS);
    assert_eq!(
        code_refused(check_code(&store, code_req(&p, &c4, "c4", t1)).await),
        OtpFailure::Locked { until: Some(until) },
        "blocked: even the right code of a fresh code"
    );
    assert_eq!(
        code_refused(check_code(&store, code_req(&p, &c3, "c3", until.plus_millis(-1))).await),
        OtpFailure::Locked { until: Some(until) }
    );
    assert_eq!(
        code_refused(check_code(&store, code_req(&p, &c4, "wrong", t1)).await),
        OtpFailure::Locked { until: Some(until) },
        "a wrong code during the block compares nothing"
    );
    assert_eq!(
        limited(send_code(&store, new_otp(&p, ada, "c5", t1)).await),
        (LimitKind::CodesBlocked, CODE_BLOCK_FIRST_SECONDS),
        "no new code while blocked"
    );
    assert_eq!(limited(send_code(&store, new_otp(&p, ada, "c5", t1.plus_seconds(10))).await).1, 20);
    let events = events_of(&store, &p).await;
    assert!(events.iter().any(|e| e.kind == EventKind::RateLimited && e.reason.as_deref() == Some("codes_blocked")));

    // Another address of the project is not affected.
    let bob = sent_code(&store, new_otp(&p, "bob@example.com", "b1", t1)).await;
    code_verified(check_code(&store, code_req(&p, &bob, "b1", t1)).await);

    // The block ends on time; the right code verifies and the count starts over.
    code_verified(check_code(&store, code_req(&p, &c4, "c4", until)).await);
    assert_eq!(code_refused(check_code(&store, code_req(&p, &c3, "wrong", until)).await), OtpFailure::Invalid);
    let v = code_verified(check_code(&store, code_req(&p, &c3, "c3", until)).await);
    assert_eq!(v.user.email, ada, "one wrong code after the reset blocks nothing");
    assert_eq!(send_code(&store, new_otp(&p, ada, "c6", until)).await, StartOutcome::Started);
}

/// The send limits of an address — three sends per window, three live
/// codes (a used or locked code frees a place) — and the project's emails
/// per minute; a refused send stores nothing and records `rate_limited`.
pub async fn sends_obey_the_limits<S: Store>(store: S) {
    let p = project(&store).await;
    for i in 0..OTP_SENDS_PER_EMAIL {
        sent_code(&store, new_otp(&p, "ada@example.com", &format!("a{i}"), T0.plus_seconds(i))).await;
    }
    let over = new_otp(&p, "ada@example.com", "a-over", T0.plus_seconds(60));
    let over_id = over.id.clone();
    assert_eq!(limited(send_code(&store, over).await), (LimitKind::Recipient, OTP_SEND_WINDOW_SECONDS - 60));
    let f = code_refused(check_code(&store, code_req(&p, &over_id, "a-over", T0.plus_seconds(61))).await);
    assert_eq!(f, OtpFailure::Invalid, "a refused send stores no code");
    // Once the window moved, the address's three live codes still hold it back.
    let later = new_otp(&p, "ada@example.com", "a-later", T0.plus_seconds(OTP_SEND_WINDOW_SECONDS + 1));
    assert_eq!(limited(send_code(&store, later).await).0, LimitKind::LiveCodes);

    // Live codes: sends 61 s apart keep the window open; each lives 10 min.
    let bob = "bob@example.com";
    let lasting = |code: &str, at: Timestamp| {
        let mut otp = new_otp(&p, bob, code, at);
        otp.expires_at = at.plus_seconds(600);
        otp
    };
    let mut codes = Vec::new();
    for i in 0..OTP_LIVE_CODES {
        codes.push(sent_code(&store, lasting(&format!("b{i}"), T0.plus_seconds(i * 61))).await);
    }
    let now = T0.plus_seconds(200);
    assert_eq!(limited(send_code(&store, lasting("b-over", now)).await), (LimitKind::LiveCodes, 400));
    code_verified(check_code(&store, code_req(&p, &codes[0], "b0", now)).await);
    let b3 = T0.plus_seconds(202);
    codes.push(sent_code(&store, lasting("b3", b3)).await);
    let now = T0.plus_seconds(260);
    assert_eq!(limited(send_code(&store, lasting("b-over", now)).await), (LimitKind::LiveCodes, 401));
    for _ in 0..MAX_OTP_FAILURES {
        code_refused(check_code(&store, code_req(&p, &codes[1], "wrong", now)).await);
    }
    sent_code(&store, lasting("b4", now.plus_seconds(1))).await;
    // …and an expired one.
    let expiring = T0.plus_seconds(122 + 600);
    assert_eq!(limited(send_code(&store, lasting("b-over", expiring.plus_millis(-1))).await).0, LimitKind::LiveCodes);
    sent_code(&store, lasting("b5", expiring)).await;

    let reasons: Vec<String> = events_of(&store, &p)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::RateLimited)
        .filter_map(|e| e.reason)
        .rev()
        .collect();
    assert_eq!(reasons, ["recipient", "live_codes", "live_codes", "live_codes", "live_codes"]);

    // The project's emails per minute (shared with links).
    let q = project(&store).await;
    let per_minute = |email: &str, at: Timestamp| {
        let mut otp = new_otp(&q, email, "q", at);
        otp.limits.per_project_per_minute = 3;
        otp
    };
    start(&store, new_login(&q, "link@example.com", "q-link", T0)).await;
    for i in 0..2 {
        sent_code(&store, per_minute(&format!("u{i}@example.com"), T0)).await;
    }
    assert_eq!(
        limited(send_code(&store, per_minute("x@example.com", T0.plus_seconds(10))).await),
        (LimitKind::Project, 50)
    );
    let events = events_of(&store, &q).await;
    assert!(events.iter().any(|e| e.kind == EventKind::RateLimited && e.reason.as_deref() == Some("project")));
    assert!(events.iter().all(|e| e.kind != EventKind::RateLimited || e.email.as_deref() == Some("x@example.com")));
}

/// A code lives until just before `expires_at`: the right code verifies a
/// millisecond before, and is `Expired` at that instant (a wrong one is
/// merely `Invalid`).
pub async fn expiry_is_exact<S: Store>(store: S) {
    let p = project(&store).await;
    let early = sent_code(&store, new_otp(&p, "ada@example.com", "early", T0)).await;
    let expires = T0.plus_seconds(OTP_TTL_DEFAULT_SECONDS);
    code_verified(check_code(&store, code_req(&p, &early, "early", expires.plus_millis(-1))).await);

    let late = sent_code(&store, new_otp(&p, "ada@example.com", "late", T0)).await;
    assert_eq!(code_refused(check_code(&store, code_req(&p, &late, "wrong", expires)).await), OtpFailure::Invalid);
    assert_eq!(
        code_refused(check_code(&store, code_req(&p, &late, "late", expires)).await),
        OtpFailure::Expired { expired_at: expires }
    );
}

/// `Idempotency-Key` on sends: the same key and request answer what the
/// first send answered (even once the limits would refuse) and store
/// nothing; the same key with another request is a conflict; keys belong
/// to their project.
pub async fn sends_are_idempotent<S: Store>(store: S) {
    let p = project(&store).await;
    let claim = |fingerprint: &[u8], body: &str| IdempotencyClaim {
        key: "idem-otp".into(),
        fingerprint: sha256(fingerprint),
        response_status: 200,
        response_body: body.to_string(),
    };
    let mut first = new_otp(&p, "ada@example.com", "first", T0);
    first.idempotency = Some(claim(b"req", "first"));
    sent_code(&store, first).await;
    let mut repeat = new_otp(&p, "ada@example.com", "repeat", T0.plus_seconds(5));
    let repeat_id = repeat.id.clone();
    repeat.idempotency = Some(claim(b"req", "second"));
    assert_eq!(send_code(&store, repeat).await, StartOutcome::Replayed { status: 200, body: "first".into() });
    let f = code_refused(check_code(&store, code_req(&p, &repeat_id, "repeat", T0.plus_seconds(6))).await);
    assert_eq!(f, OtpFailure::Invalid, "a replay stores no code");
    // The replay did not count: two more sends fill the window.
    for i in 0..OTP_SENDS_PER_EMAIL - 1 {
        sent_code(&store, new_otp(&p, "ada@example.com", &format!("more{i}"), T0.plus_seconds(7))).await;
    }
    let mut again = new_otp(&p, "ada@example.com", "again", T0.plus_seconds(8));
    again.idempotency = Some(claim(b"req", "third"));
    assert_eq!(send_code(&store, again).await, StartOutcome::Replayed { status: 200, body: "first".into() });

    let mut different = new_otp(&p, "bob@example.com", "different", T0.plus_seconds(9));
    different.idempotency = Some(claim(b"other", "fourth"));
    assert_eq!(send_code(&store, different).await, StartOutcome::IdempotencyConflict);

    let other = project(&store).await;
    let mut elsewhere = new_otp(&other, "ada@example.com", "elsewhere", T0);
    elsewhere.idempotency = Some(claim(b"other", "x"));
    assert_eq!(send_code(&store, elsewhere).await, StartOutcome::Started);
}

/// Target keys: one given at send is used when none is given at verify;
/// another at verify is refused before the code is compared, and neither
/// uses the code nor counts; one given only at verify is used; with none
/// there is no session key.
pub async fn target_keys_decide_the_session_key<S: Store>(store: S) {
    let p = project(&store).await;
    let at_send = target_key(0x01);
    let now = T0.plus_seconds(1);

    let mut otp = new_otp(&p, "a@example.com", "a", T0);
    otp.target_public_key = Some(at_send.clone());
    let id = sent_code(&store, otp).await;
    let req = code_req(&p, &id, "a", now);
    let offer = offered_of(&req);
    let v = code_verified(check_code(&store, req).await);
    let expected =
        CreatedSession { id: offer.id.clone(), expires_at: offer.expires_at, target_public_key: at_send.clone() };
    assert_eq!(v.session, Some(expected));
    let session = live(&store, &offer.public_key, now).await.unwrap_or_else(|| panic!("the session key is live"));
    let expected = Session {
        id: offer.id.clone(),
        project_id: p.clone(),
        user: v.user.clone(),
        created_at: now,
        expires_at: offer.expires_at,
    };
    assert_eq!(session, expected);

    // A mismatch, as often as it comes, neither uses nor locks the code.
    let mut otp = new_otp(&p, "b@example.com", "b", T0);
    otp.target_public_key = Some(at_send.clone());
    let id = sent_code(&store, otp).await;
    for _ in 0..=MAX_OTP_FAILURES {
        let mut mismatch = code_req(&p, &id, "b", now);
        mismatch.target_public_key = Some(target_key(0x02));
        let offered = offered_of(&mismatch).public_key;
        assert_eq!(code_refused(check_code(&store, mismatch).await), OtpFailure::TargetMismatch);
        assert_eq!(live(&store, &offered, now).await, None);
    }
    let mut matching = code_req(&p, &id, "b", now);
    matching.target_public_key = Some(at_send.clone());
    let v = code_verified(check_code(&store, matching).await);
    assert_eq!(v.session.map(|s| s.target_public_key), Some(at_send));

    // A key given at verify only.
    let id = sent_code(&store, new_otp(&p, "c@example.com", "c", T0)).await;
    let mut req = code_req(&p, &id, "c", now);
    req.target_public_key = Some(target_key(0x03));
    let offered = offered_of(&req).public_key;
    let v = code_verified(check_code(&store, req).await);
    assert_eq!(v.session.map(|s| s.target_public_key), Some(target_key(0x03)));
    assert!(live(&store, &offered, now).await.is_some());

    // No key at all: no session key.
    let id = sent_code(&store, new_otp(&p, "d@example.com", "d", T0)).await;
    let req = code_req(&p, &id, "d", now);
    let offered = offered_of(&req).public_key;
    assert_eq!(code_verified(check_code(&store, req).await).session, None);
    assert_eq!(live(&store, &offered, now).await, None);
    let events = events_of(&store, &p).await;
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::SessionCreated).count(), 3);
}

/// Fifty verifies of one code at once: one wins (and registers the one
/// session key), every other is told the code was used.
pub async fn fifty_concurrent_verifies_one_winner<S: Store>(store: S) {
    let p = project(&store).await;
    let mut otp = new_otp(&p, "race@example.com", "race", T0);
    otp.target_public_key = Some(target_key(0x07));
    let id = sent_code(&store, otp).await;
    let now = T0.plus_seconds(1);
    let requests: Vec<VerifyOtp> = (0..50).map(|_| code_req(&p, &id, "race", now)).collect();
    let offered: Vec<String> = requests.iter().map(|r| offered_of(r).public_key).collect();
    let attempts = requests.into_iter().map(|req| {
        let store = store.clone();
        tokio::spawn(async move { store.verify_otp(req).await })
    });
    let mut wins = Vec::new();
    for r in futures::future::join_all(attempts).await {
        match r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")) {
            OtpVerifyOutcome::Verified(v) => wins.push(v),
            OtpVerifyOutcome::Failed(f) => assert!(matches!(f, OtpFailure::Used { .. }), "{f:?}"),
            OtpVerifyOutcome::NeedsSessionKey { .. } => panic!("every verify offered a session key"),
        }
    }
    assert_eq!(wins.len(), 1);
    let mut live_keys = 0;
    for key in &offered {
        live_keys += usize::from(live(&store, key, now).await.is_some());
    }
    assert_eq!(live_keys, 1, "one session key registered");
    let events = events_of(&store, &p).await;
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::OtpVerified).count(), 1);
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::SessionCreated).count(), 1);
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::OtpFailed).count(), 49);
}

/// Erasing a user removes every one-time code to their address (a pending
/// one then answers `Invalid`) and every session key of theirs, and says
/// how many; another user's codes and keys stay.
pub async fn erasure_removes_codes_and_session_keys<S: Store>(store: S) {
    let p = project(&store).await;
    let (ada, first, first_key) = signed_in(&store, &p, "ada@example.com", T0, 3600).await;
    let (_, second, second_key) = signed_in(&store, &p, "ada@example.com", T0.plus_seconds(1), 3600).await;
    assert!(store.revoke_session(&p, &second.id, T0.plus_seconds(2)).await.unwrap_or_else(|e| panic!("{e}")));
    let pending = sent_code(&store, new_otp(&p, "ada@example.com", "pending", T0.plus_seconds(2))).await;
    let (bob, _, bob_key) = signed_in(&store, &p, "bob@example.com", T0, 3600).await;
    let bob_pending = sent_code(&store, new_otp(&p, "bob@example.com", "bob-pending", T0.plus_seconds(2))).await;

    let now = T0.plus_seconds(10);
    let erased = store.erase_user(&p, &ada.id, now).await.unwrap_or_else(|e| panic!("{e}"));
    let erased = erased.unwrap_or_else(|| panic!("nothing erased"));
    assert_eq!(erased.one_time_codes, 3, "two used codes and the pending one");
    assert_eq!(erased.sessions, 2, "the live key and the revoked one");
    assert_eq!(erased.logins, 0);

    let after = now.plus_seconds(1);
    assert_eq!(code_refused(check_code(&store, code_req(&p, &pending, "pending", after)).await), OtpFailure::Invalid);
    assert_eq!(live(&store, &first_key, after).await, None);
    assert_eq!(live(&store, &second_key, after).await, None);
    assert!(!store.revoke_session(&p, &first.id, after).await.unwrap_or_else(|e| panic!("{e}")));
    let events = events_of(&store, &p).await;
    assert!(events.iter().all(|e| e.email.as_deref() != Some("ada@example.com")), "{events:?}");

    assert_eq!(live(&store, &bob_key, after).await.map(|s| s.user), Some(bob.clone()));
    let v = code_verified(check_code(&store, code_req(&p, &bob_pending, "bob-pending", after)).await);
    assert_eq!(v.user, bob);

    // The address signs in again as a new user.
    let again = sent_code(&store, new_otp(&p, "ada@example.com", "again", after)).await;
    let v = code_verified(check_code(&store, code_req(&p, &again, "again", after)).await);
    assert!(v.is_new_user);
    assert_ne!(v.user.id, ada.id);
}

/// A verify that offers no session key, of a code sent with a target key,
/// is answered "needs a session key" (naming the key) with nothing read
/// further, counted or written — wrong code or right — and the same verify
/// with a session key succeeds.
pub async fn a_targeted_code_asks_for_a_session_key_and_counts_nothing<S: Store>(store: S) {
    let p = project(&store).await;
    let mut otp = new_otp(&p, "a@example.com", "a", T0);
    otp.target_public_key = Some(target_key(0x05));
    let id = sent_code(&store, otp).await;
    let events_before = events_of(&store, &p).await.len();
    for code in ["wrong", "wrong", "wrong", "a"] {
        let mut bare = code_req(&p, &id, code, T0);
        bare.session = None;
        let asked = OtpVerifyOutcome::NeedsSessionKey { target_public_key: target_key(0x05) };
        assert_eq!(check_code(&store, bare).await, asked);
    }
    assert_eq!(events_of(&store, &p).await.len(), events_before, "nothing recorded");
    let v = code_verified(check_code(&store, code_req(&p, &id, "a", T0)).await);
    assert_eq!(v.session.map(|s| s.target_public_key), Some(target_key(0x05)), "not locked: nothing was counted");

    // A code sent without a target key needs no offer.
    let id = sent_code(&store, new_otp(&p, "b@example.com", "b", T0)).await;
    let mut bare = code_req(&p, &id, "b", T0);
    bare.session = None;
    assert_eq!(code_verified(check_code(&store, bare).await).session, None);
}

/// Sends to one address at once obey its limits exactly (whatever runs
/// them in parallel), while sends to other addresses are not held up by
/// them; one `Idempotency-Key` sent at once with two requests stores one.
pub async fn concurrent_sends_obey_the_address_limits<S: Store>(store: S) {
    let p = project(&store).await;
    let sends = (0..12).map(|i| {
        let store = store.clone();
        let email = if i % 2 == 0 { "same@example.com".to_string() } else { format!("other{i}@example.com") };
        let otp = new_otp(&p, &email, "c", T0);
        tokio::spawn(async move { (email, store.send_otp(otp).await.unwrap_or_else(|e| panic!("{e}"))) })
    });
    let mut same_started = 0;
    for outcome in futures::future::join_all(sends).await {
        let (email, outcome) = outcome.unwrap_or_else(|e| panic!("{e}"));
        match (email.as_str(), outcome) {
            ("same@example.com", StartOutcome::Started) => same_started += 1,
            ("same@example.com", StartOutcome::RateLimited { limit, .. }) => {
                assert_eq!(limit, LimitKind::Recipient);
            }
            (_, StartOutcome::Started) => {}
            (email, other) => panic!("{email}: {other:?}"),
        }
    }
    assert_eq!(same_started, OTP_SENDS_PER_EMAIL, "exactly the address's sends per window");

    let claim = |body: &str| IdempotencyClaim {
        key: "same-key".into(),
        fingerprint: sha256(body.as_bytes()),
        response_status: 202,
        response_body: body.into(),
    };
    let racing = ["a", "b"].map(|body| {
        let store = store.clone();
        let mut otp = new_otp(&p, &format!("{body}@example.com"), "c", T0);
        otp.idempotency = Some(claim(body));
        tokio::spawn(async move { store.send_otp(otp).await.unwrap_or_else(|e| panic!("{e}")) })
    });
    let outcomes: Vec<StartOutcome> =
        futures::future::join_all(racing).await.into_iter().map(|o| o.unwrap_or_else(|e| panic!("{e}"))).collect();
    let started = outcomes.iter().filter(|o| **o == StartOutcome::Started).count();
    assert_eq!(started, 1, "one key, one stored send: {outcomes:?}");
    assert!(outcomes.contains(&StartOutcome::IdempotencyConflict), "{outcomes:?}");
}

/// S12 across both kinds of code: wrong link fallback codes and wrong
/// one-time codes of one address count toward one block, and a block made
/// by either refuses the other.
pub async fn link_codes_and_one_time_codes_share_one_budget<S: Store>(store: S) {
    let p = project(&store).await;
    let email = "ada@example.com";
    // Nine wrong link codes: three logins, each burned by three.
    for i in 0..3_i64 {
        let at = T0.plus_seconds(i * 960);
        let mut login = new_login(&p, email, &format!("shared-budget-{i}"), at);
        login.code_hash = Some(sha256(b"123456"));
        let login_id = login.id.clone();
        assert_eq!(store.start_login(login).await.unwrap_or_else(|e| panic!("{e}")), StartOutcome::Started);
        for _ in 0..3 {
            let wrong = VerifyByCode {
                project_id: p.clone(),
                login_id: login_id.clone(),
                code_hash_candidates: vec![sha256(b"000000")],
                verifier_challenge: None,
                now: at.plus_seconds(1),
                new_user_id: UserId::generate(),
            };
            let outcome = store.verify_by_code(wrong).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(outcome, VerifyOutcome::Failed(VerifyFailure::CodeInvalid)), "{outcome:?}");
        }
    }
    // The tenth, a wrong one-time code, blocks the address for both kinds.
    let now = T0.plus_seconds(3 * 960);
    let id = sent_code(&store, new_otp(&p, email, "right", now)).await;
    assert_eq!(code_refused(check_code(&store, code_req(&p, &id, "wrong", now)).await), OtpFailure::Invalid);
    let blocked = code_refused(check_code(&store, code_req(&p, &id, "right", now)).await);
    assert_eq!(blocked, OtpFailure::Locked { until: Some(now.plus_seconds(30)) });
    let mut login = new_login(&p, email, "shared-budget-link", now);
    login.code_hash = Some(sha256(b"123456"));
    let login_id = login.id.clone();
    assert_eq!(store.start_login(login).await.unwrap_or_else(|e| panic!("{e}")), StartOutcome::Started);
    let right = VerifyByCode {
        project_id: p.clone(),
        login_id,
        code_hash_candidates: vec![sha256(b"123456")],
        verifier_challenge: None,
        now,
        new_user_id: UserId::generate(),
    };
    let outcome = store.verify_by_code(right).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(outcome, VerifyOutcome::Failed(VerifyFailure::CodesBlocked { .. })),
        "a block made by a one-time code refuses a link's code too: {outcome:?}"
    );
}
