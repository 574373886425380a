//! Conformance: invites.

use passgate_core::invite::InviteMetadata;
use passgate_core::{InviteId, OrganizationId};

use super::*;

/// An invite to `email` whose token is `token`, expiring an hour after `now`.
pub fn new_invite(project_id: &ProjectId, email: &str, token: &str, now: Timestamp) -> NewInvite {
    let id = InviteId::generate();
    let mut login = new_login(project_id, email, token, now);
    login.state = None;
    login.expires_at = now.plus_seconds(3600);
    login.invite_id = Some(id.clone());
    NewInvite {
        id,
        login,
        metadata: InviteMetadata::parse(&serde_json::json!({ "plan": "team", "seats": 5 })).ok(),
        invited_by: Some("Grace".to_string()),
        membership: None,
    }
}

pub(crate) async fn invite<S: Store>(store: &S, invite: NewInvite) -> InviteId {
    let id = invite.id.clone();
    assert_eq!(store.create_invite(invite).await.unwrap_or_else(|e| panic!("{e}")), StartOutcome::Started);
    id
}

pub(crate) async fn organization<S: Store>(
    store: &S,
    project_id: &ProjectId,
    members: Vec<NewMember>,
) -> OrganizationId {
    let id = OrganizationId::generate();
    let new = NewOrganization {
        id: id.clone(),
        project_id: project_id.clone(),
        name: "Acme".into(),
        members,
        created_at: T0,
    };
    store.create_organization(new).await.unwrap_or_else(|e| panic!("{e}"));
    id
}

