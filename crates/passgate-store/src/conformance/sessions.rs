//! Conformance: session keys, and the sign-in activity they show up in.

use passgate_core::{OtpId, SessionId};

use super::otp::{check_code, code_req, code_verified, live, new_otp, sent_code, session_offer, signed_in, target_key};
use super::*;

async fn revoke<S: Store>(store: &S, project_id: &ProjectId, id: &SessionId, now: Timestamp) -> bool {
    store.revoke_session(project_id, id, now).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn revoke_all<S: Store>(store: &S, project_id: &ProjectId, user_id: &UserId, now: Timestamp) -> Option<u64> {
    store.revoke_user_sessions(project_id, user_id, now).await.unwrap_or_else(|e| panic!("{e}"))
}

fn revoked_events(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| e.kind == EventKind::SessionRevoked).collect()
}

/// A session key is found by its public key, with its user, while it is
/// live: not from its expiry on, nor once revoked; revoking is scoped to
/// the project, happens once and records `session.revoked`.
pub async fn a_session_key_is_live_until_it_expires_or_is_revoked<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    let (ada, created, key) = signed_in(&store, &p, "ada@example.com", T0, SESSION_TTL_DEFAULT_SECONDS).await;
    let expires = T0.plus_seconds(SESSION_TTL_DEFAULT_SECONDS);
    assert_eq!(created.expires_at, expires);
    let expected = Session {
        id: created.id.clone(),
        project_id: p.clone(),
        user: ada.clone(),
        created_at: T0,
        expires_at: expires,
    };
    assert_eq!(live(&store, &key, T0.plus_seconds(1)).await, Some(expected.clone()));
    assert_eq!(live(&store, &key, expires.plus_millis(-1)).await, Some(expected));
    assert_eq!(live(&store, &key, expires).await, None, "expired at expires_at");
    assert_eq!(live(&store, "02ffff", T0).await, None);

    let now = T0.plus_seconds(2);
    assert!(!revoke(&store, &other, &created.id, now).await, "another project's session key");
    assert!(!revoke(&store, &p, &SessionId::generate(), now).await);
    assert!(live(&store, &key, now).await.is_some());
    assert!(revoke(&store, &p, &created.id, now).await);
    assert!(!revoke(&store, &p, &created.id, now.plus_seconds(1)).await, "revoked once");
    assert_eq!(live(&store, &key, now).await, None);

    // An expired session key is not live, so it cannot be revoked.
    let (_, short, _) = signed_in(&store, &p, "ada@example.com", T0.plus_seconds(3), 60).await;
    assert!(!revoke(&store, &p, &short.id, T0.plus_seconds(63)).await);

    let events = store.list_events(&p, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let revoked = revoked_events(&events);
    assert_eq!(revoked.len(), 1, "{events:?}");
    assert_eq!(revoked[0].session_id.as_ref(), Some(&created.id));
    assert_eq!(revoked[0].user_id.as_ref(), Some(&ada.id));
    assert_eq!(revoked[0].created_at, now);
    let created_events: Vec<&Event> = events.iter().filter(|e| e.kind == EventKind::SessionCreated).collect();
    assert_eq!(created_events.len(), 2);
    assert!(created_events.iter().any(|e| e.session_id.as_ref() == Some(&created.id)));
}

/// A user has at most `MAX_LIVE_SESSIONS` live session keys: registering
/// one more revokes the oldest (recording it); another user's keys stay.
pub async fn a_user_has_at_most_ten_live_session_keys<S: Store>(store: S) {
    let p = project(&store).await;
    let day = 24 * 60 * 60;
    let (_, _, bob_key) = signed_in(&store, &p, "bob@example.com", T0, day).await;
    let count = MAX_LIVE_SESSIONS + 1;
    let mut sessions = Vec::new();
    // A code each, 61 s apart (so three per 180 s), verified as it is sent.
    for i in 0..count {
        sessions.push(signed_in(&store, &p, "ada@example.com", T0.plus_seconds(i * 61), day).await);
    }
    let now = T0.plus_seconds(count * 61);
    let (_, oldest, oldest_key) = &sessions[0];
    assert_eq!(live(&store, oldest_key, now).await, None, "the oldest went");
    for (_, session, key) in &sessions[1..] {
        assert_eq!(live(&store, key, now).await.map(|s| s.id), Some(session.id.clone()));
    }
    assert!(live(&store, &bob_key, now).await.is_some(), "another user's key stays");

    let events = store.list_events(&p, 500).await.unwrap_or_else(|e| panic!("{e}"));
    let revoked = revoked_events(&events);
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].session_id.as_ref(), Some(&oldest.id));
    assert_eq!(revoked[0].created_at, T0.plus_seconds((count - 1) * 61));
    // The oldest live key is what goes, not merely the first one made: a
    // revoked key does not count, so the next registration drops no one.
    let (_, second, second_key) = &sessions[1];
    assert!(revoke(&store, &p, &second.id, now).await);
    signed_in(&store, &p, "ada@example.com", now, day).await;
    for (_, session, key) in &sessions[2..] {
        assert_eq!(live(&store, key, now).await.map(|s| s.id), Some(session.id.clone()));
    }
    assert_eq!(live(&store, second_key, now).await, None);
}

