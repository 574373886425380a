//! Conformance: users and erasure.

use super::invites::{invite, new_invite, organization};
use super::*;

pub async fn users_are_found_by_id_and_address<S: Store>(store: S) {
    let p = project(&store).await;
    start(&store, new_login(&p, "ada@example.com", "u1", T0)).await;
    let ada = verified(verify(&store, by_token(&p, "u1", T0)).await).user;
    assert_eq!(store.get_user(&p, &ada.id).await.unwrap_or_else(|e| panic!("{e}")), Some(ada.clone()));
    assert_eq!(store.find_user(&p, "ada@example.com").await.unwrap_or_else(|e| panic!("{e}")), Some(ada));
    assert_eq!(store.find_user(&p, "bob@example.com").await.unwrap_or_else(|e| panic!("{e}")), None);
    assert_eq!(store.get_user(&p, &UserId::generate()).await.unwrap_or_else(|e| panic!("{e}")), None);
}

/// Erasure removes the user, their pending links, codes and invites, their
/// memberships, and strips their events of email, IP address and user
/// agent; `user.deleted` is recorded; the address then signs in as a new
/// user; other users, and the same address in another project, stay.
pub async fn erasure_leaves_nothing_of_the_user<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    let with_client = |login: NewLogin| NewLogin {
        ip_address: Some("203.0.113.7".into()),
        ip_network: Some("203.0.113.7".into()),
        user_agent: Some("Erased-Agent/1.0".into()),
        ..login
    };
    start(&store, with_client(new_login(&p, "ada@example.com", "e1", T0))).await;
    let ada = verified(verify(&store, by_token(&p, "e1", T0)).await).user;
    start(&store, with_client(new_login(&p, "ada@example.com", "e-pending", T0.plus_seconds(1)))).await;
    let mut coded = new_login(&p, "ada@example.com", "e-coded", T0.plus_seconds(2));
    coded.code_hash = Some(sha256(b"123456"));
    let coded_id = coded.id.clone();
    start(&store, coded).await;
    invite(&store, new_invite(&p, "ada@example.com", "e-invite", T0.plus_seconds(3))).await;
    let org = organization(
        &store,
        &p,
        vec![NewMember { email: "ada@example.com".into(), role: "owner".into(), new_user_id: UserId::generate() }],
    )
    .await;
    start(&store, with_client(new_login(&p, "bob@example.com", "e-bob", T0))).await;
    let bob = verified(verify(&store, by_token(&p, "e-bob", T0)).await).user;
    start(&store, with_client(new_login(&other, "ada@example.com", "e-other", T0))).await;

    let erased = store.erase_user(&p, &ada.id, T0.plus_seconds(10)).await.unwrap_or_else(|e| panic!("{e}"));
    let erased = erased.unwrap_or_else(|| panic!("nothing erased"));
    assert_eq!(erased.logins, 4, "two links, the coded login and the invite's login");
    assert_eq!(erased.memberships, 1);
    assert!(erased.events_anonymised >= 4, "{erased:?}");
    assert_eq!(store.erase_user(&p, &ada.id, T0.plus_seconds(11)).await.unwrap_or_else(|e| panic!("{e}")), None);

    let now = T0.plus_seconds(12);
    assert_eq!(store.get_user(&p, &ada.id).await.unwrap_or_else(|e| panic!("{e}")), None);
    for token in ["e-pending", "e-invite"] {
        assert_eq!(failed(verify(&store, by_token(&p, token, now)).await), VerifyFailure::Invalid, "{token}");
    }
    let by_code = VerifyByCode {
        project_id: p.clone(),
        login_id: coded_id,
        code_hash_candidates: vec![sha256(b"123456")],
        verifier_challenge: None,
        now,
        new_user_id: UserId::generate(),
    };
    assert_eq!(failed(store.verify_by_code(by_code).await.unwrap_or_else(|e| panic!("{e}"))), VerifyFailure::Invalid);
    let members = store.get_organization(&p, &org).await.unwrap_or_else(|e| panic!("{e}")).map(|o| o.members.len());
    assert_eq!(members, Some(0));
    let invites = store.list_invites(&p, InviteQuery { status: None, before: None, limit: 10, now }).await;
    assert!(invites.unwrap_or_else(|e| panic!("{e}")).is_empty());
    let queued = store.queued_payloads(100).await.unwrap_or_else(|e| panic!("{e}")).len();
    assert_eq!(queued, 2, "bob's and the other project's emails only");

    let events = store.list_events(&p, 100).await.unwrap_or_else(|e| panic!("{e}"));
    for event in &events {
        let about_ada = event.user_id.as_ref() == Some(&ada.id) || event.email.as_deref() == Some("ada@example.com");
        assert!(!about_ada || event.kind == EventKind::UserDeleted || event.email.is_none(), "{event:?}");
        let about_bob = event.user_id.as_ref() == Some(&bob.id) || event.email.as_deref() == Some("bob@example.com");
        if !about_bob {
            assert!(event.ip_address.is_none() && event.user_agent.is_none(), "{event:?}");
        }
    }
    assert!(events.iter().all(|e| e.email.as_deref() != Some("ada@example.com")));
    let deleted: Vec<&Event> = events.iter().filter(|e| e.kind == EventKind::UserDeleted).collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].user_id.as_ref(), Some(&ada.id));
    assert_eq!(deleted[0].email, None);
    // Bob's events keep what they had.
    assert!(events.iter().any(|e| e.email.as_deref() == Some("bob@example.com") && e.ip_address.is_some()));
    // The other project's Ada is another user, untouched.
    let elsewhere = store.list_events(&other, 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(elsewhere.iter().any(|e| e.email.as_deref() == Some("ada@example.com") && e.user_agent.is_some()));

    // The address signs in again as a new user.
    start(&store, new_login(&p, "ada@example.com", "e-again", now)).await;
    let again = verified(verify(&store, by_token(&p, "e-again", now.plus_seconds(1))).await);
    assert!(again.is_new_user);
    assert_ne!(again.user.id, ada.id);
}