async fn listed<S: Store>(store: &S, p: &ProjectId, status: Option<InviteStatus>, now: Timestamp) -> Vec<Invite> {
    let query = InviteQuery { status, before: None, limit: 100, now };
    store.list_invites(p, query).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn kinds<S: Store>(store: &S, p: &ProjectId) -> Vec<EventKind> {
    let mut kinds: Vec<EventKind> =
        store.list_events(p, 100).await.unwrap_or_else(|e| panic!("{e}")).into_iter().map(|e| e.kind).collect();
    kinds.reverse();
    kinds
}

/// Fifty verifies of one invite token at once: one accepts it (with its
/// metadata and membership), every other is told it was used.
pub async fn an_invite_is_accepted_once_under_concurrency<S: Store>(store: S) {
    let p = project(&store).await;
    let org = organization(&store, &p, vec![]).await;
    let mut new = new_invite(&p, "ada@example.com", "inv-race", T0);
    new.membership = Some((org.clone(), "admin".into()));
    let id = invite(&store, new).await;
    let attempts = (0..50).map(|_| {
        let store = store.clone();
        let req = by_token(&p, "inv-race", T0.plus_seconds(1));
        tokio::spawn(async move { store.verify_by_token(req).await })
    });
    let mut winners = Vec::new();
    for r in futures::future::join_all(attempts).await {
        match r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")) {
            VerifyOutcome::Verified(v) => winners.push(v),
            VerifyOutcome::Failed(f) => assert!(matches!(f, VerifyFailure::Used { .. }), "{f:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let won = &winners[0];
    assert!(won.is_new_user);
    assert_eq!(won.user.email, "ada@example.com");
    let accepted = won.invite.as_ref().unwrap_or_else(|| panic!("no invite in the verify"));
    assert_eq!(accepted.id, id);
    assert_eq!(accepted.invited_by.as_deref(), Some("Grace"));
    let metadata = accepted.metadata.as_ref().map(InviteMetadata::to_object).unwrap_or_default();
    assert_eq!(serde_json::Value::Object(metadata), serde_json::json!({ "plan": "team", "seats": 5 }));
    // The membership came with the acceptance, once.
    let orgs = store.organizations_of(&p, &won.user.id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(orgs, vec![org.clone()]);
    let members = store.get_organization(&p, &org).await.unwrap_or_else(|e| panic!("{e}")).map(|o| o.members);
    assert_eq!(members.map(|m| m.iter().map(|m| m.role.clone()).collect::<Vec<_>>()), Some(vec!["admin".to_string()]));
    let listed = listed(&store, &p, None, T0.plus_seconds(2)).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, InviteStatus::Accepted);
    assert_eq!(listed[0].user_id.as_ref(), Some(&won.user.id));
    assert_eq!(listed[0].accepted_at, Some(T0.plus_seconds(1)));
    let events = kinds(&store, &p).await;
    assert_eq!(events.iter().filter(|k| **k == EventKind::InviteCreated).count(), 1);
    assert_eq!(events.iter().filter(|k| **k == EventKind::InviteAccepted).count(), 1);
    assert!(!events.contains(&EventKind::AuthStarted), "an invite is not a sign-in start");
    // The invite's events name it; none carries its metadata.
    let recorded = store.list_events(&p, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let accepted_event = recorded.iter().find(|e| e.kind == EventKind::InviteAccepted);
    assert_eq!(accepted_event.and_then(|e| e.invite_id.clone()), Some(id));
    assert!(recorded.iter().all(|e| !format!("{e:?}").contains("seats")));
}

/// A revoked invite's token answers `token_revoked` at once; revoking is
/// idempotent and recorded once; an accepted invite cannot be revoked.
pub async fn a_revoked_invite_answers_token_revoked<S: Store>(store: S) {
    let p = project(&store).await;
    let id = invite(&store, new_invite(&p, "ada@example.com", "inv-revoked", T0)).await;
    let revoked = store.revoke_invite(&p, &id, T0.plus_seconds(5)).await.unwrap_or_else(|e| panic!("{e}"));
    let Some(RevokeOutcome::Revoked(invite_now)) = revoked else { panic!("not revoked: {revoked:?}") };
    assert_eq!((invite_now.status, invite_now.revoked_at), (InviteStatus::Revoked, Some(T0.plus_seconds(5))));
    let again = store.revoke_invite(&p, &id, T0.plus_seconds(6)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(again, Some(RevokeOutcome::Revoked(ref i)) if i.revoked_at == Some(T0.plus_seconds(5))));
    assert_eq!(failed(verify(&store, by_token(&p, "inv-revoked", T0.plus_seconds(7))).await), VerifyFailure::Revoked);
    // Another project's key revokes nothing of it.
    let other = project(&store).await;
    assert_eq!(store.revoke_invite(&other, &id, T0).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert_eq!(store.revoke_invite(&p, &InviteId::generate(), T0).await.unwrap_or_else(|e| panic!("{e}")), None);
    let events = kinds(&store, &p).await;
    assert_eq!(events.iter().filter(|k| **k == EventKind::InviteRevoked).count(), 1);

    let accepted = invite(&store, new_invite(&p, "bob@example.com", "inv-accepted", T0)).await;
    verified(verify(&store, by_token(&p, "inv-accepted", T0.plus_seconds(1))).await);
    let refused = store.revoke_invite(&p, &accepted, T0.plus_seconds(2)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused, Some(RevokeOutcome::AlreadyAccepted));
    assert_eq!(listed(&store, &p, Some(InviteStatus::Revoked), T0.plus_seconds(3)).await.len(), 1);
}

/// An invite expires exactly at its time, and is listed as expired then.
pub async fn invites_expire_exactly<S: Store>(store: S) {
    let p = project(&store).await;
    let mut new = new_invite(&p, "ada@example.com", "inv-expiry", T0);
    new.login.expires_at = T0.plus_seconds(60);
    invite(&store, new).await;
    assert_eq!(listed(&store, &p, Some(InviteStatus::Pending), T0.plus_seconds(59)).await.len(), 1);
    let at = T0.plus_seconds(60);
    assert_eq!(failed(verify(&store, by_token(&p, "inv-expiry", at)).await), VerifyFailure::Expired { expired_at: at });
    assert_eq!(listed(&store, &p, Some(InviteStatus::Pending), at).await.len(), 0);
    assert_eq!(listed(&store, &p, Some(InviteStatus::Expired), at).await.len(), 1);
}

/// A membership exists only once its invite is accepted, and an existing
/// member keeps the role they have.
pub async fn membership_comes_only_with_acceptance<S: Store>(store: S) {
    let p = project(&store).await;
    let member = NewMember { email: "bob@example.com".into(), role: "owner".into(), new_user_id: UserId::generate() };
    let org = organization(&store, &p, vec![member]).await;
    for (email, token) in [("ada@example.com", "inv-ada"), ("bob@example.com", "inv-bob")] {
        let mut new = new_invite(&p, email, token, T0);
        new.membership = Some((org.clone(), "viewer".into()));
        invite(&store, new).await;
    }
    let roles = |o: Option<Organization>| {
        o.map(|o| o.members.into_iter().map(|m| (m.email, m.role)).collect::<Vec<_>>()).unwrap_or_default()
    };
    let before = store.get_organization(&p, &org).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(roles(before), vec![("bob@example.com".to_string(), "owner".to_string())]);
    assert_eq!(store.find_user(&p, "ada@example.com").await.unwrap_or_else(|e| panic!("{e}")), None);
    verified(verify(&store, by_token(&p, "inv-ada", T0.plus_seconds(1))).await);
    verified(verify(&store, by_token(&p, "inv-bob", T0.plus_seconds(2))).await);
    let after = store.get_organization(&p, &org).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        roles(after),
        vec![
            ("bob@example.com".to_string(), "owner".to_string()),
            ("ada@example.com".to_string(), "viewer".to_string()),
        ]
    );
}

/// Invites count toward the send limits and honour idempotency like starts;
/// an organization of another project is not found; listing is newest
/// first, by status, a page at a time.
pub async fn invites_obey_the_limits_of_starts<S: Store>(store: S) {
    let p = project(&store).await;
    for i in 0..PER_RECIPIENT_EMAILS - 1 {
        start(&store, new_login(&p, "ada@example.com", &format!("l{i}"), T0.plus_seconds(i))).await;
    }
    let claim = IdempotencyClaim {
        key: "inv-key".into(),
        fingerprint: sha256(b"req"),
        response_status: 201,
        response_body: "first".into(),
    };
    let mut first = new_invite(&p, "ada@example.com", "inv-5", T0.plus_seconds(10));
    first.login.idempotency = Some(claim.clone());
    let first_id = invite(&store, first).await;
    let mut repeat = new_invite(&p, "ada@example.com", "inv-repeat", T0.plus_seconds(11));
    repeat.login.idempotency = Some(claim);
    let replayed = store.create_invite(repeat).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replayed, StartOutcome::Replayed { status: 201, body: "first".into() });
    let over = store.create_invite(new_invite(&p, "ada@example.com", "inv-6", T0.plus_seconds(12))).await;
    assert!(
        matches!(over, Ok(StartOutcome::RateLimited { limit: LimitKind::Recipient, .. })),
        "the sixth email to the address: {over:?}"
    );
    let other = project(&store).await;
    let foreign = organization(&store, &other, vec![]).await;
    let mut elsewhere = new_invite(&p, "bob@example.com", "inv-foreign", T0);
    elsewhere.membership = Some((foreign, "admin".into()));
    assert!(matches!(store.create_invite(elsewhere).await, Err(StoreError::NotFound)));
    assert_eq!(failed(verify(&store, by_token(&p, "inv-foreign", T0)).await), VerifyFailure::Invalid, "nothing stored");

    // Pages, newest first.
    let second = invite(&store, new_invite(&p, "carol@example.com", "inv-c", T0.plus_seconds(20))).await;
    let third = invite(&store, new_invite(&p, "dan@example.com", "inv-d", T0.plus_seconds(21))).await;
    let page = |before: Option<InviteId>| {
        let store = store.clone();
        let p = p.clone();
        async move {
            let query = InviteQuery { status: Some(InviteStatus::Pending), before, limit: 2, now: T0.plus_seconds(30) };
            let listed = store.list_invites(&p, query).await.unwrap_or_else(|e| panic!("{e}"));
            listed.into_iter().map(|i| i.id).collect::<Vec<_>>()
        }
    };
    let first_page = page(None).await;
    assert_eq!(first_page, vec![third, second.clone()]);
    assert_eq!(page(Some(second)).await, vec![first_id]);
    assert!(listed(&store, &other, None, T0).await.is_empty(), "another project's list is its own");
}