/// Revoking every session key of a user revokes the live ones, records
/// each, and says how many; a user the project does not have is `None`.
pub async fn revoking_a_users_session_keys<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    let ada = "ada@example.com";
    let (user, first, first_key) = signed_in(&store, &p, ada, T0, 3600).await;
    let (_, _, short_key) = signed_in(&store, &p, ada, T0.plus_seconds(61), 60).await;
    let (_, _, third_key) = signed_in(&store, &p, ada, T0.plus_seconds(122), 3600).await;
    let (_, _, fourth_key) = signed_in(&store, &p, ada, T0.plus_seconds(183), 3600).await;
    let (bob, _, bob_key) = signed_in(&store, &other, "bob@example.com", T0, 3600).await;
    assert!(revoke(&store, &p, &first.id, T0.plus_seconds(184)).await);

    let now = T0.plus_seconds(200);
    assert_eq!(revoke_all(&store, &p, &UserId::generate(), now).await, None, "an unknown user");
    assert_eq!(revoke_all(&store, &p, &bob.id, now).await, None, "another project's user");
    assert!(live(&store, &bob_key, now).await.is_some());
    assert!(live(&store, &third_key, now).await.is_some());
    assert_eq!(revoke_all(&store, &p, &user.id, now).await, Some(2), "the revoked and the expired key do not count");
    for key in [&first_key, &short_key, &third_key, &fourth_key] {
        assert_eq!(live(&store, key, now).await, None);
    }
    assert_eq!(revoke_all(&store, &p, &user.id, now.plus_seconds(1)).await, Some(0));
    assert!(live(&store, &bob_key, now).await.is_some());
    assert_eq!(revoke_all(&store, &other, &bob.id, now).await, Some(1));
    assert_eq!(live(&store, &bob_key, now).await, None);

    let events = store.list_events(&p, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let revoked = revoked_events(&events);
    assert_eq!(revoked.len(), 3, "one and then two");
    assert!(revoked.iter().all(|e| e.user_id.as_ref() == Some(&user.id) && e.session_id.is_some()));
    assert_eq!(revoked.iter().filter(|e| e.created_at == now).count(), 2);
}

/// A user's sign-in activity: their verified sign-ins (link and code) and
/// session keys made and revoked, newest first; not their failures, not
/// their sends, and nothing of another user.
pub async fn user_activity_lists_sign_ins_and_session_keys<S: Store>(store: S) {
    let p = project(&store).await;
    start(&store, new_login(&p, "ada@example.com", "link", T0)).await;
    let ada = verified(verify(&store, by_token(&p, "link", T0.plus_seconds(1))).await).user;

    let mut otp = new_otp(&p, "ada@example.com", "code", T0.plus_seconds(2));
    otp.target_public_key = Some(target_key(0x0a));
    let id = sent_code(&store, otp).await;
    code_refused_once(&store, &p, &id, T0.plus_seconds(3)).await;
    let mut req = code_req(&p, &id, "code", T0.plus_seconds(4));
    req.session = Some(session_offer(T0.plus_seconds(4), 3600));
    let v = code_verified(check_code(&store, req).await);
    let session = v.session.unwrap_or_else(|| panic!("a session key is due"));
    assert!(store.revoke_session(&p, &session.id, T0.plus_seconds(6)).await.unwrap_or_else(|e| panic!("{e}")));

    // Bob signs in in between; Ada in another project too.
    start(&store, new_login(&p, "bob@example.com", "bob", T0)).await;
    let bob = verified(verify(&store, by_token(&p, "bob", T0.plus_seconds(5))).await).user;
    let elsewhere = project(&store).await;
    start(&store, new_login(&elsewhere, "ada@example.com", "elsewhere", T0)).await;
    verify(&store, by_token(&elsewhere, "elsewhere", T0.plus_seconds(7))).await;

    let activity = store.user_activity(&p, &ada.id, 50).await.unwrap_or_else(|e| panic!("{e}"));
    let seen: Vec<(&str, Timestamp)> = activity.iter().map(|e| (e.kind.as_str(), e.created_at)).collect();
    let at = |s| T0.plus_seconds(s);
    assert_eq!(
        seen,
        [("session.revoked", at(6)), ("session.created", at(4)), ("otp.verified", at(4)), ("auth.verified", at(1))],
        "newest first"
    );
    assert!(activity.iter().all(|e| e.user_id.as_ref() == Some(&ada.id) && e.project_id == p));
    assert!(
        activity
            .iter()
            .filter(|e| e.kind.as_str().starts_with("session."))
            .all(|e| e.session_id.as_ref() == Some(&session.id))
    );
    assert_eq!(activity[2].otp_id.as_ref(), Some(&id));

    let limited = store.user_activity(&p, &ada.id, 2).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(limited, activity[..2].to_vec());
    let bobs = store.user_activity(&p, &bob.id, 50).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bobs.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["auth.verified"]);
    assert!(store.user_activity(&elsewhere, &ada.id, 50).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
}

async fn code_refused_once<S: Store>(store: &S, p: &ProjectId, id: &OtpId, now: Timestamp) {
    let outcome = check_code(store, code_req(p, id, "wrong", now)).await;
    assert!(matches!(outcome, OtpVerifyOutcome::Failed(OtpFailure::Invalid)), "{outcome:?}");
}
